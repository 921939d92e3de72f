const { load, mount, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');

const ADMIN = { openid: 'o-admin', role: 'admin' };
const USER = { openid: 'o-user', role: 'user' };

const PENDING = {
  complaintId: '200201820261204000000000001',
  channel: 'wxpay',
  state: 'PENDING',
  detail: '杯子有裂纹',
  problemType: 'REFUND',
  orderRefs: [{ outTradeNo: 'WM1', transactionId: '42', amountFen: 2500 }],
  awaitingReply: true,
  overdue: false,
  dueInSecs: 3 * 3600 + 20 * 60,
};
const HISTORY = [{ log_id: 'l1', operator: '用户', operate_time: '2026-12-04T08:00:00+08:00', operate_type: 'USER_CREATE_COMPLAINT', operate_details: '杯子有裂纹' }];

describe('admin complaints', () => {
  let id;
  beforeAll(() => {
    id = load('admin/pages/complaints/complaints');
  });

  test('a non-admin sees "no permission" and nothing is requested', async () => {
    const api = fakeApi({ 'createOrder.complaintList': { complaints: [PENDING] } }, USER);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
    expect(api.calls).toHaveLength(0);
  });

  test('the list shows pending complaints with the time left to reply, overdue ones marked', async () => {
    const api = fakeApi(
      {
        'createOrder.complaintList': {
          complaints: [
            { ...PENDING, complaintId: 'c-late', overdue: true, dueInSecs: -3900 },
            PENDING,
          ],
        },
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(api.of('createOrder', 'complaintList')[0].data).toMatchObject({ state: 'PENDING' });
    const rows = page.querySelectorAll('.complaint');
    expect(rows).toHaveLength(2);
    expect(text(rows[0])).toContain('已超时 1 小时 5 分');
    expect(text(page.querySelectorAll('.overdue')[0])).toBe('已超时 1 小时 5 分');
    expect(page.querySelectorAll('.overdue')).toHaveLength(1);
    expect(text(rows[1])).toContain('剩余 3 小时 20 分');
    expect(text(rows[1])).toContain('微信支付 · WM1');
  });

  test('open, read the history, respond, then complete after confirming', async () => {
    let state = 'PENDING';
    const history = HISTORY.slice();
    const api = fakeApi(
      {
        'createOrder.complaintList': { complaints: [PENDING] },
        'createOrder.complaintGet': () => ({ complaint: { ...PENDING, state, awaitingReply: state === 'PENDING' }, history }),
        'createOrder.complaintRespond': (d) => {
          state = 'PROCESSING';
          history.push({ log_id: 'l2', operator: '商家', operate_time: 't', operate_type: 'MERCHANT_RESPONSE', operate_details: d.content });
          return { complaint: { ...PENDING, state } };
        },
        'createOrder.complaintComplete': () => {
          state = 'PROCESSED';
          return { complaint: { ...PENDING, state, awaitingReply: false } };
        },
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    await page.instance.onOpen({ currentTarget: { dataset: { id: PENDING.complaintId } } });
    await flush();
    expect(text(page.querySelector('.history'))).toContain('杯子有裂纹');

    // Empty and over-long replies are refused before anything is sent.
    await page.instance.onRespond();
    page.instance.onReply({ detail: { value: '退'.repeat(201) } });
    await page.instance.onRespond();
    expect(page.data.errorText).toBe('回复需为 1 到 200 个字');
    expect(api.of('createOrder', 'complaintRespond')).toHaveLength(0);

    page.instance.onReply({ detail: { value: '您好，已为您安排换货' } });
    await page.instance.onRespond();
    await flush();
    expect(api.of('createOrder', 'complaintRespond').map((c) => c.data)).toEqual([
      { action: 'complaintRespond', complaintId: PENDING.complaintId, content: '您好，已为您安排换货' },
    ]);
    expect(text(page.querySelector('.history'))).toContain('您好，已为您安排换货');
    expect(text(page.querySelector('.status'))).toBe('已回复用户');

    wx.showModal = jest.fn((o) => o.success({ confirm: false }));
    await page.instance.onComplete();
    expect(api.of('createOrder', 'complaintComplete')).toHaveLength(0);
    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    await page.instance.onComplete();
    await flush();
    expect(api.of('createOrder', 'complaintComplete')).toHaveLength(1);
    expect(text(page.querySelector('.detail'))).toContain('已处理');
    expect(page.querySelector('.actions')).toBeUndefined();
  });

  test('a refusal is shown and nothing is retried', async () => {
    const api = fakeApi(
      {
        'createOrder.complaintList': { complaints: [PENDING] },
        'createOrder.complaintGet': { complaint: PENDING, history: HISTORY },
        'createOrder.complaintRespond': new ApiError('COMPLAINT_CLOSED', 'the complaint is already processed'),
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await page.instance.onOpen({ currentTarget: { dataset: { id: PENDING.complaintId } } });
    page.instance.onReply({ detail: { value: '你好' } });
    await page.instance.onRespond();
    await flush();
    expect(api.of('createOrder', 'complaintRespond')).toHaveLength(1);
    expect(page.data.errorText).toBeTruthy();
  });
});
