#!/usr/bin/env bash
# `npm test [-- bun test options]`: installs what the tests need when missing (npm dependencies,
# Debian's redis-server), then runs `bun test`. The tests start their own redis-server on free
# ports; nothing has to be running.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

ensure_node_modules
ensure_debian_package redis-server redis-server
exec node_modules/.bin/bun test "$@"
