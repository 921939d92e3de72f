#!/usr/bin/env bash
# Deploys the functions built by scripts/build.sh to a CloudBase environment with the
# CloudBase CLI (`tcb`, npm package @cloudbase/cli, run through npx when not installed).
#
#   scripts/deploy.sh [--mode event|http] [function ...]
#
#   --mode event  (default) event functions with the SCF custom runtime (`bootstrap`), as
#                 described in cloudbaserc.json; called with wx.cloud.callFunction.
#   --mode http   HTTP cloud functions (`scf_bootstrap`, port 9000); called with
#                 wx.cloud.callHTTPFunction. The function type cannot change after creation:
#                 deploy a mode into a fresh environment or delete the functions first.
#
# Needs: ENV_ID (your CloudBase environment id), a CLI login (`npx @cloudbase/cli login`, or
# TCB_API_KEY_ID + TCB_API_KEY for CI), and the function variables of cloudbaserc.json in the
# environment or in .env / .env.local (never commit those).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=event
names=()
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) mode=${2:-}; shift 2 ;;
        --mode=*) mode=${1#--mode=}; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) names+=("$1"); shift ;;
    esac
done
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
case "$mode" in event|http) ;; *) die "--mode must be event or http, not '$mode'" ;; esac

# Variables may come from .env files like the CLI reads them.
for f in .env .env.local; do
    if [ -f "$f" ]; then set -a; . "./$f"; set +a; fi
done
[ -n "${ENV_ID:-}" ] || die "ENV_ID is not set: export ENV_ID=<CloudBase environment id> (console → 环境 → 环境 ID), or put ENV_ID=… in .env.local"

all=(login createOrder payNotify gatedContent ugcUpload wxPush)
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
for n in "${names[@]}"; do
    printf '%s\n' "${all[@]}" | grep -qx "$n" || die "unknown function '$n' (known: ${all[*]})"
    [ -x "dist/functions/$n/bootstrap" ] || die "dist/functions/$n/bootstrap is missing: run scripts/build.sh first"
done

if command -v tcb >/dev/null; then
    tcb=(tcb)
elif command -v npx >/dev/null; then
    tcb=(npx --yes -p @cloudbase/cli@2 tcb)
else
    die "neither tcb nor npx found: install Node.js 18+ (for npx), or npm i -g @cloudbase/cli"
fi

if [ -n "${TCB_API_KEY_ID:-}" ] && [ -n "${TCB_API_KEY:-}" ]; then
    "${tcb[@]}" login --apiKeyId "$TCB_API_KEY_ID" --apiKey "$TCB_API_KEY" >/dev/null \
        || die "tcb login with TCB_API_KEY_ID/TCB_API_KEY failed: check the key pair (console → 访问管理 → API 密钥)"
fi
if ! "${tcb[@]}" env list >/dev/null 2>&1; then
    die "not logged in to CloudBase: run '${tcb[*]} login' (opens a browser), or set TCB_API_KEY_ID and TCB_API_KEY (API key from https://console.cloud.tencent.com/cam/capi)"
fi

# Run the CLI from a directory whose cloudbaserc.json describes the chosen mode.
workdir=dist/deploy-$mode
mkdir -p "$workdir"
python3 - "$mode" cloudbaserc.json "$workdir/cloudbaserc.json" <<'PY'
import json, sys
mode, src, dst = sys.argv[1:]
cfg = json.load(open(src))
cfg["functionRoot"] = "../functions"
for fn in cfg["functions"]:
    if mode == "http":
        fn["type"] = "HTTP"
        fn["runtime"] = "Go1"
        fn["handler"] = "scf_bootstrap"
cfg.pop("framework", None)
json.dump(cfg, open(dst, "w"), indent=2, ensure_ascii=False)
PY
for f in .env .env.local; do
    if [ -f "$f" ]; then cp "$f" "$workdir/"; fi
done

declare -A paths=([payNotify]=/payNotify [wxPush]=/wxPush)
for n in "${names[@]}"; do
    args=(fn deploy "$n" -e "$ENV_ID" --force --yes)
    if [ "$mode" = http ]; then args+=(--httpFn); fi
    if [ -n "${paths[$n]:-}" ]; then args+=(--path "${paths[$n]}"); fi
    echo "==> deploying $n ($mode)"
    (cd "$workdir" && "${tcb[@]}" "${args[@]}")
done
echo "deployed: ${names[*]} to $ENV_ID ($mode mode)"
echo "HTTP access paths: payNotify → /payNotify (set WECHATPAY_NOTIFY_URL to https://<domain>/payNotify), wxPush → /wxPush"
