#!/usr/bin/env bash
# `npm test [-- bun test options or files]`: installs what the tests need when missing (npm
# dependencies, Debian's redis-server), then runs `bun test`. The tests start their own
# redis-server (and Redis Cluster) on free ports; nothing has to be running.
#
# A full run (no arguments) then runs the store, cache, queue and outbox suites a second time against a
# six-node Redis Cluster (IAPPS_TEST_REDIS=cluster). With IAPPS_TEST_JUNIT_DIR set, each pass
# writes a JUnit report there (single.xml, cluster.xml): what CI counts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

ensure_node_modules
ensure_debian_package redis-server redis-server
# The terminal's shell runs in a bubblewrap sandbox in the simulator (test/shell*.test.ts).
ensure_debian_package bwrap bubblewrap

junit() {
  if [ -n "${IAPPS_TEST_JUNIT_DIR:-}" ]; then echo "--reporter=junit --reporter-outfile=$IAPPS_TEST_JUNIT_DIR/$1.xml"; fi
}

status=0
# shellcheck disable=SC2046 # junit's options are meant to split
node_modules/.bin/bun test $(junit single) "$@" || status=$?
if [ $# -eq 0 ]; then
  echo "== again on a Redis Cluster: the store, cache and queue suites"
  # shellcheck disable=SC2046
  IAPPS_TEST_REDIS=cluster node_modules/.bin/bun test $(junit cluster) \
    test/api.test.ts test/concurrency.test.ts test/cache.test.ts test/queue.test.ts test/outbox.test.ts || status=$?
fi
exit "$status"
