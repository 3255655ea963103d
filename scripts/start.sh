#!/usr/bin/env bash
# `npm start [-- --env NAME | --config FILE]`: everything a newcomer needs on a fresh Debian
# machine. Installs dependencies and Redis when missing, makes sure a Redis answers at the
# configured URL (starting a local one, kept in var/redis-<port>, if nothing listens there), and runs
# role `all` in the foreground. Ctrl-C stops the service and the Redis it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

ensure_node_modules
# The simulator runs the terminal's shell in a bubblewrap sandbox (`/terminal`).
ensure_debian_package bwrap bubblewrap
bun=node_modules/.bin/bun
# The configuration is checked first (a bad file or overlay stops here, exit 2, naming the key),
# before anything starts. What is printed of the URL has its password masked: only its host and
# port are used here.
url=$($bun src/main.ts config redis.url "$@")

redis_pid=""
stop_redis() {
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    say "stopping the Redis started for this run (pid $redis_pid)"
    kill -TERM "$redis_pid" && wait "$redis_pid" 2>/dev/null || true
  fi
}

hostport=${url#*://}; hostport=${hostport##*@}; hostport=${hostport%%/*}
host=${hostport%:*}; port=${hostport##*:}
[ "$port" = "$hostport" ] && port=6379
answer=""
command -v redis-cli >/dev/null 2>&1 && answer=$(redis-cli -h "${host//[\[\]]/}" -p "$port" ping 2>&1 || true)
# PONG, or a Redis that wants its password (the service has it; this script does not need it).
if [ "$answer" = "PONG" ] || [[ "$answer" == *NOAUTH* ]]; then
  say "using the Redis at $url"
else
  case "$host" in
    127.0.0.1|localhost|"[::1]") ;;
    *) say "no Redis answers at $url, and it is not on this machine: start it, or set IAPPS_REDIS_URL"; exit 1 ;;
  esac
  ensure_debian_package redis-server redis-server
  # One data folder per port: two instances on different ports never share (or load) each other's data.
  data="var/redis-$port"
  mkdir -p "$data"
  say "starting redis-server on port $port (data in $data, append-only file on)"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/$data" --appendonly yes --save "" \
    --logfile "$PWD/$data/redis.log" &
  redis_pid=$!
  trap stop_redis EXIT
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] && break
    kill -0 "$redis_pid" 2>/dev/null || { say "redis-server did not start on port $port: see $data/redis.log"; exit 1; }
    sleep 0.1
  done
fi

$bun src/main.ts all "$@" &
service_pid=$!
trap 'kill -TERM $service_pid 2>/dev/null; wait $service_pid; stop_redis' INT TERM
# The service's own exit status: a service that cannot start fails `npm start` too.
status=0
wait $service_pid || status=$?
exit "$status"
