// Browser test of the console's Analytics section in headless Chromium, without a suite: a
// small local server serves the console page itself (../src/console.html) and stands in for
// the /dev routes it reads, with /dev/analytics answering a fixed `dashboard` reply (the
// analytics contract). Checks the funnel, revenue per day, retention and the empty and
// unavailable states. The full console test (console.test.js) needs the wemint-dev binary.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const PAGE = fs.readFileSync(path.join(__dirname, '..', 'src', 'console.html'), 'utf8');

const STATE = {
  suite: { baseUrl: 'http://stub', appid: 'wx-stub', mchid: '1', now: 1764900000, clockOffsetSecs: 0, stableTokenFetches: 0, failNext: 0, functions: {} },
  orders: [], dev_pay_orders: [], dev_xpay_orders: [], complaints: [], dev_refunds: [], dev_deliveries: [], entitlements: [],
  subscriptions: [], posts: [], dev_checks: [], dev_messages: [], users: [], products: [], events: [],
};

const day = (date, o) => ({
  date, visitors: 0, pageViews: 0, productViews: 0, carts: 0, checkouts: 0, paid: 0,
  revenue: { wxpay: 0, xpay: 0 }, refunds: { wxpay: 0, xpay: 0 }, newBuyers: 0, returningBuyers: 0,
  paywallViews: 0, paywallUnlocks: 0, dropped: {}, ...o,
});

const DASHBOARD = {
  from: '2026-12-02', to: '2026-12-04',
  days: [
    day('2026-12-04', { visitors: 2, pageViews: 6, productViews: 4, carts: 1, checkouts: 1, paid: 1, revenue: { wxpay: 0, xpay: 600 }, refunds: { wxpay: 9900, xpay: 0 }, returningBuyers: 1 }),
    day('2026-12-02', { visitors: 3, pageViews: 12, productViews: 6, carts: 3, checkouts: 2, paid: 1, revenue: { wxpay: 9900, xpay: 0 }, newBuyers: 1, paywallViews: 4, paywallUnlocks: 1, dropped: { unknown_event: 2 } }),
    day('2026-12-03'),
  ],
  funnel: [{ sku: 'tea-01', channel: 'wxpay', views: 6, carts: 3, checkouts: 2, paid: 1 }],
  retention: [{ cohort: '2026-12-02', size: 1, d1: 0, d7: null, d30: null }],
  topProducts: [{ sku: 'tea-01', paid: 1, revenue: 9900 }],
  topContent: [{ contentId: 'c1', views: 4, unlocks: 1 }],
  wechat: [],
};

/** analytics: a reply object, or a number for an HTTP status without a body. */
function serve(routes) {
  const server = http.createServer((req, res) => {
    const url = req.url.split('?')[0];
    const send = (status, body, type) => {
      res.writeHead(status, { 'content-type': type || 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    if (url === '/') return send(200, PAGE, 'text/html; charset=utf-8');
    if (url === '/dev/state') return send(200, STATE);
    if (url === '/dev/finance') return send(200, { revenue: [], discrepancies: [] });
    if (url === '/dev/analytics') return typeof routes.analytics === 'number' ? send(routes.analytics, '{}') : send(200, routes.analytics);
    return send(404, { ok: false });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function open(browser, routes) {
  const server = await serve(routes);
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.locator('#analytics').waitFor({ timeout: 10000 });
  return { page, errors, close: async () => { await page.close(); server.close(); } };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    // A dashboard with data (the reply as the function's envelope, as /dev routes may send it).
    const full = await open(browser, { analytics: { ok: true, data: DASHBOARD } });
    const p = full.page;
    const totals = await p.locator('#analytics .analytics-totals').innerText();
    assert.match(totals, /wxpay ¥99\.00/);
    assert.match(totals, /xpay ¥6\.00/);
    assert.match(totals, /refunds ¥99\.00/);
    assert.match(totals, /paid 2/);
    assert.match(totals, /buyers new 1 \/ returning 1/);
    assert.match(totals, /paywall 4 views → 1 unlocks/);
    assert.match(totals, /dropped events: unknown_event 2/);
    const stages = await p.locator('#analytics-funnel .stage').evaluateAll((gs) => gs.map((g) => [...g.querySelectorAll(':scope > text')].map((t) => t.textContent)));
    assert.deepEqual(stages, [
      ['product views', '10'],
      ['add to cart', '4 · 40% of previous'],
      ['checkouts', '3 · 75% of previous'],
      ['paid', '2 · 66.7% of previous'],
    ]);
    // bar widths follow the counts (the first stage is the full 360 px)
    const widths = await p.locator('#analytics-funnel .stage rect').evaluateAll((rs) => rs.map((r) => Number(r.getAttribute('width'))));
    assert.deepEqual(widths, [360, 144, 108, 72]);
    // one bar group per day, in date order, each with its amounts in the tooltip
    const daysShown = await p.locator('#analytics-revenue .day').evaluateAll((gs) => gs.map((g) => g.dataset.date));
    assert.deepEqual(daysShown, ['2026-12-02', '2026-12-03', '2026-12-04']);
    assert.deepEqual(await p.locator('#analytics-revenue .label').allTextContents(), ['12-02', '12-03', '12-04']);
    const tips = await p.locator('#analytics-revenue .day title').allTextContents();
    assert.equal(tips[0], '2026-12-02: wxpay ¥99.00, xpay ¥0.00, refunds ¥0.00, paid 1');
    assert.equal(tips[2], '2026-12-04: wxpay ¥0.00, xpay ¥6.00, refunds ¥99.00, paid 1');
    // the best day's bar is the full height; a day without revenue has no bar
    const heights = await p.locator('#analytics-revenue .day').evaluateAll((gs) => gs.map((g) => [...g.querySelectorAll('rect[fill^="#"]')].map((r) => Number(r.getAttribute('height')))));
    assert.deepEqual(heights, [[140], [], [8]]);
    const cohort = await p.locator('#analytics-retention tbody tr').allInnerTexts();
    assert.equal(cohort.length, 1);
    assert.deepEqual(cohort[0].split('\t').map((c) => c.trim()), ['2026-12-02', '1', '0 (0%)', '—', '—']);
    assert.match(await p.locator('#analytics-products tbody tr').innerText(), /tea-01\s+wxpay\s+6\s+3\s+2\s+1\s+16\.7%/);
    assert.match(await p.locator('#analytics-content tbody tr').innerText(), /c1\s+4\s+1\s+25%/);
    assert.deepEqual(full.errors, []);
    await full.close();
    console.log('analytics: funnel, revenue per day, retention and tables shown');

    // A fresh suite: the days are there but nothing happened yet.
    const quiet = await open(browser, { analytics: { ...DASHBOARD, days: [day('2026-12-04')], funnel: [], retention: [], topContent: [] } });
    assert.equal(await quiet.page.locator('#analytics .analytics-empty').innerText(), 'no visits or sales in this period yet');
    assert.equal(await quiet.page.locator('#analytics-funnel').count(), 0);
    assert.match(await quiet.page.locator('#analytics-retention').innerText(), /none yet/);
    assert.deepEqual(quiet.errors, []);
    await quiet.close();
    console.log('analytics: empty period shown as such');

    // A suite without the analytics function: the rest of the console still renders.
    const missing = await open(browser, { analytics: 404 });
    assert.match(await missing.page.locator('#analytics').innerText(), /\/dev\/analytics is not available/);
    await missing.page.locator('#catalog').waitFor({ timeout: 5000 });
    assert.deepEqual(missing.errors, []);
    await missing.close();
    console.log('analytics: unavailable shown, console still rendered');
    console.log('PASS console analytics: funnel, revenue per day, retention, empty and unavailable states');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`FAIL ${e.stack || e}`);
  process.exit(1);
});
