#!/usr/bin/env bash
# Part 1, start-up: for each function binary (release build), the median time from
# process start to init/ready under the SCF runtime API emulator and the peak resident memory,
# over RUNS starts (default 20). Uses dist/functions/*/bootstrap from scripts/build.sh when
# present (the binaries that ship), else builds with `cargo build --release`.
#
# Part 4, peer comparison (peer_comparison below): wemint's payNotify against the Node handler
# in bench/node, in one run, alternating; `BENCH_PEER=0` skips it, `BENCH_PEER=only` runs only
# it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FUNCTIONS=(login:login create-order:createOrder pay-notify:payNotify gated-content:gatedContent ugc-upload:ugcUpload wx-push:wxPush)

# The peer comparison: installs its tools (wrk from apt, the Node peer's packages from its
# committed package-lock.json), builds its driver, and prints one table (tests/src/bin/peer-bench.rs).
peer_comparison() {
    local notify=$1 create=$2
    echo "==> peer comparison: wemint payNotify vs the Node peer (bench/node), alternating"
    command -v node >/dev/null || { echo "bench.sh: node (20+) is needed for the peer comparison" >&2; return 1; }
    if ! command -v wrk >/dev/null; then
        echo "installing wrk (apt)…"
        if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
    fi
    (cd bench/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cargo build --locked -p wemint-e2e --bin peer-bench
    "$TARGET_DIR/debug/peer-bench" --notify "$notify" --create "$create" --node bench/node \
        --rounds "${PEER_ROUNDS:-3}" --seconds "${PEER_SECONDS:-5}" --connections "${PEER_CONNECTIONS:-16}" \
        --starts "$RUNS" --paid-seconds "${PAID_SECONDS:-5}" --paid-orders "${PAID_ORDERS:-12000}"
}

if [ -x dist/functions/login/bootstrap ] && [ "${BENCH_REBUILD:-0}" != 1 ]; then
    echo "==> using the packaged binaries in dist/functions (scripts/build.sh)"
    bins=()
    for f in "${FUNCTIONS[@]}"; do bins+=("${f##*:}=dist/functions/${f##*:}/bootstrap"); done
else
    echo "==> release build (no dist/ yet; a clean build takes ~10 minutes)"
    packages=()
    for f in "${FUNCTIONS[@]}"; do packages+=(-p "${f%%:*}"); done
    cargo build --release --locked "${packages[@]}"
    bins=()
    for f in "${FUNCTIONS[@]}"; do bins+=("${f##*:}=$TARGET_DIR/release/${f%%:*}"); done
fi

bin_of() { for b in "${bins[@]}"; do [ "${b%%=*}" = "$1" ] && echo "${b#*=}"; done; }
if [ "${BENCH_PEER:-1}" = only ]; then
    peer_comparison "$(bin_of payNotify)" "$(bin_of createOrder)"
    exit 0
fi

echo "==> building the benchmark driver"
cargo build --locked -p wemint-e2e --bin scf-bench
echo "==> $RUNS starts per function"
"$TARGET_DIR/debug/scf-bench" --runs "$RUNS" "${bins[@]}"

# Part 2: database round trips per operation on the cloudbase:// backend. The suite runs with
# the functions on `cloudbase://` against its CloudBase document-database stand-in
# (`wemint-dev up --store cloudbase`), runs a createOrder checkout, the payNotify that pays and
# grants, and a gatedContent `get`, and prints the stand-in's per-operation counters from
# `/dev/stats`. The same test fails when a count exceeds its budget (6, 6, 6). Debug builds:
# the counts do not depend on the profile.
echo "==> CloudBase round trips per operation (functions on cloudbase://, the suite's stand-in)"
cargo build --locked --workspace --bins
cargo test --locked -p wemint-emulator --test functions_on_cloudbase \
    round_trips_per_operation_stay_within_budget -- --nocapture 2>&1 \
    | grep -E '^(cold start|cloudbase round trips|  [a-zA-Z]|test result)'

# Part 3: bill reconciliation. A 100,000-row WeChat Pay trade bill (gzip, SHA-1
# announced) reconciled against 100,000 stored orders and refunds on SQLite (file, WAL) by
# `Finance::reconcile_day`: hash check, storage of the file, streaming parse, batched matching,
# discrepancies and revenue. Prints the wall time and the peak resident memory of that call
# (budget: under 10 s and 100 MB). Release profile (`cargo bench`); set BILL_ROWS for another size.
echo "==> bill reconciliation (${BILL_ROWS:-100000} rows against the store)"
cargo bench --locked -p wemint --bench bill_reconcile -- --rows "${BILL_ROWS:-100000}" 2>&1 \
    | grep -E '^(setup|bill reconciliation)'

# Part 4: the peer comparison.
if [ "${BENCH_PEER:-1}" != 0 ]; then
    peer_comparison "$(bin_of payNotify)" "$(bin_of createOrder)"
fi

# Part 5, realtime (self-contained): the release `realtime` binary over a SQLite file store,
# driven by tests/src/bin/rt-bench.rs. Many sockets in one process: memory per idle socket
# and the store-write → socket delay at 200 events/s; one socket per process: spawn → first
# event, and store reads per idle connection-minute (waits ~95 s for the idle window); a fleet
# of 100 one-socket processes: store-write → socket delay.
echo "==> realtime: 1,000 sockets in one process, then one socket per process"
cargo build --release --locked -p realtime
cargo build --locked -p wemint-e2e --bin rt-bench
# 1,000 client sockets here and 1,000 in the server: more than the default 1,024 descriptors.
ulimit -n 8192 2>/dev/null || true
"$TARGET_DIR/debug/rt-bench" --bin "$TARGET_DIR/release/realtime" \
    --sockets "${RT_SOCKETS:-1000}" --rate "${RT_RATE:-200}" --secs "${RT_SECS:-10}" \
    --starts "${RT_STARTS:-20}" --fleet "${RT_FLEET:-100}" --idle-secs "${RT_IDLE_SECS:-60}"
