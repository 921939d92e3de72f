const { load, mount, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');
const { chartModel } = require('../../admin/utils/finance');

const ADMIN = { openid: 'o-admin', role: 'admin' };
const USER = { openid: 'o-user', role: 'user' };

const DAYS = [
  { date: '2024-05-01', channel: 'wxpay', grossFen: 20000, refundsFen: 1000, feesFen: 114, netFen: 18886, orders: 3, refunds: 1, source: 'bill' },
  { date: '2024-05-01', channel: 'xpay', grossFen: 600, refundsFen: 0, feesFen: 0, netFen: 600, orders: 1, refunds: 0, source: 'wemint' },
  { date: '2024-05-02', channel: 'wxpay', grossFen: 10300, refundsFen: 0, feesFen: 62, netFen: 10238, orders: 2, refunds: 0, source: 'bill' },
];

const OPEN = [
  {
    _id: '2024-05-01:refund_unknown:CONSOLE1', date: '2024-05-01', kind: 'refund_unknown', status: 'open',
    outTradeNo: 'WM1', outRefundNo: 'CONSOLE1', billFen: 500,
    detail: 'WeChat Pay refunded 5.00 yuan (SUCCESS) that wemint did not request',
    action: 'A refund was made outside wemint (merchant console): check who made it',
  },
  {
    _id: '2024-05-01:amount_mismatch:WM2', date: '2024-05-01', kind: 'amount_mismatch', status: 'open',
    outTradeNo: 'WM2', billFen: 1090, wemintFen: 990, detail: 'the bill says 10.90 yuan, the order 9.90 yuan',
    action: 'Compare the order with the merchant platform record',
  },
];

describe('finance chart model', () => {
  test('days are stacked per channel, scaled to the best day, totals in yuan', () => {
    const m = chartModel(DAYS);
    expect(m.bars.map((b) => [b.label, b.wxpayPct, b.xpayPct])).toEqual([
      ['05-01', 97, 3],
      ['05-02', 50, 0],
    ]);
    expect(m.totals).toEqual({ gross: '¥309.00', refunds: '¥10.00', fees: '¥1.76', net: '¥297.24', orders: 6 });
    expect(m.best).toBe('¥206.00');
    expect(chartModel([]).bars).toEqual([]);
  });
});

describe('finance page', () => {
  let id;
  beforeAll(() => {
    id = load('admin/pages/finance/finance');
  });

  test('a non-admin gets "no permission" and nothing is requested', async () => {
    const api = fakeApi({}, USER);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
    expect(api.calls.filter((c) => c.name === 'reconcile')).toHaveLength(0);
  });

  test('admin: the 30-day chart, totals and the open discrepancies with what to do', async () => {
    const api = fakeApi(
      {
        'reconcile.revenueReport': { from: '2024-04-03', to: '2024-05-02', days: DAYS },
        'reconcile.discrepancies': { discrepancies: OPEN },
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(api.of('reconcile', 'discrepancies')[0].data).toEqual({ action: 'discrepancies', status: 'open' });
    expect(page.querySelectorAll('.bar')).toHaveLength(2);
    expect(text(page.querySelector('.net'))).toBe('¥297.24');
    const rows = page.querySelectorAll('.discrepancy');
    expect(rows).toHaveLength(2);
    expect(text(rows[0])).toContain('未知退款（如商户平台直接退款）');
    expect(text(rows[0])).toContain('处理建议：A refund was made outside wemint');
    expect(text(rows[1])).toContain('账单 ¥10.90 / 系统 ¥9.90');
  });

  test('admin: resolve with a note, and run a day', async () => {
    const api = fakeApi(
      {
        'reconcile.revenueReport': { days: DAYS },
        'reconcile.discrepancies': { discrepancies: OPEN },
        'reconcile.resolveDiscrepancy': (d) => ({ discrepancy: { _id: d.id, status: 'resolved' } }),
        'reconcile.billsRun': (d) => ({ date: d.date, status: 'reconciled', rows: 5, repaired: 1, discrepancies: [{}, {}] }),
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    wx.showModal = jest.fn((o) => o.success({ confirm: true, content: '店主在商户平台退的款' }));
    await page.instance.onResolve({ currentTarget: { dataset: { id: OPEN[0]._id } } });
    await flush();
    expect(api.of('reconcile', 'resolveDiscrepancy')[0].data).toEqual({
      action: 'resolveDiscrepancy', id: OPEN[0]._id, note: '店主在商户平台退的款',
    });
    expect(page.querySelectorAll('.discrepancy')).toHaveLength(1);

    page.instance.onRunDate({ detail: { value: '2024-05-01' } });
    await page.instance.onRun();
    await flush();
    expect(api.of('reconcile', 'billsRun')[0].data).toEqual({ action: 'billsRun', date: '2024-05-01' });
    expect(text(page.querySelector('.status'))).toBe('2024-05-01 对账完成：5 笔，差异 2 条，补单 1 笔');
  });

  test('a refused bill shows its error', async () => {
    fakeApi(
      {
        'reconcile.revenueReport': { days: [] },
        'reconcile.discrepancies': { discrepancies: [] },
        'reconcile.billsRun': new ApiError('BILL_HASH_MISMATCH', 'bill hash mismatch'),
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await page.instance.onRun();
    await flush();
    expect(text(page.querySelector('.error'))).toBe('账单校验失败（哈希不符），已拒收，请重试');
  });
});
