#!/usr/bin/env bash
# Builds every function for SCF's CentOS 7 image (glibc 2.17) and packages it:
#   dist/functions/<deployName>/bootstrap      the binary (SCF custom runtime entry point)
#   dist/functions/<deployName>/scf_bootstrap  starts it as an HTTP function on port 9000
#   dist/<deployName>.zip                      both files, exec bits kept
# Then prints binary size, zip size and the highest GLIBC symbol version per function, and
# fails if any binary needs more than GLIBC 2.17.
#
# Tools: cargo-zigbuild and zig (pip package `ziglang`) are installed when missing.
#
# Usage: scripts/build.sh [--features LIST]
#   The default build carries only what a CloudBase deployment uses: the cloudbase:// store, the
#   HTTP mode and the SCF event mode (cargo --no-default-features). LIST (comma-separated) adds
#   optional parts to every function:
#     sqlite    the embedded SQLite store (WEMINT_STORE=sqlite:PATH), for self-hosting
#     mongodb   the MongoDB store backend (WEMINT_STORE=mongodb://…)
#     lambda    the AWS Lambda run mode
#   e.g. scripts/build.sh --features sqlite,mongodb
#   A function started with a WEMINT_STORE whose backend is not compiled in exits at start-up
#   and says which feature to build with.
set -euo pipefail
cd "$(dirname "$0")/.."

FEATURES=""
while [ $# -gt 0 ]; do
    case "$1" in
        --features) FEATURES=${2:?--features needs a list, e.g. mongodb}; shift 2 ;;
        --features=*) FEATURES=${1#--features=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for f in ${FEATURES//,/ }; do
    case "$f" in
        sqlite|mongodb|lambda) ;;
        *) echo "build.sh: unknown feature $f (sqlite, mongodb, lambda)" >&2; exit 2 ;;
    esac
done

TARGET=x86_64-unknown-linux-gnu
MAX_GLIBC=2.17
# SCF's limit for a directly uploaded zip is far above this; it is the project's budget for the
# default build (smaller packages deploy and cold-start faster).
MAX_ZIP_BYTES=$((3 * 1024 * 1024))
# crate:deployName
FUNCTIONS=(login:login create-order:createOrder pay-notify:payNotify gated-content:gatedContent ugc-upload:ugcUpload wx-push:wxPush reconcile:reconcile realtime:realtime analytics:analytics)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
DIST=dist
started=$(date +%s)

step() { printf '\n==> [%s] %s\n' "$(( $(date +%s) - started ))s" "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

step "1/4 tools"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
if ! command -v zig >/dev/null && ! python3 -m ziglang version >/dev/null 2>&1; then
    echo "installing zig (pip package ziglang)…"
    python3 -m pip install --quiet ziglang || die "could not install ziglang with pip"
fi
if ! command -v cargo-zigbuild >/dev/null; then
    echo "installing cargo-zigbuild (takes a few minutes once)…"
    cargo install cargo-zigbuild --locked || die "could not install cargo-zigbuild"
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
command -v objdump >/dev/null || die "objdump not found: install binutils (needed for the GLIBC check)"

step "2/4 release build for $TARGET (glibc $MAX_GLIBC${FEATURES:+, features $FEATURES}) — a clean build takes ~10 minutes"
packages=(--no-default-features)
for f in "${FUNCTIONS[@]}"; do packages+=(-p "${f%%:*}"); done
[ -z "$FEATURES" ] || packages+=(--features "$FEATURES")
# cargo prints one line per compiled crate: that is the progress.
cargo zigbuild --locked --release --target "$TARGET.$MAX_GLIBC" "${packages[@]}"

step "3/4 packaging into $DIST/"
mkdir -p "$DIST/functions"
for f in "${FUNCTIONS[@]}"; do
    crate=${f%%:*}
    name=${f##*:}
    bin="$TARGET_DIR/$TARGET/release/$crate"
    [ -x "$bin" ] || die "missing $bin after the build"
    out="$DIST/functions/$name"
    rm -rf "$out" "$DIST/$name.zip"
    mkdir -p "$out"
    cp "$bin" "$out/bootstrap"
    # HTTP cloud function entry: always the http mode, on the port CloudBase expects.
    cat > "$out/scf_bootstrap" <<'SH'
#!/bin/bash
# CloudBase HTTP cloud function entry: serve HTTP on 0.0.0.0:9000.
unset SCF_RUNTIME_API SCF_RUNTIME_API_PORT
export PORT=9000
exec "$(cd "$(dirname "$0")" && pwd)/bootstrap"
SH
    chmod 755 "$out/bootstrap" "$out/scf_bootstrap"
    if command -v zip >/dev/null; then
        (cd "$out" && zip -q -X "../../$name.zip" bootstrap scf_bootstrap)
    else
        python3 - "$out" "$DIST/$name.zip" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
    for n in ("bootstrap", "scf_bootstrap"):
        p = os.path.join(src, n)
        info = zipfile.ZipInfo(n)
        info.external_attr = (0o100755 & 0xFFFF) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(p, "rb") as fh:
            z.writestr(info, fh.read())
PY
    fi
    echo "  $name"
done

step "4/4 check"
human() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.1f MB", b/1048576; else printf "%.0f KB", b/1024 }'; }
failed=0
printf '\n%-14s %12s %12s %14s\n' function binary zip "max GLIBC"
printf '%-14s %12s %12s %14s\n' -------------- ------------ ------------ --------------
for f in "${FUNCTIONS[@]}"; do
    name=${f##*:}
    bin="$DIST/functions/$name/bootstrap"
    glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 || true)
    mark=""
    if [ -n "$glibc" ] && [ "$(printf '%s\n%s\n' "$glibc" "$MAX_GLIBC" | sort -V | tail -1)" != "$MAX_GLIBC" ]; then
        mark="  > $MAX_GLIBC!"
        failed=1
    fi
    zip_bytes=$(stat -c %s "$DIST/$name.zip")
    if [ -z "$FEATURES" ] && [ "$zip_bytes" -gt "$MAX_ZIP_BYTES" ]; then
        mark="$mark  zip > 3 MB!"
        too_big=1
    fi
    printf '%-14s %12s %12s %14s%s\n' "$name" "$(human "$(stat -c %s "$bin")")" \
        "$(human "$zip_bytes")" "GLIBC_${glibc:-none}" "$mark"
done
echo
[ "$failed" = 0 ] || die "some binaries need a glibc newer than $MAX_GLIBC and will not load on SCF"
[ "${too_big:-0}" = 0 ] || die "some zips of the default build exceed 3 MB"
echo "done in $(( $(date +%s) - started ))s: $DIST/functions/*/ and $DIST/*.zip"
