#!/usr/bin/env node
/**
 * Package sizes as WeChat counts them (source files that ship; project.config.json
 * packOptions.ignore left out): the main package, each subpackage from app.json, and the total.
 * Exits 1 when the main package or any subpackage is 2 MB or more, or the total is 20 MB or more.
 *
 *   node scripts/size.js [--json] [PROJECT_DIR]
 */
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const MB = 1024 * 1024;
const LIMITS = { main: 2 * MB, subpackage: 2 * MB, total: 20 * MB };
/** File types the Mini Program packer ships. */
const SHIPPED = /\.(js|json|wxml|wxss|wxs|png|jpe?g|gif|svg|webp|mp3|aac|m4a|mp4|ttf|woff2?)$/i;

function readJson(root, rel) {
  return JSON.parse(fs.readFileSync(path.join(root, rel), 'utf8'));
}

function ignoredPaths(projectConfig) {
  const ignore = ((projectConfig.packOptions || {}).ignore || []).map((r) => ({
    type: r.type,
    value: String(r.value).replace(/^\.?\//, '').replace(/\/$/, ''),
  }));
  return (rel) =>
    ignore.some((r) => (r.type === 'folder' ? rel === r.value || rel.startsWith(`${r.value}/`) : rel === r.value));
}

function walk(root, dir, isIgnored, out) {
  for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.name.startsWith('.') || isIgnored(rel)) continue;
    if (entry.isDirectory()) walk(root, rel, isIgnored, out);
    else if (SHIPPED.test(entry.name)) out.push({ rel, bytes: fs.statSync(path.join(root, rel)).size });
  }
  return out;
}

/** Sizes of the project at `root` (default: this Mini Program). */
function measure(root) {
  const dir = root || ROOT;
  const app = readJson(dir, 'app.json');
  const isIgnored = ignoredPaths(readJson(dir, 'project.config.json'));
  const subs = (app.subPackages || app.subpackages || []).map((s) => ({
    name: s.name || s.root,
    root: String(s.root).replace(/^\.?\//, '').replace(/\/$/, ''),
    bytes: 0,
    files: 0,
  }));
  const main = { name: 'main', bytes: 0, files: 0 };
  for (const f of walk(dir, '', isIgnored, [])) {
    const sub = subs.find((s) => f.rel.startsWith(`${s.root}/`));
    const bucket = sub || main;
    bucket.bytes += f.bytes;
    bucket.files += 1;
  }
  const total = main.bytes + subs.reduce((n, s) => n + s.bytes, 0);
  const failures = [];
  if (main.bytes >= LIMITS.main) failures.push(`main package ${main.bytes} B >= 2 MB`);
  for (const s of subs) if (s.bytes >= LIMITS.subpackage) failures.push(`subpackage ${s.name} ${s.bytes} B >= 2 MB`);
  if (total >= LIMITS.total) failures.push(`total ${total} B >= 20 MB`);
  return { main, subpackages: subs, total, limits: LIMITS, failures };
}

function kb(bytes) {
  return `${(bytes / 1024).toFixed(1)} KB`;
}

function main() {
  const rootArg = process.argv.slice(2).find((a) => !a.startsWith('--'));
  const r = measure(rootArg ? path.resolve(rootArg) : ROOT);
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    const pct = ((r.main.bytes / r.limits.main) * 100).toFixed(1);
    console.log(`main package        ${kb(r.main.bytes).padStart(10)}  ${String(r.main.files).padStart(3)} files  (${pct}% of 2 MB)`);
    for (const s of r.subpackages) {
      console.log(`subpackage ${s.name.padEnd(9)}${kb(s.bytes).padStart(10)}  ${String(s.files).padStart(3)} files  (root ${s.root}/)`);
    }
    console.log(`total               ${kb(r.total).padStart(10)}`);
  }
  if (r.failures.length) {
    for (const f of r.failures) console.error(`SIZE LIMIT: ${f}`);
    process.exit(1);
  }
}

if (require.main === module) main();

module.exports = { measure, LIMITS };
