#!/usr/bin/env bash
# Release-build figures for wemint, printed part by part and then as one summary table with the
# targets (docs/performance.md explains each figure and keeps the last recorded run).
#
#   0. build: the function binaries in release, default features (the benchmark stores are
#      SQLite files), with scripts/build.sh's toolchain when it is installed. Zip sizes come
#      from dist/ (scripts/build.sh: the CloudBase deploy build, without SQLite) when it exists.
#   1. start-up: per function, median process start → init/ready under the SCF runtime API
#      emulator and peak RSS, over RUNS starts (default 20).
#   2. CloudBase round trips per operation (functions on cloudbase://, the suite's stand-in).
#   3. bill reconciliation: a BILL_ROWS-row (default 100,000) WeChat Pay trade bill against the
#      store, streaming (shared/benches/bill_reconcile.rs).
#   4. peer comparison: payNotify and createOrder against the Node handler in bench/node, in one
#      run, alternating (tests/src/bin/peer-bench.rs): start-up, warm invocation and GB-s per
#      million, HTTP throughput on 2 CPUs and on 1, and the durable paid path on SQLite.
#   6. analytics (issue 20): the release `analytics` binary in http mode taking `track` batches
#      of 50 from many users (events/s on one instance), and the same binary's `aggregateRun` of
#      ANALYTICS_EVENTS (default 1,000,000) raw events of one day: time and peak RSS
#      (tests/src/bin/analytics-bench.rs).
#
# Environment: RUNS (starts per function), BILL_ROWS, BILL_PROFILE=release|dev,
# BENCH_CLOUDBASE=0 (skip part 2), BENCH_ANALYTICS=0 (skip part 6), ANALYTICS_EVENTS,
# ANALYTICS_SECS, ANALYTICS_CONNECTIONS, BENCH_PEER=0 (skip part 4) or only (parts 0 and 4 only),
# PEER_ROUNDS, PEER_SECONDS, PEER_CONNECTIONS, PAID_SECONDS, PAID_ORDERS.
# The machine's load (uptime) is recorded at each part: on a shared machine compare ratios from
# the same alternating run rather than absolute rates.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FUNCTIONS=(login:login create-order:createOrder pay-notify:payNotify gated-content:gatedContent ugc-upload:ugcUpload wx-push:wxPush)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

load() { uptime | sed 's/.*load average: *//'; }
# part NAME: a heading, and the load when the part starts (for the summary).
part() {
    printf '\n==> %s (load %s)\n' "$1" "$(load)"
    printf '%s\t%s\n' "$1" "$(load)" >> "$OUT/loads"
}

echo "wemint benchmarks — $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load $(load)"

part "0. release build of the functions (default features: SQLite for the benchmark stores)"
packages=()
for f in "${FUNCTIONS[@]}"; do packages+=(-p "${f%%:*}"); done
# With scripts/build.sh's toolchain (cargo-zigbuild) when installed: the deploy build's
# dependencies are reused and the binaries are the shipped ones plus SQLite. Else a native
# release build (same profile).
if command -v cargo-zigbuild >/dev/null && { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }; then
    cargo zigbuild --release --locked --target x86_64-unknown-linux-gnu.2.17 "${packages[@]}"
    RELEASE_DIR=$TARGET_DIR/x86_64-unknown-linux-gnu/release
else
    cargo build --release --locked "${packages[@]}"
    RELEASE_DIR=$TARGET_DIR/release
fi
bin_of() { for f in "${FUNCTIONS[@]}"; do if [ "${f##*:}" = "$1" ]; then echo "$RELEASE_DIR/${f%%:*}"; fi; done; }
bins=()
for f in "${FUNCTIONS[@]}"; do bins+=("${f##*:}=$(bin_of "${f##*:}")"); done

# The peer comparison: installs its tools (wrk from apt, the Node peer's packages from its
# committed package-lock.json), builds its driver, and prints one table.
peer_comparison() {
    part "4. peer comparison: wemint payNotify/createOrder vs the Node peer (bench/node), alternating"
    command -v node >/dev/null || { echo "bench.sh: node (20+) is needed for the peer comparison" >&2; return 1; }
    if ! command -v wrk >/dev/null; then
        echo "installing wrk (apt)…"
        if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
    fi
    (cd bench/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cargo build --locked -p wemint-e2e --bin peer-bench
    "$TARGET_DIR/debug/peer-bench" --notify "$(bin_of payNotify)" --create "$(bin_of createOrder)" --node bench/node \
        --rounds "${PEER_ROUNDS:-3}" --seconds "${PEER_SECONDS:-5}" --connections "${PEER_CONNECTIONS:-16}" \
        --starts "$RUNS" --paid-seconds "${PAID_SECONDS:-5}" --paid-orders "${PAID_ORDERS:-12000}" \
        | tee "$OUT/peer"
}

if [ "${BENCH_PEER:-1}" != only ]; then
    part "1. start-up: $RUNS starts per function under the SCF runtime API emulator"
    cargo build --locked -p wemint-e2e --bin scf-bench
    # It exits non-zero when a function misses its budget: the summary says which.
    "$TARGET_DIR/debug/scf-bench" --runs "$RUNS" "${bins[@]}" | tee "$OUT/startup" || true

    # Database round trips per operation on the cloudbase:// backend: the suite runs the
    # functions on `cloudbase://` against its CloudBase document-database stand-in, runs a
    # createOrder checkout, the payNotify that pays and grants, and a gatedContent `get`, and
    # prints the stand-in's per-operation counters. The same test fails when a count exceeds
    # its budget. Debug builds: the counts do not depend on the profile.
    if [ "${BENCH_CLOUDBASE:-1}" != 0 ]; then
        part "2. CloudBase round trips per operation (functions on cloudbase://, the suite's stand-in)"
        cargo build --locked --workspace --bins
        cargo test --locked -p wemint-emulator --test functions_on_cloudbase \
            round_trips_per_operation_stay_within_budget -- --nocapture 2>&1 \
            | grep -E '^(cold start|cloudbase round trips|  [a-zA-Z]|test result)' | tee "$OUT/roundtrips"
    fi

    # A BILL_ROWS-row trade bill (gzip, SHA-1 announced) reconciled against as many stored
    # orders and refunds on SQLite by `Finance::reconcile_day`: hash check, storage of the file,
    # streaming parse, batched matching, discrepancies and revenue. Wall time and peak RSS of
    # that call. Release profile (`cargo bench`).
    # BILL_PROFILE=dev runs it on the already built test dependencies (opt-level 2) with wemint
    # at opt-level 3 instead of a full release build of the host (slower, so pessimistic).
    part "3. bill reconciliation (${BILL_ROWS:-100000} rows against the store, ${BILL_PROFILE:-release} profile)"
    bill_profile=()
    if [ "${BILL_PROFILE:-release}" = dev ]; then
        bill_profile=(--profile dev --config 'profile.dev.package.wemint.opt-level=3')
    fi
    cargo bench --locked "${bill_profile[@]}" -p wemint --bench bill_reconcile -- --rows "${BILL_ROWS:-100000}" 2>&1 \
        | grep -E '^(setup|bill reconciliation)' | tee "$OUT/bill"
fi

if [ "${BENCH_PEER:-1}" != 0 ]; then
    peer_comparison
fi

# Part 6, analytics (issue 20): ingestion throughput of one instance over HTTP and the time to
# aggregate a day of ANALYTICS_EVENTS raw events, both on SQLite files.
if [ "${BENCH_ANALYTICS:-1}" != 0 ]; then
    part "6. analytics: track ingestion (HTTP, batches of 50) and aggregation of ${ANALYTICS_EVENTS:-1000000} events"
    cargo build --release --locked -p analytics
    cargo build --locked -p wemint-e2e --bin analytics-bench
    "$TARGET_DIR/debug/analytics-bench" --bin "$TARGET_DIR/release/analytics" \
        --secs "${ANALYTICS_SECS:-5}" --connections "${ANALYTICS_CONNECTIONS:-16}" \
        --events "${ANALYTICS_EVENTS:-1000000}" | tee "$OUT/analytics"
fi

# Zip sizes of the deploy build, when scripts/build.sh has made it.
if ls dist/*.zip >/dev/null 2>&1; then
    for z in dist/*.zip; do printf '%s\t%s\n' "$(basename "$z" .zip)" "$(stat -c %s "$z")"; done > "$OUT/zips"
fi

# ---- summary ------------------------------------------------------------------------------
# cell FILE FIGURE COLUMN: a cell of the peer table row whose figure starts with FIGURE.
cell() { awk -F'|' -v f="$2" -v c="$3" '{ s = $2; sub(/^ +/, "", s) } index(s, f) == 1 { gsub(/^ +| +$/, "", $c); print $c; exit }' "$1" 2>/dev/null; }
row() { printf '| %-52s | %-30s | %-22s |\n' "$1" "${2:-—}" "$3"; }
echo
echo "================================ summary ================================"
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs; load (1, 5, 15 min) at the start of each part:"
sed 's/^/  /' "$OUT/loads"
echo
row "figure" "measured" "target"
row "----------------------------------------------------" "------------------------------" "----------------------"
if [ -s "$OUT/startup" ]; then
    # scf-bench rows: name runs median ms p90 ms min ms rss MiB verdict
    row "start -> init/ready, median, worst function" \
        "$(awk '$4 == "ms" && $10 == "MiB" { if ($3 > m) { m = $3; n = $1 } } END { if (n) printf "%.2f ms (%s)", m, n }' "$OUT/startup")" "< 10 ms, $RUNS starts"
    row "peak RSS, worst function" \
        "$(awk '$4 == "ms" && $10 == "MiB" { if ($9 > m) { m = $9; n = $1 } } END { if (n) printf "%.1f MiB (%s)", m, n }' "$OUT/startup")" "< 12 MB"
fi
if [ -s "$OUT/zips" ]; then
    row "zip per function (deploy build), largest" \
        "$(sort -t$'\t' -k2 -n "$OUT/zips" | tail -1 | awk -F'\t' '{ printf "%.2f MiB (%s)", $2 / 1048576, $1 }')" "<= 3 MB"
else
    row "zip per function (deploy build)" "no dist/: run scripts/build.sh" "<= 3 MB"
fi
if [ -s "$OUT/peer" ]; then
    w=$(cell "$OUT/peer" "notifications/s, HTTP, ${PEER_CONNECTIONS:-16} conns" 3)
    n=$(cell "$OUT/peer" "notifications/s, HTTP, ${PEER_CONNECTIONS:-16} conns" 4)
    row "notifications/s, HTTP, 2 CPUs: wemint / Node" "$w / $n = $(cell "$OUT/peer" "notifications/s, HTTP, ${PEER_CONNECTIONS:-16} conns" 5)" "wemint >= 2x Node"
    row "notifications/s, HTTP, wemint on 1 CPU" \
        "$(cell "$OUT/peer" "notifications/s, HTTP, wemint on 1 CPU" 3) ($(cell "$OUT/peer" "notifications/s, HTTP, wemint on 1 CPU" 5))" "scaling 1 -> 2 cores"
    row "start -> ready / peak RSS, payNotify vs Node" \
        "$(cell "$OUT/peer" "start → init/ready" 5) / $(cell "$OUT/peer" "peak RSS" 5)" ""
    row "GB-s per million notifications: wemint / Node" \
        "$(cell "$OUT/peer" "GB-s per million notifications" 3) / $(cell "$OUT/peer" "GB-s per million notifications" 4)" "at cloudbaserc memory"
    row "GB-s per million checkouts: wemint / Node" \
        "$(cell "$OUT/peer" "GB-s per million checkouts" 3) / $(cell "$OUT/peer" "GB-s per million checkouts" 4)" "at cloudbaserc memory"
    row "paid path, SQLite synchronous=FULL, payments/s" \
        "$(grep -o '[0-9]* payments/s' "$OUT/peer" | head -1)" ">= 1,000/s or fsync-bound"
    row "  store writes per payment" "$(sed -n 's/.*store writes: [0-9]* = \([0-9.]*\) per payment.*/\1/p' "$OUT/peer")" "at their minimum"
    row "  writes per commit (group commit)" "$(sed -n 's/.*(group commit: \([0-9.]*\) writes each).*/\1/p' "$OUT/peer")" ""
    row "  this disk's fsync rate (one at a time)" "$(grep -o '[0-9]* fsync/s' "$OUT/peer" | head -1)" ""
    row "  each order paid exactly once" \
        "$(grep -q 'each order paid exactly once' "$OUT/peer" && echo verified || echo MISMATCH)" "verified after the run"
fi
if [ -s "$OUT/analytics" ]; then
    row "analytics track ingestion, one instance, HTTP" "$(sed -n 's/^ingestion: \([0-9]* events\/s\).*/\1/p' "$OUT/analytics")" ">= 10,000 events/s"
    row "analytics aggregation, ${ANALYTICS_EVENTS:-1000000} events" "$(sed -n 's/^aggregation: [0-9]* events in \([0-9.]* s\).*/\1/p' "$OUT/analytics")" "< 30 s"
    row "analytics aggregation: peak RSS" "$(sed -n 's/^aggregation: .*peak RSS \([0-9.?]* MiB\).*/\1/p' "$OUT/analytics")" "< 256 MB (the function's memory)"
fi
if [ -s "$OUT/bill" ]; then
    row "bill reconciliation, ${BILL_ROWS:-100000} rows: time" "$(sed -n 's/.* rows in \([0-9.]* s\).*/\1/p' "$OUT/bill")" "< 10 s"
    row "bill reconciliation: peak RSS" "$(sed -n 's/.*peak RSS \([0-9.?]* MiB\).*/\1/p' "$OUT/bill")" "< 100 MB, streaming"
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
