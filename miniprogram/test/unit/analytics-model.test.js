/**
 * admin/utils/analytics.js: the dashboard reply → the figures the admin reads and the uCharts
 * options; the options are drawn by the real library (admin/vendor/u-charts.js) on a fake 2D
 * context, so a chart the library cannot draw fails here.
 */
const { dashboardModel, funnelChart, revenueChart, retentionChart, pct } = require('../../admin/utils/analytics');
const UCharts = require('../../admin/vendor/u-charts');
const { fakeContext, drawnTexts } = require('../helpers/fake-canvas');

/** Two days of the contract's `dashboard` shape; expected figures below are worked by hand. */
const REPLY = {
  from: '2026-12-01',
  to: '2026-12-02',
  days: [
    // given newest first: the model sorts by date
    {
      date: '2026-12-02', visitors: 2, pageViews: 5, productViews: 4, carts: 1, checkouts: 1, paid: 1,
      revenue: { wxpay: 1990, xpay: 0 }, refunds: { wxpay: 990, xpay: 0 }, newBuyers: 0, returningBuyers: 1,
      paywallViews: 0, paywallUnlocks: 0, dropped: {},
    },
    {
      date: '2026-12-01', visitors: 3, pageViews: 10, productViews: 8, carts: 4, checkouts: 3, paid: 2,
      revenue: { wxpay: 9900, xpay: 600 }, refunds: { wxpay: 0, xpay: 0 }, newBuyers: 2, returningBuyers: 0,
      paywallViews: 2, paywallUnlocks: 1, dropped: { unknown_event: 1, rate_limited: 0 },
    },
  ],
  funnel: [{ sku: 'tea-01', channel: 'wxpay', views: 12, carts: 5, checkouts: 4, paid: 3 }],
  retention: [{ cohort: '2026-12-01', size: 2, d1: 1, d7: null, d30: null }],
  topProducts: [{ sku: 'tea-01', paid: 3, revenue: 11890 }],
  topContent: [{ contentId: 'c1', views: 2, unlocks: 1 }],
  wechat: [],
};

const EMPTY = { from: '2026-11-05', to: '2026-12-04', days: [], funnel: [], retention: [], topProducts: [], topContent: [], wechat: [] };

test('percentages: one decimal, "—" when there is nothing to divide by', () => {
  expect([pct(1, 3), pct(2, 3), pct(3, 12), pct(0, 5), pct(1, 0)]).toEqual(['33.3%', '66.7%', '25%', '0%', '—']);
});

test('totals, funnel, revenue, retention, tops and dropped reasons from the reply', () => {
  const m = dashboardModel(REPLY);
  expect(m.empty).toBe(false);
  expect([m.from, m.to]).toEqual(['2026-12-01', '2026-12-02']);
  expect(m.totals).toEqual({
    visitors: 5, pageViews: 15, paid: 3, conversion: '25%',
    gross: '¥124.90', refunds: '¥9.90', net: '¥115.00',
    newBuyers: 2, returningBuyers: 1, paywallViews: 2, paywallUnlocks: 1, paywallConversion: '50%',
  });
  expect(m.funnel.stages.map((s) => [s.label, s.value, s.ofFirst, s.ofPrev])).toEqual([
    ['浏览商品', 12, '100%', ''],
    ['加入购物车', 5, '41.7%', '41.7%'],
    ['去结算', 4, '33.3%', '80%'],
    ['支付成功', 3, '25%', '75%'],
  ]);
  expect(m.funnel.rows).toEqual([
    { key: 'tea-01:wxpay', sku: 'tea-01', channelText: '微信支付', views: 12, carts: 5, checkouts: 4, paid: 3, conversion: '25%' },
  ]);
  expect(m.revenue.days).toEqual([
    { date: '2026-12-01', label: '12-01', wxpay: 9900, xpay: 600 },
    { date: '2026-12-02', label: '12-02', wxpay: 1990, xpay: 0 },
  ]);
  expect(m.revenue.channels.map((c) => [c.label, c.gross, c.refunds])).toEqual([
    ['微信支付', '¥118.90', '¥9.90'],
    ['虚拟支付', '¥6.00', '¥0.00'],
  ]);
  expect(m.retention.rows).toEqual([
    { cohort: '2026-12-01', label: '12-01', size: 2, d1: '1 (50%)', d7: '—', d30: '—', rates: [50, null, null] },
  ]);
  expect(m.topProducts).toEqual([{ sku: 'tea-01', paid: 3, revenue: '¥118.90' }]);
  expect(m.topContent).toEqual([{ contentId: 'c1', views: 2, unlocks: 1, conversion: '50%' }]);
  expect(m.dropped).toEqual([{ reason: 'unknown_event', label: '未知事件', count: 1 }]);
});

test('a funnel row without a channel (views before any checkout) says so', () => {
  const m = dashboardModel({ ...REPLY, funnel: [{ sku: 'mug', channel: null, views: 3, carts: 0, checkouts: 0, paid: 0 }] });
  expect(m.funnel.rows.map((r) => [r.sku, r.channelText, r.conversion])).toEqual([['mug', '未分渠道', '0%']]);
});

test('chart options: funnel stages, stacked yuan per day and channel, retention in percent', () => {
  const m = dashboardModel(REPLY);
  expect(funnelChart(m).series[0].data).toEqual([
    { name: '浏览商品', value: 12, labelText: '浏览商品 12' },
    { name: '加入购物车', value: 5, labelText: '加入购物车 5 · 41.7%' },
    { name: '去结算', value: 4, labelText: '去结算 4 · 80%' },
    { name: '支付成功', value: 3, labelText: '支付成功 3 · 75%' },
  ]);
  const rev = revenueChart(m);
  expect(rev.type).toBe('column');
  expect(rev.extra.column.type).toBe('stack');
  expect(rev.categories).toEqual(['12-01', '12-02']);
  expect(rev.series.map((s) => [s.name, s.data])).toEqual([
    ['微信支付', [99, 19.9]],
    ['虚拟支付', [6, 0]],
  ]);
  const ret = retentionChart(m);
  expect(ret.categories).toEqual(['12-01']);
  expect(ret.series.map((s) => [s.name, s.data])).toEqual([
    ['次日', [50]],
    ['7日', [null]],
    ['30日', [null]],
  ]);
  for (const o of [funnelChart(m), rev, ret]) expect(o).toMatchObject({ canvas2d: true, animation: false });
});

test('an empty reply is an empty dashboard with no charts; a missing one does not throw', () => {
  const m = dashboardModel(EMPTY);
  expect(m.empty).toBe(true);
  expect([m.funnel.empty, m.revenue.empty, m.retention.empty]).toEqual([true, true, true]);
  expect([funnelChart(m), revenueChart(m), retentionChart(m)]).toEqual([null, null, null]);
  expect(m.totals.gross).toBe('¥0.00');
  expect(m.totals.conversion).toBe('—');
  expect(dashboardModel(undefined).empty).toBe(true);
  // days with zero activity are still empty
  const quiet = dashboardModel({ ...EMPTY, days: [{ date: '2026-12-04', visitors: 0, pageViews: 0, productViews: 0, paid: 0, revenue: { wxpay: 0, xpay: 0 } }] });
  expect(quiet.empty).toBe(true);
});

describe('the chart library draws every chart', () => {
  const draw = (opts) =>
    new Promise((resolve) => {
      const ctx = fakeContext();
      const chart = new UCharts(Object.assign(opts, { context: ctx, width: 640, height: 420, pixelRatio: 2 }));
      chart.addEventListener('renderComplete', () => resolve(ctx));
    });

  test('funnel: each stage with its count and the share of the step before', async () => {
    const ctx = await draw(funnelChart(dashboardModel(REPLY)));
    expect(drawnTexts(ctx)).toEqual(['浏览商品 12', '加入购物车 5 · 41.7%', '去结算 4 · 80%', '支付成功 3 · 75%']);
  });

  test('revenue: days on the x axis and the channel legend', async () => {
    const texts = drawnTexts(await draw(revenueChart(dashboardModel(REPLY))));
    expect(texts).toEqual(expect.arrayContaining(['12-01', '12-02', '微信支付', '虚拟支付']));
  });

  test('retention: cohorts, the 0–100 axis and the three series', async () => {
    const texts = drawnTexts(await draw(retentionChart(dashboardModel(REPLY))));
    expect(texts).toEqual(expect.arrayContaining(['12-01', '100', '0', '次日', '7日', '30日']));
  });
});
