#!/usr/bin/env bash
# The test command: a check that the repository tests itself, formatting, module layers, the
# collections registry, lints, API docs, the function binaries, every test in the workspace.
# Uses cargo-nextest when installed (plus doctests through cargo test), else cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n==> [%s] %s\n' "$(( $(date +%s) - started ))s" "$*"; }

step "the repository tests itself (no tracked file reads the shared directory beside the checkout)"
# The patterns are written so they do not match this check itself.
# (`shared/` inside the repo is the wemint crate; the directory beside the checkout holds
# vectors/, reference/, hooks/ and DESIGN.md.)
if git grep -n -I -E -e '\.\./(\.\./)*shared/(vectors|reference|hooks|DESIGN\.md)' -e '/work/share[d]'; then
    echo "scripts/test.sh: the files above read outside the repository; use testdata/ (and state" >&2
    echo "platform facts in docs/ with their sources) instead" >&2
    exit 1
fi

step "fmt"
cargo fmt --all -- --check

step "module layers (no import cycle between wemint's top-level modules)"
scripts/check-modules.sh

step "collections registry (no collection name outside shared/src/store/collections.rs)"
scripts/check-collections.sh

step "cloudbaserc.json (loaded offline as the CloudBase CLI loads it; SCF's 4 KB environment limit)"
scripts/check-cloudbaserc.sh

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs (no broken or private intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "build the function binaries (the end-to-end tests run them)"
cargo build --workspace --bins --locked

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cargo nextest --version >/dev/null 2>&1; then
    step "tests (cargo nextest)"
    cargo nextest run --workspace --locked --no-fail-fast 2>&1 | tee "$log"
    step "doctests"
    cargo test --workspace --locked --doc 2>&1 | tee -a "$log"
    summary=$(grep -E '^\s*Summary ' "$log" | tail -1 || true)
else
    step "tests (cargo test)"
    cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
    summary=""
fi
# One line that adds up every "test result:" block (cargo test prints one per test binary).
totals=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) ig += $i } }
              END { printf "%d passed, %d failed, %d ignored", p, f, ig }' "$log")
echo
if [ -n "$summary" ]; then
    echo "nextest: ${summary#"${summary%%[![:space:]]*}"}"
    echo "doctests: $totals"
else
    echo "tests: $totals"
fi
step "local suite: Mini Program tests, wemint-dev demo, console in Chromium, client e2e"
scripts/test-suite.sh

echo
if [ -n "$summary" ]; then
    echo "nextest: ${summary#"${summary%%[![:space:]]*}"}"
else
    echo "tests: $totals"
fi
echo "all checks green in $(( $(date +%s) - started ))s"
