/**
 * The instrumented pages send the analytics events of the contract (utils/track.js), through
 * the api to `analytics` `track`, and an analytics failure never shows on a page.
 */
const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { fakeApi } = require('../helpers/fake-api');
const { getTracker } = require('../../utils/track');
const cart = require('../../utils/cart');
const config = require('../../config');

const TEE = { sku: 'tee', title: 'T恤', priceFen: 1999, channel: 'wxpay', kind: 'physical', stock: 5, active: true };
const WXPAY = { channel: 'wxpay', params: { timeStamp: '1800000000', nonceStr: 'n', package: 'prepay_id=wx1', signType: 'RSA', paySign: 'sig' } };
const ADDRESS = { userName: '张三', telNumber: '13800000000', provinceName: '广东省', cityName: '深圳市', countyName: '南山区', detailInfo: '科技园 1 号', postalCode: '518000' };
const LOCKED = {
  content: { id: 'c1', kind: 'article', title: '如何在微信里赚钱', summary: '导读', body: '前三段免费……' },
  access: 'locked',
  paywall: { offers: [{ sku: 'unlock-c1', title: '单篇解锁', priceFen: 990, channel: 'xpay', kind: 'content_unlock' }] },
};
const GRANTED = { content: { id: 'c1', kind: 'article', title: '如何在微信里赚钱', body: '全文' }, access: 'granted', via: 'purchase' };

/** The events the pages recorded so far: sent ones (in order) then waiting ones, as [name, props]. */
function events(api) {
  const sent = api.of('analytics', 'track').flatMap((c) => c.data.events);
  return sent.concat(getTracker().pending()).map((e) => [e.name, e.props]);
}

const ACCEPT = (d) => ({ accepted: d.events.length, dropped: {} });

/** Opens the checkout page for `quantity` tees, picks the address and taps 支付. */
async function payForTee(quantity) {
  wx.chooseAddress = (o) => o.success(ADDRESS);
  const page = mount(load('shop/pages/checkout/checkout'));
  await page.instance.onLoad({ sku: 'tee', quantity: String(quantity) });
  page.instance.onChooseAddress();
  await page.instance.onPay();
  return page;
}

beforeAll(() => {
  config.poll.intervalMs = 1;
});

beforeEach(() => {
  setClient(CLIENTS.android);
  cart.clear();
});

describe('shop', () => {
  test('product page: product view, add to cart, share; hiding the page sends them with the page view', async () => {
    const api = fakeApi({ 'createOrder.catalog': { products: [TEE] }, 'analytics.track': ACCEPT });
    wx.showToast = jest.fn();
    const page = mount(load('shop/pages/product/product'));
    await page.instance.onLoad({ sku: 'tee' });
    await flush();
    page.instance.onPlus();
    page.querySelector('.add-cart').dispatchEvent('tap');
    await flush();
    const share = page.instance.onShareAppMessage({ from: 'menu' });
    expect(share).toEqual({ title: 'T恤', path: '/shop/pages/product/product?sku=tee' });
    expect(api.of('analytics', 'track')).toHaveLength(0); // batched, not sent per event
    page.triggerPageLifeTime('hide');
    await flush();
    const sends = api.of('analytics', 'track');
    expect(sends).toHaveLength(1);
    expect(sends[0].data.events.map((e) => [e.name, e.props])).toEqual([
      ['product_view', { sku: 'tee' }],
      ['add_to_cart', { sku: 'tee', qty: 2 }],
      ['share', { page: 'shop/pages/product/product' }],
      ['page_view', { page: 'shop/pages/product/product', durationMs: expect.any(Number) }],
    ]);
    expect(sends[0].data.events.every((e) => typeof e.at === 'number')).toBe(true);
  });

  test('checkout: checkout start with the skus and channel, then the payment result', async () => {
    const api = fakeApi({
      'createOrder.catalog': { products: [TEE] },
      'createOrder.create': { order: { id: 'o1', status: 'created', channel: 'wxpay', totalFen: 3998 }, payment: WXPAY },
      'createOrder.get': { order: { id: 'o1', status: 'paid', channel: 'wxpay', totalFen: 3998 } },
    });
    wx.requestPayment = jest.fn((o) => o.success({ errMsg: 'requestPayment:ok' }));
    const page = await payForTee(2);
    await flush();
    expect(text(page.querySelector('.status-text'))).toBe('支付成功');
    expect(events(api)).toEqual([
      ['checkout_start', { skus: ['tee'], channel: 'wxpay' }],
      ['payment_result', { orderId: 'o1', ok: true, channel: 'wxpay' }],
    ]);
    // the address chosen at checkout never reaches analytics
    expect(JSON.stringify(getTracker().pending())).not.toMatch(/13800000000|张三|科技园/);
  });

  test('a cancelled payment is a payment result that is not ok', async () => {
    const api = fakeApi({
      'createOrder.catalog': { products: [TEE] },
      'createOrder.create': { order: { id: 'o2', status: 'created', channel: 'wxpay', totalFen: 1999 }, payment: WXPAY },
      'createOrder.get': { order: { id: 'o2', status: 'created', channel: 'wxpay', totalFen: 1999 } },
    });
    wx.requestPayment = jest.fn((o) => o.fail({ errMsg: 'requestPayment:fail cancel' }));
    await payForTee(1);
    expect(events(api)).toEqual([
      ['checkout_start', { skus: ['tee'], channel: 'wxpay' }],
      ['payment_result', { orderId: 'o2', ok: false, channel: 'wxpay' }],
    ]);
  });

  test('a failed payment sheet is a payment result that is not ok; an order refused before it is none', async () => {
    const { ApiError } = require('../../utils/api'); // eslint-disable-line global-require
    let create = { order: { id: 'o3', status: 'created', channel: 'wxpay', totalFen: 1999 }, payment: WXPAY };
    const api = fakeApi({ 'createOrder.catalog': { products: [TEE] }, 'createOrder.create': () => create });
    wx.requestPayment = jest.fn((o) => o.fail({ errMsg: 'requestPayment:fail system error' }));
    await payForTee(1);
    expect(events(api)).toEqual([
      ['checkout_start', { skus: ['tee'], channel: 'wxpay' }],
      ['payment_result', { orderId: 'o3', ok: false, channel: 'wxpay' }],
    ]);
    create = new ApiError('OUT_OF_STOCK', 'sold out');
    await payForTee(1);
    expect(events(api).slice(2)).toEqual([['checkout_start', { skus: ['tee'], channel: 'wxpay' }]]);
  });

  test('list page: a page view with the time on page when it unloads', async () => {
    const api = fakeApi({ 'createOrder.catalog': { products: [TEE] }, 'analytics.track': ACCEPT });
    const page = mount(load('shop/pages/list/list'));
    await page.instance.onLoad({});
    page.detach();
    await flush();
    expect(events(api)).toEqual([['page_view', { page: 'shop/pages/list/list', durationMs: expect.any(Number) }]]);
  });
});

describe('content', () => {
  test('reader: one paywall view, then checkout, payment result and unlock when bought; share', async () => {
    let paid = false;
    const api = fakeApi({
      'gatedContent.get': () => (paid ? GRANTED : LOCKED),
      'createOrder.create': {
        order: { id: 'o9', status: 'created', channel: 'xpay', totalFen: 990 },
        payment: { channel: 'xpay', params: { mode: 'short_series_goods', signData: '{"productId":"unlock-c1"}', paySig: 'p', signature: 's' } },
      },
      'createOrder.get': () => {
        paid = true;
        return { order: { id: 'o9', status: 'fulfilled', channel: 'xpay', totalFen: 990 } };
      },
    });
    wx.requestVirtualPayment = jest.fn((o) => o.success({}));
    const page = mount(load('content/pages/reader/reader'));
    await page.instance.onLoad({ id: 'c1' });
    await page.instance.load(); // a reload (e.g. expired media) is not a second paywall view
    await flush();
    expect(events(api)).toEqual([['paywall_view', { contentId: 'c1' }]]);
    page.querySelectorAll('.paywall-box >>> .offer-buy')[0].dispatchEvent('tap');
    for (let i = 0; i < 5; i += 1) await flush();
    expect(page.data.access).toBe('granted');
    expect(page.instance.onShareAppMessage({ from: 'menu' })).toEqual({ title: '如何在微信里赚钱', path: '/content/pages/reader/reader?id=c1' });
    expect(events(api)).toEqual([
      ['paywall_view', { contentId: 'c1' }],
      ['checkout_start', { skus: ['unlock-c1'], channel: 'xpay' }],
      ['payment_result', { orderId: 'o9', ok: true, channel: 'xpay' }],
      ['paywall_unlock', { contentId: 'c1' }],
      ['share', { page: 'content/pages/reader/reader' }],
    ]);
  });

  test('granted content is no paywall view', async () => {
    const api = fakeApi({ 'gatedContent.get': GRANTED });
    const page = mount(load('content/pages/reader/reader'));
    await page.instance.onLoad({ id: 'c1' });
    await flush();
    expect(events(api)).toEqual([]);
  });
});

describe('membership', () => {
  test('buying a plan: checkout start and payment result with the plan\'s channel', async () => {
    const PLAN = { sku: 'vip-pro-month', title: '专业会员（月）', priceFen: 3000, channel: 'xpay', kind: 'membership', active: true, plan: { id: 'pro', title: '专业会员', tier: 2, periodDays: 30 } };
    const api = fakeApi({
      'createOrder.catalog': { products: [PLAN] },
      'gatedContent.entitlements': { entitlements: [] },
      'createOrder.create': { order: { id: 'o5', status: 'created', channel: 'xpay', totalFen: 3000 }, payment: { channel: 'xpay', params: { mode: 'short_series_goods', signData: '{}', paySig: 'a', signature: 'b' } } },
      'createOrder.get': { order: { id: 'o5', status: 'fulfilled' } },
    });
    wx.requestVirtualPayment = jest.fn((o) => o.success({}));
    const page = mount(load('membership/pages/membership/membership'));
    await page.instance.onLoad({});
    await page.instance.onBuy({ currentTarget: { dataset: { sku: 'vip-pro-month' } } });
    expect(events(api)).toEqual([
      ['checkout_start', { skus: ['vip-pro-month'], channel: 'xpay' }],
      ['payment_result', { orderId: 'o5', ok: true, channel: 'xpay' }],
    ]);
  });
});

describe('posting', () => {
  test('publishing a post records its id, not its text', async () => {
    const api = fakeApi({ 'ugcUpload.create': (d) => ({ post: { id: 'p9', author: 'o-user', text: d.text, media: [], status: 'pending', createdAt: 1 } }) });
    wx.requestSubscribeMessage = undefined;
    const page = mount(load('posting/pages/compose/compose'));
    page.instance.onText({ detail: { value: '我的手机号 13800000000' } });
    await page.instance.onSubmit();
    await flush();
    expect(events(api)).toEqual([['post_publish', { postId: 'p9' }]]);
    expect(JSON.stringify(getTracker().pending())).not.toContain('13800000000');
  });
});

describe('failures stay out of sight', () => {
  test('analytics down: the page shows nothing and keeps working', async () => {
    const { ApiError } = require('../../utils/api'); // eslint-disable-line global-require
    const api = fakeApi({ 'createOrder.catalog': { products: [TEE] }, 'analytics.track': new ApiError('INTERNAL', 'down') });
    wx.showToast = jest.fn();
    wx.showModal = jest.fn();
    const page = mount(load('shop/pages/product/product'));
    await page.instance.onLoad({ sku: 'tee' });
    page.triggerPageLifeTime('hide');
    await flush();
    expect(api.of('analytics', 'track')).toHaveLength(1);
    expect(page.data.errorText).toBe('');
    expect(text(page)).toContain('T恤');
    expect(wx.showToast).not.toHaveBeenCalled();
    expect(wx.showModal).not.toHaveBeenCalled();
    page.triggerPageLifeTime('show');
    page.querySelector('.add-cart').dispatchEvent('tap');
    await flush();
    expect(cart.lines().map((l) => [l.sku, l.quantity])).toEqual([['tee', 1]]);
  });
});
