/**
 * The analytics dashboard's data preparation (analytics `dashboard`, functions/analytics): what the
 * admin page shows as text, and the chart options it hands to uCharts. Pure: no wx, no canvas.
 * Money stays integer fen until it is formatted; chart values are yuan for the axis only.
 */
const { formatFen } = require('../../utils/money');

const CHANNELS = [
  { key: 'wxpay', label: '微信支付', color: '#07c160' },
  { key: 'xpay', label: '虚拟支付', color: '#1890ff' },
];

const STAGES = [
  { key: 'productViews', label: '浏览商品' },
  { key: 'carts', label: '加入购物车' },
  { key: 'checkouts', label: '去结算' },
  { key: 'paid', label: '支付成功' },
];

const DROP_REASONS = {
  unknown_event: '未知事件',
  bad_type: '类型错误',
  too_large: '超出大小',
  batch_cap: '超出单批上限',
  rate_limited: '超出频率',
};

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const fen = (v) => (Number.isSafeInteger(v) ? v : 0);

/** "37.5%" of part in whole, '—' when whole is 0. */
function pct(part, whole) {
  if (!whole) return '—';
  const tenths = Math.round((num(part) * 1000) / whole);
  return `${Math.floor(tenths / 10)}${tenths % 10 ? `.${tenths % 10}` : ''}%`;
}

/** Percent as a number with one decimal, or null when whole is 0 (for charts). */
function rate(part, whole) {
  return whole ? Math.round((num(part) * 1000) / whole) / 10 : null;
}

/** '2026-12-04' → '12-04'. */
function shortDate(d) {
  return typeof d === 'string' && d.length >= 10 ? d.slice(5, 10) : String(d || '');
}

function channelSum(days, field, channel) {
  return days.reduce((s, d) => s + fen(d[field] && d[field][channel]), 0);
}

/** Everything the page renders, from one `dashboard` reply. */
function dashboardModel(reply) {
  const r = reply || {};
  const days = (Array.isArray(r.days) ? r.days : []).slice().sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
  const sum = (k) => days.reduce((s, d) => s + num(d[k]), 0);

  const stageValues = STAGES.map((s) => sum(s.key));
  const stages = STAGES.map((s, i) => ({
    key: s.key,
    label: s.label,
    value: stageValues[i],
    ofFirst: pct(stageValues[i], stageValues[0]),
    ofPrev: i === 0 ? '' : pct(stageValues[i], stageValues[i - 1]),
  }));

  const revenue = {};
  const refunds = {};
  CHANNELS.forEach((c) => {
    revenue[c.key] = channelSum(days, 'revenue', c.key);
    refunds[c.key] = channelSum(days, 'refunds', c.key);
  });
  const gross = revenue.wxpay + revenue.xpay;
  const refunded = refunds.wxpay + refunds.xpay;

  const dropped = {};
  days.forEach((d) => {
    Object.keys(d.dropped || {}).forEach((k) => {
      dropped[k] = (dropped[k] || 0) + num(d.dropped[k]);
    });
  });
  const droppedRows = Object.keys(dropped)
    .filter((k) => dropped[k] > 0)
    .sort()
    .map((k) => ({ reason: k, label: DROP_REASONS[k] || k, count: dropped[k] }));

  const cell = (v, size) => (v === null || v === undefined ? '—' : `${v} (${pct(v, size)})`);
  const retention = (Array.isArray(r.retention) ? r.retention : []).map((c) => ({
    cohort: c.cohort,
    label: shortDate(c.cohort),
    size: num(c.size),
    d1: cell(c.d1, c.size),
    d7: cell(c.d7, c.size),
    d30: cell(c.d30, c.size),
    rates: ['d1', 'd7', 'd30'].map((k) => (c[k] === null || c[k] === undefined ? null : rate(c[k], c.size))),
  }));

  const funnelRows = (Array.isArray(r.funnel) ? r.funnel : []).map((f) => ({
    key: `${f.sku}:${f.channel}`,
    sku: f.sku,
    channelText: f.channel ? (CHANNELS.find((c) => c.key === f.channel) || { label: String(f.channel) }).label : '未分渠道',
    views: num(f.views),
    carts: num(f.carts),
    checkouts: num(f.checkouts),
    paid: num(f.paid),
    conversion: pct(f.paid, f.views),
  }));

  const paywallViews = sum('paywallViews');
  const paywallUnlocks = sum('paywallUnlocks');

  return {
    from: r.from || (days[0] && days[0].date) || '',
    to: r.to || (days.length && days[days.length - 1].date) || '',
    totals: {
      visitors: sum('visitors'),
      pageViews: sum('pageViews'),
      paid: stageValues[3],
      conversion: pct(stageValues[3], stageValues[0]),
      gross: formatFen(gross),
      refunds: formatFen(refunded),
      net: formatFen(gross - refunded),
      newBuyers: sum('newBuyers'),
      returningBuyers: sum('returningBuyers'),
      paywallViews,
      paywallUnlocks,
      paywallConversion: pct(paywallUnlocks, paywallViews),
    },
    funnel: { stages, rows: funnelRows, empty: stageValues.every((v) => v === 0) },
    revenue: {
      empty: gross === 0 && refunded === 0,
      channels: CHANNELS.map((c) => ({ key: c.key, label: c.label, color: c.color, gross: formatFen(revenue[c.key]), refunds: formatFen(refunds[c.key]) })),
      days: days.map((d) => ({
        date: d.date,
        label: shortDate(d.date),
        wxpay: fen(d.revenue && d.revenue.wxpay),
        xpay: fen(d.revenue && d.revenue.xpay),
      })),
    },
    retention: { rows: retention, empty: retention.length === 0 },
    topProducts: (Array.isArray(r.topProducts) ? r.topProducts : []).map((p) => ({ sku: p.sku, paid: num(p.paid), revenue: formatFen(fen(p.revenue)) })),
    topContent: (Array.isArray(r.topContent) ? r.topContent : []).map((c) => ({
      contentId: c.contentId,
      views: num(c.views),
      unlocks: num(c.unlocks),
      conversion: pct(c.unlocks, c.views),
    })),
    dropped: droppedRows,
    empty: days.every((d) => !num(d.pageViews) && !num(d.productViews) && !num(d.paid) && !fen(d.revenue && d.revenue.wxpay) && !fen(d.revenue && d.revenue.xpay)) && retention.length === 0,
  };
}

/** Options shared by every chart (the page adds context, size and pixel ratio). */
function base(type) {
  return { type, canvas2d: true, animation: false, background: '#FFFFFF', fontSize: 11, padding: [12, 12, 4, 4] };
}

/** uCharts options for the conversion funnel, or null when there is nothing to draw. */
function funnelChart(model) {
  if (model.funnel.empty) return null;
  return Object.assign(base('funnel'), {
    legend: { show: false },
    // each layer is labelled with its stage, count and the share of the step before
    series: [
      {
        data: model.funnel.stages.map((s) => ({
          name: s.label,
          value: s.value,
          labelText: s.ofPrev ? `${s.label} ${s.value} · ${s.ofPrev}` : `${s.label} ${s.value}`,
        })),
      },
    ],
    extra: { funnel: { border: true, borderWidth: 2, borderColor: '#FFFFFF', labelAlign: 'right', activeOpacity: 0.3 } },
  });
}

/** uCharts options for revenue per day, channels stacked (yuan on the axis). */
function revenueChart(model) {
  if (model.revenue.empty) return null;
  const yuan = (f) => Math.round(f) / 100;
  return Object.assign(base('column'), {
    categories: model.revenue.days.map((d) => d.label),
    series: CHANNELS.map((c) => ({ name: c.label, color: c.color, data: model.revenue.days.map((d) => yuan(d[c.key])) })),
    xAxis: { disableGrid: true, labelCount: 6 },
    yAxis: { data: [{ min: 0, title: '元' }] },
    legend: { show: true, position: 'top' },
    dataLabel: false,
    extra: { column: { type: 'stack', width: 12 } },
  });
}

/** uCharts options for D1/D7/D30 retention per cohort (percent; days not come yet left out). */
function retentionChart(model) {
  if (model.retention.empty) return null;
  const names = ['次日', '7日', '30日'];
  return Object.assign(base('line'), {
    categories: model.retention.rows.map((c) => c.label),
    series: names.map((name, i) => ({ name, data: model.retention.rows.map((c) => c.rates[i]) })),
    xAxis: { disableGrid: true, labelCount: 6 },
    yAxis: { data: [{ min: 0, max: 100, title: '%' }] },
    legend: { show: true, position: 'top' },
    extra: { line: { type: 'straight', width: 2 } },
  });
}

module.exports = { dashboardModel, funnelChart, revenueChart, retentionChart, pct, CHANNELS, STAGES, DROP_REASONS };
