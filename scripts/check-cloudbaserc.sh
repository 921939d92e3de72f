#!/usr/bin/env bash
# Validates cloudbaserc.json offline, the way the CloudBase CLI loads it, and checks every
# function's environment against SCF's 4 KB limit. Run by scripts/test.sh; needs node/npm.
#
# Loader: `@cloudbase/toolbox`, the package the CloudBase CLI (`@cloudbase/cli`) loads its
# config with: `resolveCloudBaseConfig` (file search, the required `envId`, `functions[].config`
# flattening) and `ConfigParser.parseRawConfig` (the `{{env.X}}` mustache rendering with
# `.env` files, process.env and the injected `ENV_ID`). It is installed once, pinned, into
# target/cloudbase-cli (gitignored); no login, nothing is contacted after the install.
# The CLI publishes no JSON schema for `functions[]`, so the fields are checked here against
# the list @cloudbase/manager-node accepts (ICloudFunction), with the types and ranges SCF
# documents (https://cloud.tencent.com/document/product/583/11637).
#
# 4 KB: values set in the environment are measured as they are; unset ones count at a
# typical production size (SAMPLE below), so the check fails before a deploy would.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLBOX_VERSION=0.7.20
dir=target/cloudbase-cli
if [ ! -f "$dir/node_modules/@cloudbase/toolbox/package.json" ] \
    || ! grep -q "\"version\": \"$TOOLBOX_VERSION\"" "$dir/node_modules/@cloudbase/toolbox/package.json"; then
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "@cloudbase/toolbox@$TOOLBOX_VERSION" >/dev/null)
fi
exec node - "$dir" <<'JS'
const path = require("path");
const dir = path.resolve(process.argv[2]);
const { resolveCloudBaseConfig, ConfigParser } = require(
  path.join(dir, "node_modules/@cloudbase/toolbox/lib/config/cloudbase.js"));

const LIMIT = 4096;
// Typical sizes of values that are not set here (bytes).
const SAMPLE = {
  ENV_ID: "wemint-prod-1a2b3c",
  WECHATPAY_PRIVATE_KEY: 1624,        // RSA-2048 PKCS#8 as base64 DER (a PEM is ~1704)
  WECHATPAY_PUBLIC_KEY: 392,          // RSA-2048 SPKI as base64 DER
  WEMINT_CLOUDBASE_API_KEY: 900,      // a JWT; its length is not documented
  WECHATPAY_NOTIFY_URL: 96,
  WEMINT_RENEWAL_TEMPLATE_FIELDS: 160,
};
const DEFAULT_SAMPLE = 48;
// Fields @cloudbase/manager-node accepts on a function (types ICloudFunction/ICloudFunctionConfig).
const FIELDS = new Set(["name", "description", "handler", "runtime", "timeout", "memorySize",
  "envVariables", "vpc", "installDependency", "isWaitInstall", "ignore", "layers", "triggers",
  "type", "protocolType", "instanceConcurrencyConfig", "imageConfig", "codeSecret", "l5",
  "asyncRunEnable", "traceEnable", "dnsCache", "role", "initTimeout", "publicNetConfig",
  "cfsConfig", "tags", "clsLogsetId", "clsTopicId", "dir", "config"]);
const errors = [];
const fail = (msg) => errors.push(msg);

(async () => {
  const raw = await resolveCloudBaseConfig({ configPath: path.resolve("cloudbaserc.json") });
  // Render once with the real environment plus samples for whatever is unset.
  const referenced = new Set();
  JSON.stringify(raw).replace(/\{\{[#^/]?\s*env\.(\w+)\s*\}\}/g, (_, n) => referenced.add(n));
  const measured = {};
  for (const name of referenced) {
    if (process.env[name]) { measured[name] = "set"; continue; }
    const sample = SAMPLE[name] ?? DEFAULT_SAMPLE;
    process.env[name] = typeof sample === "string" ? sample : "x".repeat(sample);
    measured[name] = "sample";
  }
  const cfg = await ConfigParser.parseRawConfig(raw, process.cwd());
  if (!cfg.envId || /\{\{/.test(cfg.envId)) fail(`envId did not render: ${cfg.envId}`);
  const names = new Set();
  for (const fn of cfg.functions) {
    const where = `function ${fn.name || "?"}`;
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,59}$/.test(fn.name || "")) fail(`${where}: invalid name`);
    if (names.has(fn.name)) fail(`${where}: duplicate name`);
    names.add(fn.name);
    for (const key of Object.keys(fn)) if (!FIELDS.has(key)) fail(`${where}: unknown field \`${key}\``);
    if (!Number.isInteger(fn.timeout) || fn.timeout < 1 || fn.timeout > 900) fail(`${where}: timeout must be 1–900 s`);
    if (!(fn.memorySize === 64 || (Number.isInteger(fn.memorySize) && fn.memorySize % 128 === 0 && fn.memorySize >= 128 && fn.memorySize <= 3072)))
      fail(`${where}: memorySize must be 64 or a multiple of 128 up to 3072`);
    if (fn.type !== undefined && !["Event", "HTTP"].includes(fn.type)) fail(`${where}: type must be Event or HTTP`);
    for (const t of fn.triggers || []) {
      if (t.type !== "timer") fail(`${where}: trigger ${t.name}: the CLI supports timer triggers only`);
      if (typeof t.config !== "string" || t.config.trim().split(/\s+/).length !== 7)
        fail(`${where}: trigger ${t.name}: a timer needs a 7-field cron (seconds first)`);
    }
    const env = fn.envVariables || {};
    let size = 0;
    for (const [k, v] of Object.entries(env)) {
      if (typeof v !== "string") fail(`${where}: ${k} must be a string`);
      if (/^(SCF_|QCLOUD_|TENCENTCLOUD_)/.test(k)) fail(`${where}: ${k} uses a reserved prefix`);
      if (/\{\{/.test(String(v))) fail(`${where}: ${k} did not render: ${v}`);
      size += Buffer.byteLength(k) + Buffer.byteLength(String(v));
    }
    const line = `  ${fn.name.padEnd(13)} ${String(Object.keys(env).length).padStart(2)} variables, ${String(size).padStart(4)} of ${LIMIT} bytes`;
    console.log(line);
    if (size > LIMIT) fail(`${where}: environment is ${size} bytes, over SCF's ${LIMIT}-byte limit`);
  }
  const sampled = Object.keys(measured).filter((n) => measured[n] === "sample").length;
  console.log(`cloudbaserc.json: loaded with @cloudbase/toolbox ${require(path.join(dir, "node_modules/@cloudbase/toolbox/package.json")).version}; ${cfg.functions.length} functions; ${sampled} of ${referenced.size} variables at sample sizes`);
  if (errors.length) {
    for (const e of errors) console.error(`check-cloudbaserc: ${e}`);
    process.exit(1);
  }
})().catch((e) => { console.error(`check-cloudbaserc: cloudbaserc.json does not load: ${e.message}`); process.exit(1); });
JS
