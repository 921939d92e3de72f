/**
 * Finance view helpers for the admin finance page: the 30-day chart model and the
 * discrepancy rows (labels and amounts in yuan).
 */
const { formatFen } = require('../../utils/money');

const KIND_LABELS = {
  paid_not_recorded: '微信已收款，系统未记录',
  recorded_not_paid: '系统已记录，微信无此收款',
  amount_mismatch: '金额不一致',
  refund_unknown: '未知退款（如商户平台直接退款）',
  refund_state_mismatch: '退款状态不一致',
  fee_mismatch: '手续费不符',
};

/** Per-day bars (percent of the highest day's gross) and the period's totals, in fen. */
function chartModel(days) {
  const byDate = {};
  (days || []).forEach((r) => {
    const d = byDate[r.date] || (byDate[r.date] = { date: r.date, wxpay: 0, xpay: 0, net: 0 });
    if (r.channel === 'wxpay' || r.channel === 'xpay') d[r.channel] += r.grossFen;
    d.net += r.netFen;
  });
  const list = Object.keys(byDate).sort().map((k) => byDate[k]);
  const max = list.reduce((m, d) => Math.max(m, d.wxpay + d.xpay), 0);
  const pct = (fen) => (max > 0 ? Math.round((fen * 100) / max) : 0);
  const bars = list.map((d) => ({
    date: d.date,
    label: d.date.slice(5),
    wxpayPct: pct(d.wxpay),
    xpayPct: pct(d.xpay),
    title: `${d.date} 收入 ${formatFen(d.wxpay + d.xpay)} 净额 ${formatFen(d.net)}`,
  }));
  const sum = (k) => (days || []).reduce((s, r) => s + (r[k] || 0), 0);
  const orders = (days || []).reduce((s, r) => s + (r.orders || 0), 0);
  return {
    bars,
    totals: {
      gross: formatFen(sum('grossFen')),
      refunds: formatFen(sum('refundsFen')),
      fees: formatFen(sum('feesFen')),
      net: formatFen(sum('netFen')),
      orders,
    },
    best: max > 0 ? formatFen(max) : '',
  };
}

function discrepancyRow(d) {
  const amounts = [];
  if (d.billFen !== undefined) amounts.push(`账单 ${formatFen(d.billFen)}`);
  if (d.wemintFen !== undefined) amounts.push(`系统 ${formatFen(d.wemintFen)}`);
  return {
    id: d._id,
    date: d.date,
    kindText: KIND_LABELS[d.kind] || d.kind,
    ref: d.outRefundNo || d.outTradeNo || '',
    amountText: amounts.join(' / '),
    detail: d.detail,
    action: d.action,
  };
}

module.exports = { chartModel, discrepancyRow, KIND_LABELS };
