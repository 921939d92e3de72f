#!/usr/bin/env bash
# Part 1, start-up: for each function binary (release build), the median time from
# process start to init/ready under the SCF runtime API emulator and the peak resident memory,
# over RUNS starts (default 20). Uses dist/functions/*/bootstrap from scripts/build.sh when
# present (the binaries that ship), else builds with `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FUNCTIONS=(login:login create-order:createOrder pay-notify:payNotify gated-content:gatedContent ugc-upload:ugcUpload wx-push:wxPush)

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

# Part 3 (issue 19): bill reconciliation. A 100,000-row WeChat Pay trade bill (gzip, SHA-1
# announced) reconciled against 100,000 stored orders and refunds on SQLite (file, WAL) by
# `Finance::reconcile_day`: hash check, storage of the file, streaming parse, batched matching,
# discrepancies and revenue. Prints the wall time and the peak resident memory of that call
# (budget: under 10 s and 100 MB). Release profile (`cargo bench`); set BILL_ROWS for another size.
echo "==> bill reconciliation (${BILL_ROWS:-100000} rows against the store)"
cargo bench --locked -p wemint --bench bill_reconcile -- --rows "${BILL_ROWS:-100000}" 2>&1 \
    | grep -E '^(setup|bill reconciliation)'
