/**
 * The chart library shipped in the admin subpackage is the npm package's own file (pinned in
 * package-lock.json), changed only from an ES module export to CommonJS.
 * @jest-environment node
 */
const fs = require('fs');
const path = require('path');
const { build, SOURCE, TARGET } = require('../../scripts/vendor-charts');

const ROOT = path.resolve(__dirname, '../..');

test('admin/vendor/u-charts.js is what scripts/vendor-charts.js makes from the installed package', () => {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules/@qiun/ucharts/package.json'), 'utf8'));
  expect(pkg.version).toBe(lock.packages['node_modules/@qiun/ucharts'].version);
  const shipped = fs.readFileSync(path.join(ROOT, TARGET), 'utf8');
  expect(shipped === build(ROOT)).toBe(true);
  const original = fs.readFileSync(path.join(ROOT, SOURCE), 'utf8');
  expect(shipped.replace('module.exports = uCharts;', 'export default uCharts;')).toBe(original);
});

test('only the admin subpackage requires the chart library', () => {
  const users = [];
  const visit = (dir) => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = dir ? `${dir}/${e.name}` : e.name;
      if (['node_modules', 'test', 'scripts', 'coverage'].includes(rel) || e.name.startsWith('.')) continue;
      if (e.isDirectory()) visit(rel);
      else if (e.name.endsWith('.js') && /require\([^)]*u-charts/.test(fs.readFileSync(path.join(ROOT, rel), 'utf8'))) users.push(rel);
    }
  };
  visit('');
  expect(users).toEqual(['admin/pages/analytics/analytics.js']);
});
