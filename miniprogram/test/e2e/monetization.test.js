/**
 * End to end against a running wemint-dev: utils/api.js with a real-HTTP wx shim.
 * login → checkout a physical product (WeChat Pay) → pay through the emulator → paid;
 * then a locked content → its paywall offer (virtual payment) → paid → content unlocked;
 * then a membership → changePlan quotes the upgrade → the prorated difference paid → upgraded;
 * then subscribe consent reported to gatedContent subscribeGrant.
 *
 *   WEMINT_DEV_URL=http://127.0.0.1:8787 npm run test:e2e
 *
 * Without WEMINT_DEV_URL the suite is skipped (and says so).
 */
const { createApi } = require('../../utils/api');
const { checkout } = require('../../utils/checkout');
const { newRequestId } = require('../../utils/ids');
const { askConsent } = require('../../utils/subscribe');
const { createWxShim } = require('./wx-shim');

const DEV_URL = process.env.WEMINT_DEV_URL;
const OPENID = process.env.WEMINT_DEV_OPENID || `e2e-${Date.now().toString(36)}`;
const POLL = { intervalMs: 500, timeoutMs: 30000 };

if (!DEV_URL) {
  // eslint-disable-next-line no-console
  console.log('SKIPPED: e2e client test needs a running wemint-dev; set WEMINT_DEV_URL (e.g. http://127.0.0.1:8787).');
}

const suite = DEV_URL ? describe : describe.skip;

suite('Mini Program client against wemint-dev', () => {
  const steps = [];
  const log = (m) => steps.push(m);
  const shim = createWxShim({ devBaseUrl: DEV_URL || 'http://unset', openid: OPENID, log });
  const api = createApi({
    wx: shim,
    config: { mode: 'dev', devBaseUrl: DEV_URL, timeoutMs: 15000 },
    store: (() => {
      let s = null;
      return { get: () => s, set: (v) => { s = v; } };
    })(),
  });

  afterAll(() => {
    // eslint-disable-next-line no-console
    console.log(`e2e steps:\n  ${steps.join('\n  ')}`);
  });

  test('login gives a session for the dev user', async () => {
    const session = await api.login();
    expect(typeof session.token).toBe('string');
    expect(session.user).toBeTruthy();
    expect(typeof session.user.openid).toBe('string');
    const me = await api.call('login', { action: 'me' });
    expect(me.user.openid).toBe(session.user.openid);
  });

  test('physical goods: createOrder → requestPayment (emulator pays) → polled to paid', async () => {
    const { products } = await api.call('createOrder', { action: 'catalog' });
    const product = products.find((p) => p.kind === 'physical' && p.active !== false && (typeof p.stock !== 'number' || p.stock > 0));
    expect(product).toBeTruthy();
    const clientRequestId = newRequestId('e2e');
    const result = await checkout({
      api,
      wx: shim,
      items: [{ sku: product.sku, quantity: 1 }],
      address: { name: '测试', phone: '13800000000', province: '广东省', city: '深圳市', district: '南山区', detail: '1 号' },
      clientRequestId,
      poll: POLL,
    });
    expect(result.outcome).toBe('paid');
    expect(result.order.totalFen).toBe(product.priceFen);
    expect(result.order.channel).toBe('wxpay');
    log(`paid order ${result.order.outTradeNo} for ${product.sku}`);

    // The same clientRequestId returns the same order, not a second one.
    const again = await api.call('createOrder', { action: 'create', clientRequestId, items: [{ sku: product.sku, quantity: 1 }] });
    expect(again.order.id).toBe(result.order.id);

    const { orders } = await api.call('createOrder', { action: 'list', limit: 10 });
    expect(orders.map((o) => o.id)).toContain(result.order.id);
  });

  test('paywalled content: locked → buy an offer (virtual payment) → paid → unlocked', async () => {
    const { contents } = await api.call('gatedContent', { action: 'list', limit: 50 });
    const locked = contents.find((c) => c.access === 'locked');
    expect(locked).toBeTruthy();
    const before = await api.call('gatedContent', { action: 'get', contentId: locked.id });
    expect(before.access).toBe('locked');
    const offers = before.paywall.offers;
    expect(offers.length).toBeGreaterThan(0);
    const offer = offers.find((o) => o.kind === 'content_unlock') || offers[0];

    const result = await checkout({ api, wx: shim, items: [{ sku: offer.sku, quantity: 1 }], clientRequestId: newRequestId('e2e'), poll: POLL });
    expect(result.outcome).toBe('paid');
    log(`paid ${offer.sku} (${offer.kind}) via ${result.order.channel}`);

    const after = await api.call('gatedContent', { action: 'get', contentId: locked.id });
    expect(after.access).toBe('granted');
    if (after.content.media) {
      expect(after.content.media.expiresAt).toBeGreaterThan(Math.floor(Date.now() / 1000));
    }
    const list = await api.call('gatedContent', { action: 'list', limit: 50 });
    expect(list.contents.find((c) => c.id === locked.id).access).toBe('granted');
  });

  test('membership upgrade: subscribe → changePlan quote → pay the difference → on the higher plan', async () => {
    const { products } = await api.call('createOrder', { action: 'catalog', kind: 'membership' });
    const tiers = products.filter((p) => p.plan && typeof p.plan.tier === 'number').sort((a, b) => a.plan.tier - b.plan.tier);
    expect(tiers.length).toBeGreaterThan(1);
    const [lower, higher] = [tiers[0], tiers[tiers.length - 1]];

    const bought = await checkout({ api, wx: shim, items: [{ sku: lower.sku, quantity: 1 }], clientRequestId: newRequestId('e2e'), poll: POLL });
    expect(bought.outcome).toBe('paid');
    const before = await api.call('gatedContent', { action: 'entitlements' });
    expect(before.subscription.plan).toBe(lower.plan.id);

    const change = await api.call('gatedContent', { action: 'changePlan', plan: higher.plan.id });
    expect(change.change).toBe('upgrade');
    expect(change.applied).toBe(false);
    // Almost the whole period is left: close to the price difference, never more than the plan.
    expect(change.quote.amountFen).toBeGreaterThan(0);
    expect(change.quote.amountFen).toBeLessThanOrEqual(higher.priceFen);
    expect(change.quote.periodEndAt).toBe(before.subscription.periodEndAt);

    const paid = await checkout({ api, wx: shim, upgrade: change.checkout.upgrade, clientRequestId: newRequestId('e2e'), poll: POLL });
    expect(paid.outcome).toBe('paid');
    expect(Math.abs(paid.order.totalFen - change.quote.amountFen)).toBeLessThanOrEqual(1);
    expect(paid.order.upgrade.plan).toBe(higher.plan.id);
    log(`upgraded ${lower.plan.id} → ${higher.plan.id} for ${paid.order.totalFen} fen via ${paid.order.channel}`);

    const after = await api.call('gatedContent', { action: 'entitlements' });
    expect(after.subscription.plan).toBe(higher.plan.id);
    expect(after.subscription.periodEndAt).toBe(before.subscription.periodEndAt);
  });

  test('subscribe consent: the popup\'s accepts reach subscribeGrant; an unknown key is refused', async () => {
    const popupWx = { requestSubscribeMessage: (o) => o.success({ 'TPL-E2E-SHIP': 'accept', 'TPL-E2E-RENEW': 'reject' }) };
    const consent = await askConsent(['shipping', 'renewal'], { wx: popupWx, api, templates: { shipping: 'TPL-E2E-SHIP', renewal: 'TPL-E2E-RENEW' } });
    expect(consent.accepted).toEqual(['shipping']);
    const reply = await consent.reported;
    expect(reply).toBeTruthy();
    // Counted when the suite configures a shipping template, else reported as not configured.
    const seen = reply.grants.map((g) => g.key).concat(reply.skipped.map((k) => k.key));
    expect(seen).toEqual(['shipping']);
    log(`subscribeGrant: ${JSON.stringify(reply)}`);
    await expect(api.call('gatedContent', { action: 'subscribeGrant', results: { coupon: 'accept' } })).rejects.toMatchObject({ code: 'SUBSCRIBE_TEMPLATE_UNKNOWN' });
  });
});
