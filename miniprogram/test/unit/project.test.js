/**
 * The project as WeChat DevTools would load it: every page and component in app.json / json
 * files exists with its four files, WeChat's own WXML/WXSS compilers (wcc/wcsc from
 * miniprogram-compiler) accept every template, and the package sizes stay in budget.
 * @jest-environment node
 */
const fs = require('fs');
const path = require('path');
const compiler = require('miniprogram-compiler');
const { measure } = require('../../scripts/size');

const ROOT = path.resolve(__dirname, '../..');
const app = JSON.parse(fs.readFileSync(path.join(ROOT, 'app.json'), 'utf8'));

function allPages() {
  const pages = app.pages.slice();
  for (const s of app.subPackages) for (const p of s.pages) pages.push(`${s.root}/${p}`);
  return pages;
}

test.each(allPages())('page %s has js, json, wxml and wxss', (page) => {
  for (const ext of ['js', 'json', 'wxml', 'wxss']) {
    expect(fs.existsSync(path.join(ROOT, `${page}.${ext}`))).toBe(true);
  }
});

test('every usingComponents entry resolves to a component', () => {
  const missing = [];
  const visit = (dir) => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = dir ? `${dir}/${e.name}` : e.name;
      if (['node_modules', 'test', 'scripts', 'coverage'].includes(rel)) continue;
      if (e.isDirectory()) visit(rel);
      else if (e.name.endsWith('.json') && fs.existsSync(path.join(ROOT, rel.replace(/\.json$/, '.wxml')))) {
        const json = JSON.parse(fs.readFileSync(path.join(ROOT, rel), 'utf8'));
        for (const target of Object.values(json.usingComponents || {})) {
          const abs = target.startsWith('/') ? path.join(ROOT, target) : path.join(ROOT, path.dirname(rel), target);
          if (!fs.existsSync(`${abs}.js`)) missing.push(`${rel} → ${target}`);
        }
      }
    }
  };
  visit('');
  expect(missing).toEqual([]);
});

test('tab bar pages are in the main package', () => {
  for (const t of app.tabBar.list) expect(app.pages).toContain(t.pagePath);
});

test('WeChat wcc compiles every WXML file', () => {
  const js = compiler.wxmlToJs(ROOT);
  expect(js).toContain('$gwx');
  // eslint-disable-next-line no-new-func
  const gwx = new Function(js.replace(/window\./g, 'globalThis.'))();
  for (const page of allPages()) expect(typeof gwx(`${page}.wxml`)).toBe('function');
});

test('WeChat wcsc compiles every WXSS file', () => {
  expect(() => compiler.wxssToJs(ROOT)).not.toThrow();
});

test('main package is well under 2 MB and nothing is over a limit', () => {
  const r = measure();
  expect(r.failures).toEqual([]);
  expect(r.main.bytes).toBeLessThan(512 * 1024);
  expect(r.subpackages.map((s) => s.name).sort()).toEqual(['admin', 'content', 'membership', 'posting', 'shop']);
});

test('no shipped source writes to wx storage (the session lives in memory only)', () => {
  const offenders = [];
  const visit = (dir) => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = dir ? `${dir}/${e.name}` : e.name;
      if (['node_modules', 'test', 'scripts', 'coverage'].includes(rel) || e.name.startsWith('.')) continue;
      if (e.isDirectory()) visit(rel);
      else if (e.name.endsWith('.js') && /\bsetStorage(Sync)?\b/.test(fs.readFileSync(path.join(ROOT, rel), 'utf8'))) offenders.push(rel);
    }
  };
  visit('');
  expect(offenders).toEqual([]);
});
