#!/usr/bin/env sh
# Start the local suite: build the seven functions and wemint-dev, then `wemint-dev up`.
# Extra arguments go to `wemint-dev` (e.g. `scripts/dev.sh demo`, `scripts/dev.sh up --port 9999`).
# Honours CARGO_TARGET_DIR: wemint-dev finds the function binaries next to itself.
set -eu
cd "$(dirname "$0")/.."
cargo build -p login -p create-order -p pay-notify -p gated-content -p ugc-upload -p wx-push -p reconcile -p analytics
if [ "$#" -eq 0 ]; then set -- up; fi
exec cargo run -p wemint-emulator --bin wemint-dev -- "$@"
