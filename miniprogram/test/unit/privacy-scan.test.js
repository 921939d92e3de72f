/**
 * The privacy declarations: every privacy-scoped API the Mini Program calls is declared
 * (location types in app.json requiredPrivateInfos, every info type in README's privacy-guide
 * table), and a page using one renders <privacy-popup>. The fixtures prove the scan catches
 * what it should.
 * @jest-environment node
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const { scan, scanJs, scanWxml, REQUIRED_PRIVATE_INFOS, PRIVACY_APIS } = require('../../scripts/privacy-scan');

const ROOT = path.resolve(__dirname, '../..');
const README_OK = [
  '<!-- privacy-guide:start -->',
  '| info type | used by | purpose |',
  '|---|---|---|',
  '| 收货地址 (Address) | x | y |',
  '| 位置信息 (Location) | x | y |',
  '<!-- privacy-guide:end -->',
].join('\n');

/** A throwaway project: `files` maps relative paths to contents (objects become JSON). */
function fixture(files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'privacy-scan-'));
  const all = Object.assign(
    {
      'app.json': { pages: ['pages/a/a'], requiredPrivateInfos: ['chooseAddress'], __usePrivacyCheck__: true },
      'README.md': README_OK,
      'pages/a/a.json': { usingComponents: { 'privacy-popup': '/components/privacy-popup/privacy-popup' } },
      'pages/a/a.wxml': '<view><privacy-popup /></view>',
      'pages/a/a.js': "Component({ methods: { pick() { wx.chooseAddress({}); } } });",
    },
    files,
  );
  for (const [rel, content] of Object.entries(all)) {
    if (content === null) continue;
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

test('the Mini Program declares every privacy API it uses', () => {
  const r = scan(ROOT);
  expect(r.problems).toEqual([]);
  const used = r.uses.map((u) => `${u.file} ${u.api}`);
  expect(used).toEqual(expect.arrayContaining(['shop/pages/checkout/checkout.js chooseAddress', 'posting/pages/compose/compose.js chooseMedia', 'pages/me/me.wxml button.getPhoneNumber']));
  const app = JSON.parse(fs.readFileSync(path.join(ROOT, 'app.json'), 'utf8'));
  expect(app.requiredPrivateInfos).toEqual(['chooseAddress']);
  expect(app.__usePrivacyCheck__).toBe(true);
});

test('the location-type list is the 8 APIs WeChat names, each with its info type', () => {
  expect(REQUIRED_PRIVATE_INFOS.slice().sort()).toEqual(
    ['chooseAddress', 'chooseLocation', 'choosePoi', 'getFuzzyLocation', 'getLocation', 'onLocationChange', 'startLocationUpdate', 'startLocationUpdateBackground'].sort(),
  );
  for (const api of REQUIRED_PRIVATE_INFOS) expect(PRIVACY_APIS[api]).toMatch(/\((Address|Location)\)$/);
});

test('negative: an undeclared location API call fails the scan, naming file, line and API', () => {
  const dir = fixture({
    'pages/a/a.js': "Component({ methods: {\n  pick() { wx.chooseAddress({}); },\n  here() { wx.getLocation({ type: 'gcj02' }); },\n} });",
  });
  const r = scan(dir);
  expect(r.problems).toEqual(['pages/a/a.js:3 calls getLocation but app.json requiredPrivateInfos does not declare it']);
});

test('negative: a project that calls chooseAddress with no requiredPrivateInfos at all fails', () => {
  const dir = fixture({ 'app.json': { pages: ['pages/a/a'], __usePrivacyCheck__: true } });
  expect(scan(dir).problems).toEqual(['pages/a/a.js:1 calls chooseAddress but app.json requiredPrivateInfos does not declare it']);
});

test('calls through an alias or a string key count; comments and strings do not', () => {
  const src = [
    '// wx.getLocation() in a comment',
    "const s = 'wx.chooseLocation()';",
    '/* wx.startLocationUpdate() */',
    "function f(w) { w.chooseAddress({}); w['choosePoi']({}); }",
    'const g = wx?.getFuzzyLocation;',
  ].join('\n');
  expect(scanJs(src, 'x.js').map((u) => `${u.line}:${u.api}`)).toEqual(['4:chooseAddress', '4:choosePoi', '5:getFuzzyLocation']);
});

test('chooseMedia counts the camera unless sourceType leaves it out', () => {
  const apis = (src) => scanJs(src, 'x.js').map((u) => u.api).sort();
  expect(apis("wx.chooseMedia({ sourceType: ['album'] })")).toEqual(['chooseMedia']);
  expect(apis("wx.chooseMedia({ sourceType: ['album', 'camera'] })")).toEqual(['chooseMedia', 'chooseMedia(camera)']);
  expect(apis('wx.chooseMedia({ count: 1 })')).toEqual(['chooseMedia', 'chooseMedia(camera)']);
});

test('privacy components in WXML are found; commented-out ones are not', () => {
  expect(scanWxml('<button open-type="getPhoneNumber|agreePrivacyAuthorization">x</button>').map((u) => u.api)).toEqual(['button.getPhoneNumber']);
  expect(scanWxml('<input type="nickname" /><camera />').map((u) => u.api)).toEqual(['input.nickname', 'camera']);
  expect(scanWxml('<!-- <button open-type="chooseAvatar"/> -->')).toEqual([]);
});

test('negative: an info type missing from the README privacy guide fails', () => {
  const dir = fixture({ 'pages/a/a.js': "Component({ methods: { pick() { wx.chooseAddress({}); wx.setClipboardData({ data: 'x' }); } } });" });
  expect(scan(dir).problems).toEqual(['pages/a/a.js uses setClipboardData: README.md\'s privacy guide table has no entry for 剪切板 (Clipboard)']);
});

test('negative: a page using a privacy API without <privacy-popup> fails', () => {
  const dir = fixture({ 'pages/a/a.wxml': '<view />', 'pages/a/a.json': { usingComponents: {} } });
  expect(scan(dir).problems).toEqual(['pages/a/a uses a privacy API but does not render <privacy-popup>']);
});

test('negative: __usePrivacyCheck__ missing, a non-location entry, fuzzy and precise location together', () => {
  const dir = fixture({
    'app.json': { pages: ['pages/a/a'], requiredPrivateInfos: ['chooseAddress', 'getFuzzyLocation', 'getLocation', 'chooseMedia'] },
  });
  expect(scan(dir).problems).toEqual([
    'requiredPrivateInfos lists chooseMedia, which is not one of the 8 location-type APIs',
    'requiredPrivateInfos: getFuzzyLocation and the precise location APIs exclude each other',
    'app.json must set "__usePrivacyCheck__": true',
  ]);
});

test('the CLI exits 1 on an undeclared call and 0 on this project', () => {
  const { spawnSync } = require('child_process'); // eslint-disable-line global-require
  const script = path.join(ROOT, 'scripts/privacy-scan.js');
  const bad = spawnSync(process.execPath, [script, fixture({ 'app.json': { pages: ['pages/a/a'], __usePrivacyCheck__: true } })], { encoding: 'utf8' });
  expect(bad.status).toBe(1);
  expect(bad.stderr).toContain('calls chooseAddress but app.json requiredPrivateInfos does not declare it');
  const good = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  expect(good.status).toBe(0);
});
