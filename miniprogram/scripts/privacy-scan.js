#!/usr/bin/env node
/**
 * Which privacy-scoped APIs and components the Mini Program uses, and whether each is declared.
 *
 * The one list of privacy-scoped APIs lives here (PRIVACY_APIS, PRIVACY_COMPONENTS), taken from
 * WeChat's privacy API list (developers.weixin.qq.com/miniprogram/dev/framework/user-privacy/
 * miniprogram-intro.html) and the `requiredPrivateInfos` reference (…/reference/configuration/
 * app.html#requiredPrivateInfos). Two declarations are checked:
 *
 * - `requiredPrivateInfos` in app.json: the 8 location-type APIs (`chooseAddress` among them).
 *   A released version refuses an undeclared one at run time.
 * - The privacy guide (用户隐私保护指引) filled in the MP admin console: every info type the
 *   code touches. It cannot be read from the repository, so README.md keeps the entries the
 *   merchant must fill in, and the scan checks that each used info type is listed there.
 *
 * Every page or component that calls one of these APIs must also render `<privacy-popup>`, so
 * the user can agree where the call is made.
 *
 *   node scripts/privacy-scan.js [PROJECT_DIR]     exits 1 when something is undeclared
 */
const fs = require('fs');
const path = require('path');
const { parse } = require('@babel/parser');

const ROOT = path.resolve(__dirname, '..');

/** The 8 location-type APIs that must be listed in app.json `requiredPrivateInfos`. */
const REQUIRED_PRIVATE_INFOS = [
  'getFuzzyLocation',
  'getLocation',
  'onLocationChange',
  'startLocationUpdate',
  'startLocationUpdateBackground',
  'chooseAddress',
  'choosePoi',
  'chooseLocation',
];

/** Precise location: declaring any of these together with getFuzzyLocation is refused. */
const PRECISE_LOCATION = ['getLocation', 'onLocationChange', 'startLocationUpdate', 'startLocationUpdateBackground'];

/**
 * Privacy-scoped `wx.*` APIs and the privacy-guide info type each needs (the guide's own name,
 * then the English key WeChat uses for it).
 */
const PRIVACY_APIS = {
  chooseAddress: '收货地址 (Address)',
  getFuzzyLocation: '位置信息 (Location)',
  getLocation: '位置信息 (Location)',
  onLocationChange: '位置信息 (Location)',
  startLocationUpdate: '位置信息 (Location)',
  startLocationUpdateBackground: '位置信息 (Location)',
  choosePoi: '位置信息 (Location)',
  chooseLocation: '位置信息 (Location)',
  chooseMedia: '选中的照片或视频信息 (Album)',
  chooseImage: '选中的照片或视频信息 (Album)',
  chooseVideo: '选中的照片或视频信息 (Album)',
  chooseMessageFile: '微信聊天文件 (MessageFile)',
  saveImageToPhotosAlbum: '相册（仅写入）权限 (AlbumWriteOnly)',
  saveVideoToPhotosAlbum: '相册（仅写入）权限 (AlbumWriteOnly)',
  setClipboardData: '剪切板 (Clipboard)',
  getClipboardData: '剪切板 (Clipboard)',
  createCameraContext: '摄像头 (Camera)',
  startRecord: '麦克风 (Record)',
  getRecorderManager: '麦克风 (Record)',
  getWeRunData: '微信运动步数 (WeRunData)',
  chooseInvoiceTitle: '发票信息 (Invoice)',
  chooseInvoice: '发票信息 (Invoice)',
  chooseLicensePlate: '车牌号 (LicensePlate)',
  openBluetoothAdapter: '蓝牙 (Bluetooth)',
  getUserProfile: '微信昵称、头像 (UserInfo)',
};

/** Privacy-scoped WXML: an `open-type`, an `<input type>` or a tag, and its info type. */
const PRIVACY_COMPONENTS = [
  { name: 'button.getPhoneNumber', re: /open-type\s*=\s*"[^"]*\bgetPhoneNumber\b/, info: '手机号 (PhoneNumber)' },
  { name: 'button.getRealtimePhoneNumber', re: /open-type\s*=\s*"[^"]*\bgetRealtimePhoneNumber\b/, info: '手机号 (PhoneNumber)' },
  { name: 'button.chooseAvatar', re: /open-type\s*=\s*"[^"]*\bchooseAvatar\b/, info: '微信昵称、头像 (UserInfo)' },
  { name: 'input.nickname', re: /<input\b[^>]*\btype\s*=\s*"nickname"/, info: '微信昵称、头像 (UserInfo)' },
  { name: 'camera', re: /<camera\b/, info: '摄像头 (Camera)' },
];

/**
 * Each `wx.chooseMedia` whose `sourceType` may include the camera (it is absent, or lists
 * `camera`) also needs the camera entry: WeChat does not say whether it does, so declare it.
 */
const CAMERA_INFO = '摄像头 (Camera)';

const SKIP = new Set(['node_modules', 'test', 'scripts', 'coverage']);

function files(root, dir, out) {
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.name.startsWith('.') || (!dir && SKIP.has(e.name))) continue;
    if (e.isDirectory()) files(root, rel, out);
    else if (/\.(js|wxml)$/.test(e.name)) out.push(rel);
  }
  return out;
}

/** The property name of a member expression (`x.name`, `x['name']`), or null. */
function memberName(node) {
  if (node.type !== 'MemberExpression' && node.type !== 'OptionalMemberExpression') return null;
  const p = node.property;
  if (!node.computed && p.type === 'Identifier') return p.name;
  if (node.computed && p.type === 'StringLiteral') return p.value;
  return null;
}

function walk(node, visit) {
  if (!node || typeof node.type !== 'string') return;
  visit(node);
  for (const key of Object.keys(node)) {
    if (key === 'loc' || key === 'start' || key === 'end' || key === 'leadingComments' || key === 'trailingComments') continue;
    const v = node[key];
    if (Array.isArray(v)) v.forEach((c) => walk(c, visit));
    else if (v && typeof v.type === 'string') walk(v, visit);
  }
}

/** Whether a `chooseMedia({...})` call may open the camera. */
function mayUseCamera(call) {
  const arg = call && call.arguments && call.arguments[0];
  if (!arg || arg.type !== 'ObjectExpression') return true;
  const prop = arg.properties.find((p) => p.key && (p.key.name === 'sourceType' || p.key.value === 'sourceType'));
  if (!prop) return true;
  if (prop.value.type !== 'ArrayExpression') return true;
  return prop.value.elements.some((e) => !e || e.type !== 'StringLiteral' || e.value === 'camera');
}

/** The privacy APIs one JS source uses: `[{api, info, line}]` (comments and strings ignored). */
function scanJs(src, file) {
  const ast = parse(src, { sourceType: 'unambiguous', errorRecovery: false, sourceFilename: file });
  const found = [];
  walk(ast.program, (node) => {
    const name = memberName(node);
    if (name && Object.prototype.hasOwnProperty.call(PRIVACY_APIS, name)) {
      found.push({ api: name, info: PRIVACY_APIS[name], line: node.loc.start.line });
    }
    if (node.type === 'CallExpression' && memberName(node.callee) === 'chooseMedia' && mayUseCamera(node)) {
      found.push({ api: 'chooseMedia(camera)', info: CAMERA_INFO, line: node.loc.start.line });
    }
  });
  return found;
}

/** The privacy components one WXML source uses. */
function scanWxml(src) {
  const text = src.replace(/<!--[\s\S]*?-->/g, '');
  return PRIVACY_COMPONENTS.filter((c) => c.re.test(text)).map((c) => ({ api: c.name, info: c.info }));
}

/** The info types the README's privacy guide section lists (its table's first column). */
function guideEntries(readme) {
  const m = /<!-- privacy-guide:start -->([\s\S]*?)<!-- privacy-guide:end -->/.exec(readme || '');
  if (!m) return [];
  return m[1]
    .split('\n')
    .filter((l) => /^\|/.test(l) && !/^\|\s*-/.test(l))
    .slice(1)
    .map((l) => l.split('|')[1].trim().replace(/`/g, ''));
}

/**
 * Scans the project at `root`. Returns `{uses, declared, problems}`: `uses` is every privacy
 * API or component found (`{file, api, info}`), `problems` the human-readable failures.
 */
function scan(root) {
  const dir = root || ROOT;
  const app = JSON.parse(fs.readFileSync(path.join(dir, 'app.json'), 'utf8'));
  const declared = app.requiredPrivateInfos || [];
  const readmePath = path.join(dir, 'README.md');
  const guide = guideEntries(fs.existsSync(readmePath) ? fs.readFileSync(readmePath, 'utf8') : '');
  const uses = [];
  const problems = [];
  const byUnit = new Map(); // page/component path without extension → uses privacy APIs
  for (const rel of files(dir, '', [])) {
    const src = fs.readFileSync(path.join(dir, rel), 'utf8');
    const found = rel.endsWith('.js') ? scanJs(src, rel) : scanWxml(src);
    for (const f of found) uses.push(Object.assign({ file: rel }, f));
    if (found.length) byUnit.set(rel.replace(/\.(js|wxml)$/, ''), true);
  }
  for (const u of uses) {
    if (REQUIRED_PRIVATE_INFOS.includes(u.api) && !declared.includes(u.api)) {
      problems.push(`${u.file}:${u.line || 0} calls ${u.api} but app.json requiredPrivateInfos does not declare it`);
    }
    if (!guide.includes(u.info)) {
      problems.push(`${u.file} uses ${u.api}: README.md's privacy guide table has no entry for ${u.info}`);
    }
  }
  for (const d of declared) {
    if (!REQUIRED_PRIVATE_INFOS.includes(d)) problems.push(`requiredPrivateInfos lists ${d}, which is not one of the 8 location-type APIs`);
  }
  if (declared.includes('getFuzzyLocation') && declared.some((d) => PRECISE_LOCATION.includes(d))) {
    problems.push('requiredPrivateInfos: getFuzzyLocation and the precise location APIs exclude each other');
  }
  if (uses.length && app.__usePrivacyCheck__ !== true) problems.push('app.json must set "__usePrivacyCheck__": true');
  for (const unit of byUnit.keys()) {
    if (unit.startsWith('components/privacy-popup/') || !fs.existsSync(path.join(dir, `${unit}.wxml`))) continue;
    const wxml = fs.readFileSync(path.join(dir, `${unit}.wxml`), 'utf8');
    const json = fs.existsSync(path.join(dir, `${unit}.json`)) ? JSON.parse(fs.readFileSync(path.join(dir, `${unit}.json`), 'utf8')) : {};
    const registered = Object.keys(json.usingComponents || {}).includes('privacy-popup') || Object.keys(app.usingComponents || {}).includes('privacy-popup');
    if (!registered || !/<privacy-popup\b/.test(wxml)) problems.push(`${unit} uses a privacy API but does not render <privacy-popup>`);
  }
  return { uses, declared, guide, problems };
}

function main() {
  const rootArg = process.argv.slice(2).find((a) => !a.startsWith('--'));
  const r = scan(rootArg ? path.resolve(rootArg) : ROOT);
  for (const u of r.uses) console.log(`${u.file}${u.line ? `:${u.line}` : ''}  ${u.api}  → ${u.info}`);
  console.log(`requiredPrivateInfos: ${JSON.stringify(r.declared)}`);
  if (r.problems.length) {
    for (const p of r.problems) console.error(`PRIVACY: ${p}`);
    process.exit(1);
  }
}

if (require.main === module) main();

module.exports = { scan, scanJs, scanWxml, guideEntries, REQUIRED_PRIVATE_INFOS, PRIVACY_APIS, PRIVACY_COMPONENTS };
