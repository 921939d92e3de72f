const { load, mount, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');
const { installCanvasQuery, drawnTexts } = require('../helpers/fake-canvas');

const ADMIN = { openid: 'o-admin', role: 'admin' };
const USER = { openid: 'o-user', role: 'user' };

const DASHBOARD = {
  from: '2026-12-03',
  to: '2026-12-04',
  days: [
    {
      date: '2026-12-03', visitors: 4, pageViews: 20, productViews: 10, carts: 4, checkouts: 2, paid: 1,
      revenue: { wxpay: 9900, xpay: 0 }, refunds: { wxpay: 0, xpay: 0 }, newBuyers: 1, returningBuyers: 0,
      paywallViews: 4, paywallUnlocks: 1, dropped: { bad_type: 2 },
    },
    {
      date: '2026-12-04', visitors: 3, pageViews: 9, productViews: 6, carts: 2, checkouts: 2, paid: 1,
      revenue: { wxpay: 0, xpay: 600 }, refunds: { wxpay: 9900, xpay: 0 }, newBuyers: 1, returningBuyers: 0,
      paywallViews: 0, paywallUnlocks: 0, dropped: {},
    },
  ],
  funnel: [
    { sku: 'tea-01', channel: 'wxpay', views: 10, carts: 4, checkouts: 2, paid: 1 },
    { sku: 'vip-month', channel: 'xpay', views: 6, carts: 2, checkouts: 2, paid: 1 },
  ],
  retention: [
    { cohort: '2026-12-03', size: 1, d1: 1, d7: null, d30: null },
    { cohort: '2026-12-04', size: 1, d1: null, d7: null, d30: null },
  ],
  topProducts: [{ sku: 'tea-01', paid: 1, revenue: 9900 }],
  topContent: [{ contentId: 'c1', views: 4, unlocks: 1 }],
  wechat: [],
};

const EMPTY = { from: '2026-11-05', to: '2026-12-04', days: [], funnel: [], retention: [], topProducts: [], topContent: [], wechat: [] };

/** Lets uCharts finish its (timer-driven) first frame. */
const drawn = () => new Promise((r) => setTimeout(r, 60));

describe('analytics dashboard page', () => {
  let id;
  beforeAll(() => {
    id = load('admin/pages/analytics/analytics');
  });

  test('a non-admin gets "no permission" and nothing is requested', async () => {
    const api = fakeApi({}, USER);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
    expect(api.calls.filter((c) => c.name === 'analytics')).toHaveLength(0);
  });

  test('admin: figures as text and the three charts drawn with uCharts', async () => {
    const canvases = installCanvasQuery({ width: 320, height: 210 });
    const api = fakeApi({ 'analytics.dashboard': DASHBOARD }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(api.of('analytics', 'dashboard').map((c) => c.data)).toEqual([{ action: 'dashboard', days: 30 }]);
    expect(text(page.querySelector('.gross'))).toBe('¥105.00');
    expect(text(page.querySelector('.refunds'))).toBe('¥99.00');
    expect(text(page.querySelector('.net'))).toBe('¥6.00');
    expect(text(page.querySelector('.paid'))).toBe('2（浏览→支付 12.5%）');
    expect(page.querySelectorAll('.stage').map((n) => text(n))).toEqual([
      '浏览商品 16',
      '加入购物车 6 （上一步的 37.5%）',
      '去结算 4 （上一步的 66.7%）',
      '支付成功 2 （上一步的 50%）',
    ]);
    expect(page.querySelectorAll('.product-funnel').map((n) => text(n))).toEqual([
      'tea-01 · 微信支付 10 → 4 → 2 → 1（10%）',
      'vip-month · 虚拟支付 6 → 2 → 2 → 1（16.7%）',
    ]);
    expect(page.querySelectorAll('.cohort').map((n) => text(n))).toEqual(['12-03 · 1 1 (100%) / — / —', '12-04 · 1 — / — / —']);
    expect(text(page.querySelector('.paywall-figures'))).toBe('4 / 1（25%）');
    expect(text(page.querySelector('.top-product'))).toBe('tea-01 × 1 ¥99.00');
    expect(text(page.querySelector('.drop'))).toBe('类型错误 2');

    await drawn();
    expect(Object.keys(canvases).sort()).toEqual(['funnel', 'retention', 'revenue']);
    // the canvas backing store is the CSS size times the pixel ratio
    expect(canvases.funnel.width).toBeGreaterThanOrEqual(320);
    expect(drawnTexts(canvases.funnel.ctx)).toEqual(['浏览商品 16', '加入购物车 6 · 37.5%', '去结算 4 · 66.7%', '支付成功 2 · 50%']);
    expect(drawnTexts(canvases.revenue.ctx)).toEqual(expect.arrayContaining(['12-03', '12-04', '微信支付', '虚拟支付']));
    expect(drawnTexts(canvases.retention.ctx)).toEqual(expect.arrayContaining(['12-03', '次日', '7日', '30日']));
  });

  test('switching to 7 days asks the server for 7 days', async () => {
    installCanvasQuery();
    const api = fakeApi({ 'analytics.dashboard': (d) => ({ ...DASHBOARD, from: d.days === 7 ? '2026-11-28' : DASHBOARD.from }) }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await page.instance.onRange({ currentTarget: { dataset: { days: '7' } } });
    await flush();
    expect(api.of('analytics', 'dashboard').map((c) => c.data.days)).toEqual([30, 7]);
    expect(text(page.querySelector('.range.on'))).toBe('近 7 天');
    expect(text(page.querySelector('.period'))).toBe('2026-11-28 至 2026-12-04');
  });

  test('no data yet: an empty state and no chart', async () => {
    const canvases = installCanvasQuery();
    fakeApi({ 'analytics.dashboard': EMPTY }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page.querySelector('.empty'))).toBe('这段时间还没有数据');
    expect(page.querySelector('canvas')).toBeUndefined();
    expect(canvases).toEqual({});
  });

  test('sales but no new buyers: the retention section says so, the others draw', async () => {
    installCanvasQuery();
    fakeApi({ 'analytics.dashboard': { ...DASHBOARD, retention: [] } }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page.querySelector('.retention'))).toBe('留存（首单后第 1/7/30 天再来的人数） 还没有新客');
    expect(page.querySelectorAll('.chart')).toHaveLength(2);
  });

  test('the server refusing (not an admin any more) shows no permission', async () => {
    fakeApi({ 'analytics.dashboard': new ApiError('FORBIDDEN', 'admin only') }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
  });

  test('no canvas available: the figures still show', async () => {
    wx.createSelectorQuery = () => {
      throw new Error('no canvas here');
    };
    fakeApi({ 'analytics.dashboard': DASHBOARD }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page.querySelector('.net'))).toBe('¥6.00');
    expect(page.data.errorText).toBe('');
  });
});
