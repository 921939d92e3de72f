#!/usr/bin/env bash
# Deploys the seven functions built by scripts/build.sh to a CloudBase environment with the
# CloudBase CLI (`tcb`, npm package @cloudbase/cli, run through npx when not installed), after
# provisioning the environment's document database (`wemint-dev provision`).
#
#   scripts/deploy.sh [--mode event|http] [--dry-run] [function ...]
#
#   --mode event  (default) event functions with the SCF custom runtime (`bootstrap`), as
#                 described in cloudbaserc.json; called with wx.cloud.callFunction. Each timer
#                 trigger is bound to its own function.
#   --mode http   HTTP cloud functions (`scf_bootstrap`, port 9000); called with
#                 wx.cloud.callHTTPFunction. SCF binds no timer to an HTTP function and a
#                 function's type cannot change after creation, so the timers run on event
#                 functions: reconcile (timers only) stays an event function, and gatedContent,
#                 ugcUpload and wxPush each get an event twin `<name>Timer` (same package) that
#                 carries their timer. Deploy a mode into a fresh environment, or delete the
#                 functions first.
#   --dry-run     print, per function, the mode, triggers, HTTP access paths, security rule,
#                 environment variable names and which values are missing; contacts nothing.
#
# Needs: ENV_ID (your CloudBase environment id), a CLI login (`npx @cloudbase/cli login`, or
# TCB_API_KEY_ID + TCB_API_KEY for CI), WEMINT_CLOUDBASE_API_KEY (the environment's API key,
# for provisioning and the functions' store), and the function variables of cloudbaserc.json
# in the environment or in .env / .env.local (never commit those).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=event
dry_run=false
names=()
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) mode=${2:-}; shift 2 ;;
        --mode=*) mode=${1#--mode=}; shift ;;
        --dry-run) dry_run=true; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) names+=("$1"); shift ;;
    esac
done
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
case "$mode" in event|http) ;; *) die "--mode must be event or http, not '$mode'" ;; esac

# Variables may come from .env files like the CLI reads them.
for f in .env .env.local; do
    if [ -f "$f" ]; then set -a; . "./$f"; set +a; fi
done

all=(login createOrder payNotify gatedContent ugcUpload wxPush reconcile analytics)
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
for n in "${names[@]}"; do
    printf '%s\n' "${all[@]}" | grep -qx "$n" || die "unknown function '$n' (known: ${all[*]})"
done

# The deploy plan, from cloudbaserc.json: one unit per SCF function to create, with the
# cloudbaserc.json the CLI reads for this mode. `plan` prints it (the dry run); `write` also
# writes the config and the twins' package directories.
plan() {
    python3 - "$mode" "$1" "${names[*]}" <<'PY'
import json, os, re, shutil, sys

mode, action, wanted = sys.argv[1], sys.argv[2], sys.argv[3].split()
cfg = json.load(open("cloudbaserc.json"))
inputs = cfg.get("framework", {}).get("plugins", {}).get("functions", {}).get("inputs", {})
paths = inputs.get("servicePaths", {})
acl = {f["name"]: f["aclRule"] for f in inputs.get("functions", []) if "aclRule" in f}
# Functions with no HTTP surface: in http mode they stay event functions (timers only).
TIMER_ONLY = {"reconcile"}

def render(template):
    """The mustache subset cloudbaserc.json uses: {{env.X}}, {{#env.X}}…{{/env.X}}, {{^env.X}}…{{/env.X}}."""
    def var(name):
        return os.environ.get(name[len("env."):], "") if name.startswith("env.") else ""
    def section(m):
        inverted, name, body = m.group(1) == "^", m.group(2), m.group(3)
        return body if bool(var(name)) != inverted else ""
    text = re.sub(r"\{\{([#^])\s*([\w.]+)\s*\}\}(.*?)\{\{/\s*\2\s*\}\}", section, template, flags=re.S)
    return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", lambda m: var(m.group(1)), text)

def referenced(template):
    return sorted(set(re.findall(r"\{\{[#^/]?\s*env\.(\w+)\s*\}\}", template)))

units = []
for fn in cfg["functions"]:
    if fn["name"] not in wanted:
        continue
    triggers = fn.get("triggers", [])
    http = mode == "http" and fn["name"] not in TIMER_ONLY
    unit = dict(fn)
    if http:
        unit.update(type="HTTP", runtime="Go1", handler="scf_bootstrap")
        unit.pop("triggers", None)
    units.append((unit, fn["name"], http, [] if http else triggers))
    if http and triggers:
        twin = dict(fn)
        twin["name"] = fn["name"] + "Timer"
        twin["description"] = f"Timer twin of {fn['name']} (same package): {', '.join(t['name'] for t in triggers)}"
        units.append((twin, fn["name"], False, triggers))

if action == "print":
    timers = 0
    for unit, source, http, triggers in units:
        name = unit["name"]
        kind = "HTTP function (scf_bootstrap, port 9000)" if http else "event function (bootstrap, SCF custom runtime)"
        print(f"{name}")
        print(f"  mode      {kind}" + (f", package of {source}" if source != name else ""))
        print("  triggers  " + (", ".join(f"timer {t['name']} `{t['config']}`" for t in triggers) or "none"))
        timers += len(triggers)
        path = paths.get(name)
        print("  paths     " + (f"HTTP access {path} (https://<env domain>{path})" if path else "none"))
        rule = acl.get(name)
        timer_only = source in TIMER_ONLY or source != name
        print("  security  " + (f"{json.dumps(rule)}: anonymous callers allowed (WeChat calls it)" if rule
                                  else "not callable by clients (timer only)" if timer_only
                                  else "default rule (signed-in callers only)"))
        env = unit.get("envVariables", {})
        # Empty after rendering, or a URI without its host (`cloudbase://` with no ENV_ID).
        missing = [k for k, v in env.items() if not render(v) or render(v).endswith("://")]
        size = sum(len(k) + len(render(v)) + 2 for k, v in env.items())
        print(f"  env       {len(env)} variables, {size} bytes of 4096 with the current values: {', '.join(env)}")
        def needs(k):
            names = [n for n in referenced(env[k]) if n != k and not os.environ.get(n)]
            return f"{k} (needs {', '.join(names)})" if names else k
        print("  missing   " + (", ".join(needs(k) for k in missing) or "none"))
    print(f"{len(units)} SCF functions for {len({u[1] for u in units})} wemint functions; {timers} timer triggers ({mode} mode)")
else:
    out_dir = f"dist/deploy-{mode}"
    cfg["functionRoot"] = "../functions"
    cfg["functions"] = [u[0] for u in units]
    cfg.pop("framework", None)
    for unit, source, _, _ in units:
        if unit["name"] != source:
            dst = f"dist/functions/{unit['name']}"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(f"dist/functions/{source}", dst, symlinks=False)
    json.dump(cfg, open(f"{out_dir}/cloudbaserc.json", "w"), indent=2, ensure_ascii=False)
    for unit, _, http, _ in units:
        print(f"{unit['name']} {'http' if http else 'event'} {paths.get(unit['name'], '-')}")
PY
}

store=${WEMINT_STORE:-cloudbase://${ENV_ID:-ENV_ID}}
rule=$(python3 -c 'import json; c=json.load(open("cloudbaserc.json")); fs=c["framework"]["plugins"]["functions"]["inputs"]["functions"]; r={"*":{"invoke":"auth != null"}}; r.update({f["name"]:f["aclRule"] for f in fs if "aclRule" in f}); print(json.dumps(r))')

if $dry_run; then
    echo "deploy plan ($mode mode, environment ${ENV_ID:-<ENV_ID not set>}); nothing is contacted"
    echo
    case "$store" in
        cloudbase://*) echo "first: wemint-dev provision --store $store (collections and indexes of the registry)" ;;
        *) echo "first: nothing to provision (WEMINT_STORE is not cloudbase://)" ;;
    esac
    [ -n "${WEMINT_CLOUDBASE_API_KEY:-}" ] || echo "       WEMINT_CLOUDBASE_API_KEY is missing (provisioning and the functions' store need it)"
    echo
    plan print
    echo
    echo "function security rule (environment level, console → 云函数 → 权限控制): $rule"
    exit 0
fi

[ -n "${ENV_ID:-}" ] || die "ENV_ID is not set: export ENV_ID=<CloudBase environment id> (console → 环境 → 环境 ID), or put ENV_ID=… in .env.local"
for n in "${names[@]}"; do
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

# The database first: every function expects its collections and unique indexes.
case "$store" in
    cloudbase://*)
        [ -n "${WEMINT_CLOUDBASE_API_KEY:-}" ] || die "WEMINT_CLOUDBASE_API_KEY is not set: create an API key (console → 环境 → API Key) and export it"
        echo "==> provisioning $store"
        if [ -x target/release/wemint-dev ]; then
            target/release/wemint-dev provision --store "$store"
        else
            cargo run --quiet --release -p wemint-emulator --bin wemint-dev -- provision --store "$store"
        fi
        ;;
esac

# Run the CLI from a directory whose cloudbaserc.json describes the chosen mode.
workdir=dist/deploy-$mode
mkdir -p "$workdir"
for f in .env .env.local; do
    if [ -f "$f" ]; then cp "$f" "$workdir/"; fi
done
deployed=()
while read -r name kind path; do
    args=(fn deploy "$name" -e "$ENV_ID" --force --yes)
    if [ "$kind" = http ]; then args+=(--httpFn); fi
    if [ "$path" != - ]; then args+=(--path "$path"); fi
    echo "==> deploying $name ($kind)"
    (cd "$workdir" && "${tcb[@]}" "${args[@]}")
    deployed+=("$name")
done < <(plan write)
echo "deployed: ${deployed[*]} to $ENV_ID ($mode mode)"
echo "HTTP access paths: payNotify → /payNotify (set WECHATPAY_NOTIFY_URL to https://<domain>/payNotify), wxPush → /wxPush"
echo "function security rule: WeChat calls payNotify and wxPush anonymously; check console → 云函数 → 权限控制 reads $rule"
