#!/usr/bin/env bash
# The local suite as a developer meets it, run after the Rust tests by scripts/test.sh:
#   1. the Mini Program's own tests (jest + miniprogram-simulate) and its package size;
#   2. `wemint-dev demo`: the monetization flow end to end on a fresh suite;
#   3. the web console in headless Chromium (it starts its own suite);
#   4. the Mini Program's client e2e test (utils/api.js over real HTTP) against `wemint-dev up`.
# Needs node/npm and /usr/bin/chromium (.ci/run installs them on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/debug"
started=$(date +%s)
step() { printf '\n==> [%s] %s\n' "$(( $(date +%s) - started ))s" "$*"; }
npm_ci() { npm ci --no-audit --no-fund --loglevel=error; }

step "Mini Program: unit, component and page tests; main package size"
(cd miniprogram && npm_ci && npm test && npm run size)

step "wemint-dev demo (fresh suite, real function binaries)"
"$bin/wemint-dev" demo --bin-dir "$bin"

step "web console in headless Chromium"
(cd emulator/console-tests && npm_ci && WEMINT_DEV_BIN="$bin/wemint-dev" npm test)

step "Mini Program client e2e against wemint-dev up"
state=$(mktemp -d)
log="$state/wemint-dev.log"
"$bin/wemint-dev" up --dir "$state/.wemint" --port 0 --bin-dir "$bin" >"$log" 2>&1 &
suite=$!
trap 'kill "$suite" 2>/dev/null || true; wait "$suite" 2>/dev/null || true; rm -rf "$state"' EXIT
url=""
for _ in $(seq 1 300); do
    url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$log" | head -1 || true)
    if [ -n "$url" ] && curl -fsS "$url/dev/env" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$suite" 2>/dev/null; then cat "$log"; echo "wemint-dev exited early" >&2; exit 1; fi
    url=""
    sleep 0.1
done
[ -n "$url" ] || { cat "$log"; echo "wemint-dev did not become ready" >&2; exit 1; }
(cd miniprogram && WEMINT_DEV_URL="$url" npm run test:e2e)
echo "local suite checks green in $(( $(date +%s) - started ))s"
