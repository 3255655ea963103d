#!/usr/bin/env bash
# `npm run bench:api [-- options]`: installs what the API benchmark needs when missing (npm
# dependencies, Debian's redis-server and wrk), then runs scripts/bench-api.ts with its options.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

ensure_node_modules
ensure_debian_package redis-server redis-server
ensure_debian_package wrk wrk
exec node_modules/.bin/bun scripts/bench-api.ts "$@"
