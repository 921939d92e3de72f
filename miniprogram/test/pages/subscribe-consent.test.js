/**
 * Subscribe consent at the moments that need it: shipping notices at checkout (before paying),
 * the moderation result when publishing, renewal reminders on the membership page. Each is
 * asked synchronously inside the tap handler, reported to the server, and never blocks.
 */
const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { fakeApi } = require('../helpers/fake-api');
const config = require('../../config');

const TEMPLATES = { shipping: 'TPL_SHIP', postNotice: 'TPL_POST', renewal: 'TPL_RENEW' };
const TEE = { sku: 'tee', title: 'T恤', priceFen: 1999, channel: 'wxpay', kind: 'physical', stock: 5, active: true };
const COINS = { sku: 'coins-60', title: '60 币', priceFen: 600, channel: 'xpay', kind: 'coins', active: true };
const WXPAY = { channel: 'wxpay', params: { timeStamp: '1800000000', nonceStr: 'n', package: 'prepay_id=wx1', signType: 'RSA', paySign: 'sig' } };
const ADDRESS = { userName: '张三', telNumber: '13800000000', provinceName: '广东省', cityName: '深圳市', countyName: '南山区', detailInfo: '1 号', postalCode: '518000' };
const PLANS = [
  { sku: 'vip-basic-month', title: '基础会员（月）', priceFen: 1500, channel: 'xpay', kind: 'membership', active: true, plan: { id: 'basic', title: '基础会员', tier: 1, periodDays: 30, trialDays: 7 } },
];

/**
 * A consent popup the test answers by hand: `popup.calls` are the requestSubscribeMessage
 * options, `popup.answer(res)` / `popup.fail(err)` closes the last one.
 */
function manualPopup() {
  const popup = {
    calls: [],
    answer(res) {
      popup.calls[popup.calls.length - 1].success(res);
    },
    fail(err) {
      popup.calls[popup.calls.length - 1].fail(err);
    },
  };
  wx.requestSubscribeMessage = jest.fn((o) => popup.calls.push(o));
  return popup;
}

const grantCalls = (api) => api.of('gatedContent', 'subscribeGrant').map((c) => c.data);

beforeAll(() => {
  config.poll.intervalMs = 1;
  config.subscribe.templates = Object.assign({}, TEMPLATES);
});

afterAll(() => {
  config.subscribe.templates = { shipping: '', postNotice: '', renewal: '' };
  delete wx.requestSubscribeMessage;
});

describe('checkout: shipping notices', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/checkout/checkout');
  });
  beforeEach(() => {
    setClient(CLIENTS.android);
    wx.chooseAddress = (o) => o.success(ADDRESS);
  });

  function physicalCheckout(extra) {
    return fakeApi(Object.assign({
      'createOrder.catalog': { products: [TEE, COINS] },
      'createOrder.create': { order: { id: 'o1', status: 'created', channel: 'wxpay', totalFen: 1999 }, payment: WXPAY },
      'createOrder.get': { order: { id: 'o1', status: 'paid', channel: 'wxpay', totalFen: 1999 } },
      'gatedContent.subscribeGrant': { grants: [{ key: 'shipping', credits: 1 }] },
    }, extra));
  }

  test('asked in the pay tap, before any await; the payment sheet waits for the popup; accept reported', async () => {
    const api = physicalCheckout();
    const popup = manualPopup();
    wx.requestPayment = jest.fn((o) => o.success({}));
    const page = mount(id);
    await page.instance.onLoad({ sku: 'tee', quantity: '1' });
    page.instance.onChooseAddress();
    const paying = page.instance.onPay();
    // Synchronously inside the tap handler: nothing awaited before it.
    expect(wx.requestSubscribeMessage).toHaveBeenCalledTimes(1);
    expect(popup.calls[0].tmplIds).toEqual(['TPL_SHIP']);
    await flush();
    expect(api.of('createOrder', 'create')).toHaveLength(0);
    expect(wx.requestPayment).not.toHaveBeenCalled();
    popup.answer({ errMsg: 'requestSubscribeMessage:ok', TPL_SHIP: 'accept' });
    await paying;
    await flush();
    expect(wx.requestPayment).toHaveBeenCalledTimes(1);
    expect(text(page.querySelector('.status-text'))).toBe('支付成功');
    expect(grantCalls(api)).toEqual([{ action: 'subscribeGrant', results: { shipping: 'accept' } }]);
  });

  test('the popup failing, or the grant report failing, does not block the checkout; asked once per checkout', async () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {});
    let status = 'created';
    const api = physicalCheckout({
      'createOrder.get': () => ({ order: { id: 'o1', status, channel: 'wxpay', totalFen: 1999 } }),
      'gatedContent.subscribeGrant': () => new Error('network down'),
    });
    wx.requestSubscribeMessage = jest.fn((o) => o.fail({ errCode: 20004, errMsg: 'requestSubscribeMessage:fail main switch off' }));
    wx.requestPayment = jest.fn((o) => o.fail({ errMsg: 'requestPayment:fail cancel' }));
    const page = mount(id);
    await page.instance.onLoad({ sku: 'tee', quantity: '1' });
    page.instance.onChooseAddress();
    await page.instance.onPay();
    expect(wx.requestPayment).toHaveBeenCalledTimes(1);
    expect(text(page.querySelector('.status-text'))).toBe('已取消支付，可重新支付');
    // Pay again: not asked a second time in the same checkout.
    await page.instance.onPay();
    expect(wx.requestSubscribeMessage).toHaveBeenCalledTimes(1);
    expect(wx.requestPayment).toHaveBeenCalledTimes(2);
    expect(grantCalls(api)).toEqual([]);

    // Accepted but the server is unreachable: still pays.
    status = 'paid';
    wx.requestSubscribeMessage = jest.fn((o) => o.success({ TPL_SHIP: 'accept' }));
    wx.requestPayment = jest.fn((o) => o.success({}));
    api.call.mockClear();
    const again = mount(id);
    await again.instance.onLoad({ sku: 'tee', quantity: '1' });
    again.instance.onChooseAddress();
    await again.instance.onPay();
    await flush();
    expect(wx.requestPayment).toHaveBeenCalledTimes(1);
    expect(text(again.querySelector('.status-text'))).toBe('支付成功');
    expect(api.call).toHaveBeenCalledWith('gatedContent', { action: 'subscribeGrant', results: { shipping: 'accept' } });
    expect(warn).toHaveBeenCalledWith('subscribeGrant failed', undefined);
    warn.mockRestore();
  });

  test('virtual goods only: no shipping notice is asked', async () => {
    fakeApi({
      'createOrder.catalog': { products: [TEE, COINS] },
      'createOrder.create': { order: { id: 'o2', status: 'created', channel: 'xpay', totalFen: 600 }, payment: { channel: 'xpay', params: { mode: 'short_series_coin', signData: '{}', paySig: 'a', signature: 'b' } } },
      'createOrder.get': { order: { id: 'o2', status: 'fulfilled' } },
    });
    wx.requestSubscribeMessage = jest.fn();
    wx.requestVirtualPayment = jest.fn((o) => o.success({}));
    const page = mount(id);
    await page.instance.onLoad({ sku: 'coins-60', quantity: '1' });
    await page.instance.onPay();
    expect(wx.requestSubscribeMessage).not.toHaveBeenCalled();
    expect(text(page.querySelector('.status-text'))).toBe('支付成功');
  });
});

describe('compose: the moderation result', () => {
  let id;
  beforeAll(() => {
    id = load('posting/pages/compose/compose');
  });

  test('asked in the publish tap; the post is created after the popup closes; the result reported', async () => {
    const api = fakeApi({
      'ugcUpload.create': (data) => ({ post: { id: 'p1', author: 'o-user', text: data.text, media: [], status: 'pending', createdAt: 1 } }),
      'gatedContent.subscribeGrant': { grants: [] },
    });
    const popup = manualPopup();
    const page = mount(id);
    page.instance.onText({ detail: { value: '你好' } });
    const publishing = page.instance.onSubmit();
    expect(popup.calls.map((c) => c.tmplIds)).toEqual([['TPL_POST']]);
    await flush();
    expect(api.of('ugcUpload', 'create')).toHaveLength(0);
    popup.answer({ TPL_POST: 'acceptWithAlert' });
    await publishing;
    await flush();
    expect(api.of('ugcUpload', 'create')).toHaveLength(1);
    expect(grantCalls(api)).toEqual([{ action: 'subscribeGrant', results: { postNotice: 'acceptWithAlert' } }]);
  });

  test('rejected or failed consent still publishes; nothing reported', async () => {
    const api = fakeApi({
      'ugcUpload.create': (data) => ({ post: { id: 'p2', author: 'o-user', text: data.text, media: [], status: 'pending', createdAt: 1 } }),
    });
    for (const answer of [(o) => o.success({ TPL_POST: 'reject' }), (o) => o.fail({ errCode: 10005, errMsg: 'requestSubscribeMessage:fail can only be invoked by user TAP gesture' })]) {
      wx.requestSubscribeMessage = jest.fn(answer);
      const page = mount(id);
      page.instance.onText({ detail: { value: '再来一条' } });
      await page.instance.onSubmit();
      expect(page.data.post).toEqual(expect.objectContaining({ status: 'pending' }));
      expect(page.data.errorText).toBe('');
    }
    expect(api.of('ugcUpload', 'create')).toHaveLength(2);
    expect(grantCalls(api)).toEqual([]);
  });
});

describe('membership: renewal reminders', () => {
  let id;
  beforeAll(() => {
    id = load('membership/pages/membership/membership');
  });
  beforeEach(() => setClient(CLIENTS.android));

  test('a plan button asks for the reminder in the tap, then buys; the grant is reported', async () => {
    let paid = false;
    const api = fakeApi({
      'createOrder.catalog': { products: PLANS },
      'gatedContent.entitlements': () => (paid ? { entitlements: [], subscription: { plan: 'basic', state: 'active', periodEndAt: 1802592000, renewPlan: 'basic' } } : { entitlements: [] }),
      'createOrder.create': { order: { id: 'o5', status: 'created', channel: 'xpay', totalFen: 1500 }, payment: { channel: 'xpay', params: { mode: 'short_series_goods', signData: '{}', paySig: 'a', signature: 'b' } } },
      'createOrder.get': () => {
        paid = true;
        return { order: { id: 'o5', status: 'fulfilled' } };
      },
      'gatedContent.subscribeGrant': { grants: [{ key: 'renewal', credits: 1 }] },
    });
    const popup = manualPopup();
    wx.requestVirtualPayment = jest.fn((o) => o.success({}));
    const page = mount(id);
    await page.instance.onLoad({});
    const buying = page.instance.onPlanTap({ currentTarget: { dataset: { sku: 'vip-basic-month', action: 'subscribe' } } });
    expect(popup.calls.map((c) => c.tmplIds)).toEqual([['TPL_RENEW']]);
    await flush();
    expect(wx.requestVirtualPayment).not.toHaveBeenCalled();
    popup.answer({ TPL_RENEW: 'accept' });
    await buying;
    await flush();
    expect(text(page.querySelector('.status'))).toBe('支付成功，会员已生效');
    expect(grantCalls(api)).toEqual([{ action: 'subscribeGrant', results: { renewal: 'accept' } }]);
  });

  test('trial and resume ask too; a failed popup starts the trial anyway', async () => {
    const api = fakeApi({
      'createOrder.catalog': { products: PLANS },
      'gatedContent.entitlements': { entitlements: [] },
      'gatedContent.startTrial': { subscription: { plan: 'basic', state: 'trial', periodEndAt: 1800604800 } },
    });
    wx.requestSubscribeMessage = jest.fn((o) => o.fail({ errCode: 10002, errMsg: 'requestSubscribeMessage:fail network' }));
    const page = mount(id);
    await page.instance.onLoad({});
    await page.instance.onTrial({ currentTarget: { dataset: { sku: 'vip-basic-month' } } });
    expect(wx.requestSubscribeMessage.mock.calls[0][0].tmplIds).toEqual(['TPL_RENEW']);
    expect(api.of('gatedContent', 'startTrial')).toHaveLength(1);
    expect(page.data.errorText).toBe('');

    page.setData({ sub: { plan: 'basic', state: 'canceled' } });
    fakeApi({ 'createOrder.catalog': { products: PLANS }, 'gatedContent.entitlements': { entitlements: [] }, 'gatedContent.resumeSubscription': { subscription: {} } });
    await page.instance.onResumeSub();
    expect(wx.requestSubscribeMessage).toHaveBeenCalledTimes(2);
  });

  test('a tap while busy asks nothing', async () => {
    fakeApi({ 'createOrder.catalog': { products: PLANS }, 'gatedContent.entitlements': { entitlements: [] } });
    wx.requestSubscribeMessage = jest.fn();
    const page = mount(id);
    await page.instance.onLoad({});
    page.setData({ busySku: 'x' });
    await page.instance.onPlanTap({ currentTarget: { dataset: { sku: 'vip-basic-month', action: 'subscribe' } } });
    expect(wx.requestSubscribeMessage).not.toHaveBeenCalled();
  });
});
