/** scripts/size.js on small fixture projects: buckets, ignores and the 2 MB limit. @jest-environment node */
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const { measure } = require('../../scripts/size');

const SCRIPT = path.resolve(__dirname, '../../scripts/size.js');

function fixture(files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-size-'));
  const write = (rel, content) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  };
  write('app.json', JSON.stringify({ pages: ['pages/a/a'], subPackages: [{ root: 'shop', name: 'shop', pages: ['pages/b/b'] }] }));
  write('project.config.json', JSON.stringify({ packOptions: { ignore: [{ type: 'folder', value: 'node_modules' }, { type: 'file', value: 'README.md' }] } }));
  Object.entries(files).forEach(([rel, content]) => write(rel, content));
  return dir;
}

test('counts shipped files per package and leaves ignored ones out', () => {
  const dir = fixture({
    'pages/a/a.js': 'x'.repeat(1000),
    'shop/pages/b/b.wxml': 'y'.repeat(300),
    'node_modules/big/index.js': 'z'.repeat(5000),
    'README.md': 'r'.repeat(700),
    'notes.txt': 'not shipped',
  });
  const r = measure(dir);
  const appJson = fs.statSync(path.join(dir, 'app.json')).size;
  const projectJson = fs.statSync(path.join(dir, 'project.config.json')).size;
  expect(r.main.bytes).toBe(1000 + appJson + projectJson);
  expect(r.subpackages).toEqual([{ name: 'shop', root: 'shop', bytes: 300, files: 1 }]);
  expect(r.failures).toEqual([]);
});

test('a main package of 2 MB fails, and the script exits 1', () => {
  const dir = fixture({ 'pages/a/a.js': Buffer.alloc(2 * 1024 * 1024, 97) });
  expect(measure(dir).failures).toEqual([expect.stringMatching(/^main package \d+ B >= 2 MB$/)]);
  let status = 0;
  try {
    execFileSync(process.execPath, [SCRIPT, dir], { stdio: 'pipe' });
  } catch (e) {
    status = e.status;
  }
  expect(status).toBe(1);
});

test('the real project passes', () => {
  expect(execFileSync(process.execPath, [SCRIPT], { encoding: 'utf8' })).toMatch(/^main package\s+\d+\.\d KB/);
});
