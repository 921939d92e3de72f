#!/usr/bin/env node
/**
 * Copies the chart library from npm (@qiun/ucharts, pinned in package.json / package-lock.json)
 * into the admin subpackage, so it ships only there: admin/vendor/u-charts.js.
 *
 * The package is an ES module (`export default uCharts;`); a Mini Program `require`s CommonJS,
 * so that one closing statement becomes `module.exports = uCharts;` and nothing else changes.
 * test/unit/vendor-charts.test.js fails when the committed copy differs from what this script
 * makes from the installed package (after an upgrade: npm ci, then `npm run vendor:charts`).
 *
 *   node scripts/vendor-charts.js [--check]
 */
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const SOURCE = 'node_modules/@qiun/ucharts/u-charts.min.js';
const TARGET = 'admin/vendor/u-charts.js';
const ESM_EXPORT = 'export default uCharts;';

/** The CommonJS copy of the installed library's source. */
function build(root) {
  const src = fs.readFileSync(path.join(root || ROOT, SOURCE), 'utf8');
  const at = src.lastIndexOf(ESM_EXPORT);
  if (at < 0 || src.indexOf(ESM_EXPORT) !== at || src.slice(at + ESM_EXPORT.length).trim() !== '') {
    throw new Error(`${SOURCE}: expected exactly one closing "${ESM_EXPORT}"`);
  }
  return `${src.slice(0, at)}module.exports = uCharts;${src.slice(at + ESM_EXPORT.length)}`;
}

function main() {
  const out = build(ROOT);
  const target = path.join(ROOT, TARGET);
  if (process.argv.includes('--check')) {
    const same = fs.existsSync(target) && fs.readFileSync(target, 'utf8') === out;
    console.log(same ? `${TARGET} matches ${SOURCE}` : `${TARGET} differs from ${SOURCE}: run node scripts/vendor-charts.js`);
    process.exit(same ? 0 : 1);
  }
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, out);
  console.log(`${TARGET}: ${out.length} bytes from ${SOURCE}`);
}

if (require.main === module) main();

module.exports = { build, SOURCE, TARGET };
