// Browser test of the wemint-dev console in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser download):
//   an order placed through the gateway is listed, "Pay" turns it paid (WeChat Pay stand-in →
//   signed notification → payNotify), and the entitlement it grants appears; "Reconcile bills"
//   reconciles the order's day against the stand-in's bill and shows its revenue.
//
// Against a running suite: WEMINT_DEV_URL=http://127.0.0.1:8787 npm test
// Otherwise the test starts its own suite (fresh temp dir, free port) from the wemint-dev
// binary: WEMINT_DEV_BIN, else $CARGO_TARGET_DIR/debug/wemint-dev, else ../../target/debug.
'use strict';

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SKU = 'pricing-playbook-ebook'; // a content unlock sold through WeChat Pay (demo seed)

function binary() {
  if (process.env.WEMINT_DEV_BIN) return process.env.WEMINT_DEV_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(__dirname, '..', '..', 'target');
  return path.join(target, 'debug', 'wemint-dev');
}

async function startSuite() {
  if (process.env.WEMINT_DEV_URL) return { base: process.env.WEMINT_DEV_URL.replace(/\/+$/, ''), stop() {} };
  const bin = binary();
  assert.ok(fs.existsSync(bin), `wemint-dev binary not found at ${bin}: build it (cargo build -p wemint-emulator) or set WEMINT_DEV_BIN`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wemint-console-'));
  const child = spawn(bin, ['up', '--dir', path.join(dir, '.wemint'), '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`wemint-dev did not start:\n${out}`)), 30000);
    const onData = (chunk) => {
      out += chunk;
      const m = out.match(/console\s+(http:\/\/127\.0\.0\.1:\d+)\//);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (c) => { out += c; });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`wemint-dev exited with ${code}:\n${out}`)); });
  });
  return {
    base,
    stop() { child.kill('SIGTERM'); fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

async function post(base, p, body, headers = {}) {
  const res = await fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  try { return JSON.parse(text); } catch { return { status: res.status, text }; }
}

async function call(base, token, name, data) {
  const reply = await post(base, '/tcb/callFunction', { name, data }, token ? { authorization: `Bearer ${token}` } : {});
  if (!reply.ok) throw new Error(`${name}.${data.action}: ${JSON.stringify(reply.error || reply)}`);
  return reply.data;
}

async function main() {
  const suite = await startSuite();
  let browser;
  try {
    const { base } = suite;
    // A user buys the e-book: dev wx.login code → login → createOrder.
    const user = `console-${Date.now()}`;
    const { code } = await post(base, '/dev/login', { user });
    const { token } = await call(base, null, 'login', { action: 'login', code });
    const created = await call(base, token, 'createOrder', {
      action: 'create', clientRequestId: `console-${Date.now()}`, items: [{ sku: SKU, quantity: 1 }],
    });
    const orderId = created.order.id;
    const outTradeNo = created.order.outTradeNo;
    assert.equal(created.payment.channel, 'wxpay');
    console.log(`order ${orderId} (${outTradeNo}) created`);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    // The console lists the order, created, with a Pay button.
    const row = page.locator('#orders tr', { hasText: orderId });
    await row.waitFor({ timeout: 15000 });
    assert.match(await row.innerText(), /created/);
    await row.getByRole('button', { name: 'Pay' }).click();
    // "Pay" turns it paid once payNotify has handled the notification.
    await page.waitForFunction((id) => {
      const tr = [...document.querySelectorAll('#orders tr')].find((r) => r.textContent.includes(id));
      return tr && /\b(paid|fulfilled)\b/.test(tr.querySelector('td:nth-child(2)').textContent);
    }, orderId, { timeout: 20000 });
    console.log('order shown paid');
    // The entitlement appears.
    await page.locator('#entitlements tr', { hasText: SKU }).waitFor({ timeout: 15000 });
    console.log(`entitlement ${SKU} shown`);
    // The notification history shows the delivery.
    await page.locator('#deliveries tr', { hasText: outTradeNo }).waitFor({ timeout: 5000 });
    // The event stream shows the payment's order.paid (published pending, numbered by the
    // realtime process the console started), and the realtime section is there.
    await page.locator('#events tr', { hasText: 'order.paid' }).waitFor({ timeout: 15000 });
    await page.locator('#realtime').waitFor({ timeout: 5000 });
    console.log('event stream shown');
    await page.locator('#analytics').waitFor({ timeout: 5000 });
    // Finance: two days later the WeChat Pay stand-in's bill of the order's day is ready;
    // "Reconcile bills" runs reconcile billsRun for it and the revenue row appears with the
    // bill's amounts (the e-book at ¥9.90, 0.60% fee rounded to ¥0.06, net ¥9.84).
    const st = await (await fetch(`${base}/dev/state`)).json();
    const day = new Date((st.suite.now + 8 * 3600) * 1000).toISOString().slice(0, 10);
    await post(base, '/dev/clock/advance', { secs: 2 * 86400 });
    await page.fill('#bill-date', day);
    await page.click('#btn-bills');
    const revenue = page.locator('#finance tr', { hasText: 'wxpay' }).filter({ hasText: day });
    await revenue.waitFor({ timeout: 30000 });
    const cells = await revenue.innerText();
    assert.match(cells, /¥9\.90/);
    assert.match(cells, /¥9\.84/);
    console.log(`finance: ${day} reconciled, revenue shown`);
    // Analytics (after finance, whose day its orders would change): the demo shoppers browse,
    // abandon, buy and refund, the day is aggregated, and the console's Analytics section
    // shows paid orders and revenue from that run.
    const demo = await post(base, '/dev/analytics/demo', {});
    assert.ok(demo.dashboard, `analytics demo: ${JSON.stringify(demo).slice(0, 300)}`);
    await page.waitForFunction(() => {
      const t = document.querySelector('#analytics .analytics-totals');
      const m = t && t.textContent.match(/paid (\d+)/);
      return m && Number(m[1]) >= 1 && document.querySelectorAll('#analytics-funnel .stage').length > 0;
    }, null, { timeout: 20000 });
    assert.match(await page.locator('#analytics .analytics-totals').innerText(), /wxpay ¥[1-9]/);
    console.log('analytics: demo traffic shown in the dashboard');
    console.log('PASS console: order listed, paid through the console, entitlement appeared, bills reconciled, analytics shown');
  } finally {
    if (browser) await browser.close();
    suite.stop();
  }
}

main().catch((e) => {
  console.error(`FAIL ${e.stack || e}`);
  process.exit(1);
});
