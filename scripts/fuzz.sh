#!/usr/bin/env bash
# Longer runs of the property tests over every parser of untrusted input (the `fuzz_*` tests
# of the wemint crate: push JSON and XML, v2 XML, v3 notifications, virtual payment
# deliveries, SCF events, HTTP requests and the HTTP listener's socket). CI runs them with a
# few thousand cases each; this script repeats them with `PROPTEST_CASES` raised and a fresh
# random seed per round until the time is up, then prints the CPU time spent and the result.
# (cargo-fuzz needs a nightly toolchain; these use the pinned stable one.)
#
#   scripts/fuzz.sh [MINUTES] [CASES_PER_TEST_PER_ROUND]     default: 10 minutes, 20000 cases
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
cases=${2:-20000}

cargo test -p wemint --lib --locked --no-run --quiet
log=$(mktemp)
cpu=$(mktemp)
trap 'rm -f "$log" "$cpu"' EXIT

deadline=$(( $(date +%s) + minutes * 60 ))
rounds=0
status=0
TIMEFORMAT='%3U %3S'
while [ "$(date +%s)" -lt "$deadline" ]; do
    rounds=$((rounds + 1))
    if ! { time PROPTEST_CASES="$cases" cargo test -p wemint --lib --locked --quiet -- fuzz_ \
            >"$log" 2>&1; } 2>>"$cpu"; then
        status=1
        echo "round $rounds FAILED:"
        cat "$log"
        break
    fi
    passed=$(grep -Eo '[0-9]+ passed' "$log" | tail -1)
    echo "round $rounds: $passed ($cases cases each)"
done

cpu_secs=$(awk '{ s += $1 + $2 } END { printf "%.1f", s }' "$cpu")
cpu_min=$(awk -v s="$cpu_secs" 'BEGIN { printf "%.1f", s / 60 }')
if [ "$status" -eq 0 ]; then
    echo "fuzz: $rounds rounds x $cases cases per test, ${cpu_min} CPU-minutes, 0 failures"
else
    echo "fuzz: failure in round $rounds after ${cpu_min} CPU-minutes (see above)"
fi
exit "$status"
