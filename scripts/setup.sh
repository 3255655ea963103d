#!/usr/bin/env bash
# Makes this checkout runnable: npm dependencies (bun among them) and Debian's redis-server (and
# wrk, for the API benchmark). Sourced by scripts/start.sh, scripts/test.sh and
# scripts/bench-api.sh; safe to run again (it only does what is missing).
set -euo pipefail

say() { printf '[setup] %s\n' "$*" >&2; }

ensure_node_modules() {
  if [ -x node_modules/.bin/bun ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    return
  fi
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
  if ! node_modules/.bin/bun --version >/dev/null 2>&1; then
    say "bun's install script did not run; running it now"
    npm rebuild bun
  fi
}

# Installs a Debian package when its command is missing, or says exactly what to do.
ensure_debian_package() {
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 && return
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "'$command' is missing and I cannot install it here (need root and apt-get)."
    say "Install it yourself, e.g. 'sudo apt-get install -y $package' on Debian/Ubuntu."
    [ "$package" = redis-server ] && say "Or point IAPPS_REDIS_URL at a Redis you already run."
    say "Then run this command again."
    exit 1
  fi
  say "installing Debian's $package (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
}
