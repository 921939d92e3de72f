const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { fakeApi } = require('../helpers/fake-api');
const { UPDATE_WECHAT_HINT } = require('../../utils/labels');

const LOCKED = {
  content: { id: 'c1', kind: 'article', title: '如何在微信里赚钱', summary: '导读', body: '前三段免费……' },
  access: 'locked',
  paywall: {
    offers: [
      { sku: 'unlock-c1', title: '单篇解锁', priceFen: 990, channel: 'xpay', kind: 'content_unlock' },
      { sku: 'vip-month', title: '月度会员', priceFen: 3000, channel: 'xpay', kind: 'membership' },
    ],
  },
};
const GRANTED = {
  content: { id: 'c1', kind: 'video', title: '如何在微信里赚钱', summary: '导读', body: '全文', media: { url: 'https://media.local/tmp/c1.mp4?sig=x', expiresAt: 4102444800 } },
  access: 'granted',
  via: 'purchase',
};

describe('content list', () => {
  let id;
  beforeAll(() => {
    id = load('content/pages/list/list');
  });

  test('shows each content with its access state', async () => {
    const api = fakeApi({
      'gatedContent.list': {
        contents: [
          { id: 'c1', title: '付费文章', kind: 'article', access: 'locked' },
          { id: 'c2', title: '免费课程', kind: 'course', access: 'granted' },
        ],
      },
    });
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(page.querySelectorAll('.item').map((n) => text(n))).toEqual(['付费文章 未解锁 文章', '免费课程 已解锁 课程']);
    expect(page.querySelector('.tag-locked')).toBeTruthy();
    expect(api.of('gatedContent', 'list')[0].data).toEqual({ action: 'list', limit: 50 });
  });
});

describe('reader', () => {
  let id;
  beforeAll(() => {
    id = load('content/pages/reader/reader');
  });

  test('locked: preview plus the paywall with its offers and prices', async () => {
    setClient(CLIENTS.android);
    fakeApi({ 'gatedContent.get': LOCKED });
    const page = mount(id);
    await page.instance.onLoad({ id: 'c1' });
    await flush();
    expect(text(page.querySelector('.preview'))).toBe('前三段免费……');
    const offers = page.querySelectorAll('.paywall-box >>> .offer').map((n) => text(n));
    expect(offers).toEqual(['单篇解锁 ¥9.90 单独购买', '月度会员 ¥30.00 开通会员']);
    expect(page.querySelector('.player')).toBeUndefined();
  });

  test('locked on old iOS WeChat: the offers show the update hint, no buy buttons', async () => {
    setClient(CLIENTS.oldIos);
    fakeApi({ 'gatedContent.get': LOCKED });
    const page = mount(id);
    await page.instance.onLoad({ id: 'c1' });
    await flush();
    const offers = page.querySelectorAll('.paywall-box >>> .offer').map((n) => text(n));
    expect(offers).toEqual([`单篇解锁 ${UPDATE_WECHAT_HINT}`, `月度会员 ${UPDATE_WECHAT_HINT}`]);
    expect(page.querySelectorAll('.paywall-box >>> .offer-buy')).toHaveLength(0);
  });

  test('buying an offer: virtual payment, poll until paid, then the full content with its media URL', async () => {
    setClient(CLIENTS.android);
    let paid = false;
    const api = fakeApi({
      'gatedContent.get': () => (paid ? GRANTED : LOCKED),
      'createOrder.create': {
        order: { id: 'o9', status: 'created', channel: 'xpay', totalFen: 990 },
        payment: { channel: 'xpay', params: { mode: 'short_series_goods', signData: '{"productId":"unlock-c1"}', paySig: 'p', signature: 's' } },
      },
      'createOrder.get': () => {
        paid = true; // the server saw the delivery push
        return { order: { id: 'o9', status: 'fulfilled', channel: 'xpay', totalFen: 990 } };
      },
    });
    wx.requestVirtualPayment = jest.fn((o) => o.success({}));
    const page = mount(id);
    await page.instance.onLoad({ id: 'c1' });
    await flush();
    page.querySelectorAll('.paywall-box >>> .offer-buy')[0].dispatchEvent('tap');
    for (let i = 0; i < 5; i += 1) await flush();
    expect(api.of('createOrder', 'create')[0].data).toMatchObject({ items: [{ sku: 'unlock-c1', quantity: 1 }], clientRequestId: expect.any(String) });
    expect(wx.requestVirtualPayment).toHaveBeenCalledWith(expect.objectContaining({ signData: '{"productId":"unlock-c1"}' }));
    expect(api.of('createOrder', 'get')).toHaveLength(1);
    expect(page.data.access).toBe('granted');
    expect(page.querySelector('.player')).toBeTruthy();
    expect(page.data.content.media.url).toBe('https://media.local/tmp/c1.mp4?sig=x');
    expect(page.querySelector('.paywall-box')).toBeUndefined();
  });

  test('content in a series: the follow toggle follows and unfollows it', async () => {
    setClient(CLIENTS.android);
    const api = fakeApi({
      'gatedContent.get': { ...GRANTED, series: { id: 'weekly', following: false } },
      'gatedContent.followSeries': (data) => ({ series: data.series, following: data.follow, changed: true }),
    });
    const page = mount(id);
    await page.instance.onLoad({ id: 'c1' });
    await flush();
    expect(text(page.querySelector('.series-follow'))).toBe('关注专栏，更新时提醒我');
    page.querySelector('.series-follow').dispatchEvent('tap');
    await flush();
    expect(text(page.querySelector('.series-follow'))).toBe('已关注专栏');
    page.querySelector('.series-follow').dispatchEvent('tap');
    await flush();
    expect(api.of('gatedContent', 'followSeries').map((c) => c.data)).toEqual([
      { action: 'followSeries', series: 'weekly', follow: true },
      { action: 'followSeries', series: 'weekly', follow: false },
    ]);
    expect(text(page.querySelector('.series-follow'))).toBe('关注专栏，更新时提醒我');
  });

  test('content outside a series has no follow toggle', async () => {
    setClient(CLIENTS.android);
    fakeApi({ 'gatedContent.get': GRANTED });
    const page = mount(id);
    await page.instance.onLoad({ id: 'c1' });
    await flush();
    expect(page.querySelector('.series-follow')).toBeUndefined();
  });

  test('an expired media URL is fetched again on show', async () => {
    setClient(CLIENTS.android);
    const expired = { ...GRANTED, content: { ...GRANTED.content, media: { url: 'https://media.local/old', expiresAt: 1000 } } };
    const replies = [expired, GRANTED];
    const api = fakeApi({ 'gatedContent.get': () => replies.shift() });
    const page = mount(id);
    await page.instance.onLoad({ id: 'c1' });
    await page.instance.onShow();
    expect(api.of('gatedContent', 'get')).toHaveLength(2);
    expect(page.data.content.media.url).toBe('https://media.local/tmp/c1.mp4?sig=x');
  });
});
