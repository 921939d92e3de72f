const { load, mount, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');

const ADMIN = { openid: 'o-admin', role: 'admin' };
const USER = { openid: 'o-user', role: 'user' };

describe('admin entry points are shown to admins only', () => {
  let me;
  let home;
  beforeAll(() => {
    me = load('pages/me/me');
    home = load('pages/index/index');
  });

  test('me page: no admin links for a normal user', async () => {
    fakeApi({}, USER);
    const page = mount(me);
    await page.instance.onShow();
    await flush();
    expect(page.querySelector('.admin-links')).toBeUndefined();
    expect(text(page)).not.toContain('审核队列');
  });

  test('me page: admin links for an admin', async () => {
    fakeApi({}, ADMIN);
    const page = mount(me);
    await page.instance.onShow();
    await flush();
    expect(text(page.querySelector('.admin-links'))).toBe('管理 审核队列 退款 发货 投诉 财务对账 经营分析');
  });

  test('home: the admin tile only for admins', async () => {
    fakeApi({}, USER);
    const p1 = mount(home);
    await p1.instance.onLoad({});
    expect(p1.querySelector('.admin-tile')).toBeUndefined();
    fakeApi({}, ADMIN);
    const p2 = mount(home);
    await p2.instance.onLoad({});
    expect(p2.querySelector('.admin-tile')).toBeTruthy();
  });
});

describe('review queue', () => {
  let id;
  beforeAll(() => {
    id = load('admin/pages/review/review');
  });

  test('a non-admin gets "no permission" and the queue is never requested', async () => {
    const api = fakeApi({ 'ugcUpload.queue': { posts: [] } }, USER);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
    expect(api.of('ugcUpload', 'queue')).toHaveLength(0);
  });

  test('admin: approve and reject (with a reason) remove posts from the queue', async () => {
    const api = fakeApi(
      {
        'ugcUpload.queue': {
          posts: [
            { id: 'p1', author: 'o-a', text: '一', media: [], status: 'in_review' },
            { id: 'p2', author: 'o-b', text: '二', media: [], status: 'in_review' },
          ],
        },
        'ugcUpload.approve': (d) => ({ post: { id: d.postId, status: 'approved' } }),
        'ugcUpload.reject': (d) => ({ post: { id: d.postId, status: 'rejected', reason: d.reason } }),
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(page.querySelectorAll('.post')).toHaveLength(2);
    expect(text(page.querySelectorAll('.post')[0])).toContain('人工审核中');
    await page.instance.onApprove({ currentTarget: { dataset: { id: 'p1' } } });
    wx.showModal = jest.fn((o) => o.success({ confirm: true, content: '广告' }));
    await page.instance.onReject({ currentTarget: { dataset: { id: 'p2' } } });
    await flush();
    expect(api.of('ugcUpload', 'approve')[0].data).toEqual({ action: 'approve', postId: 'p1' });
    expect(api.of('ugcUpload', 'reject')[0].data).toEqual({ action: 'reject', postId: 'p2', reason: '广告' });
    expect(page.querySelectorAll('.post')).toHaveLength(0);
  });

  test('the server saying FORBIDDEN also shows "no permission"', async () => {
    fakeApi({ 'ugcUpload.queue': new ApiError('FORBIDDEN', 'admins only') }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
  });
});

describe('refunds', () => {
  let id;
  beforeAll(() => {
    id = load('admin/pages/refunds/refunds');
  });
  const PAID = { id: 'o1', outTradeNo: 'T1', status: 'paid', totalFen: 5000, refundedFen: 0, items: [{ title: 'T恤', quantity: 1 }] };

  test('a non-admin sees "no permission" and no search runs', async () => {
    const api = fakeApi({ 'createOrder.search': { orders: [PAID] } }, USER);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
    expect(api.calls).toHaveLength(0);
  });

  test('partial refund in yuan becomes fen; a network failure keeps the same refundNo for the retry', async () => {
    let attempts = 0;
    const api = fakeApi(
      {
        'createOrder.search': { orders: [PAID] },
        'createOrder.refund': () => {
          attempts += 1;
          if (attempts === 1) return new ApiError('NETWORK_ERROR', 'request:fail');
          return { refund: { refundNo: 'x', amountFen: 1250, status: 'processing' } };
        },
      },
      ADMIN,
    );
    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page.querySelector('.order'))).toContain('¥50.00');
    page.instance.onAmount({ currentTarget: { dataset: { id: 'o1' } }, detail: { value: '12.5' } });
    page.instance.onReason({ currentTarget: { dataset: { id: 'o1' } }, detail: { value: '尺码不合适' } });
    await page.instance.onRefund({ currentTarget: { dataset: { id: 'o1' } } });
    expect(page.data.orders[0].retry).toBe(true);
    expect(text(page.querySelector('.refund'))).toBe('重试退款');
    await page.instance.onRefund({ currentTarget: { dataset: { id: 'o1' } } });
    const refunds = api.of('createOrder', 'refund').map((c) => c.data);
    expect(refunds).toHaveLength(2);
    expect(refunds[0]).toMatchObject({ orderId: 'o1', amountFen: 1250, reason: '尺码不合适' });
    expect(refunds[1].refundNo).toBe(refunds[0].refundNo);
    expect(wx.showModal).toHaveBeenCalledTimes(1); // confirmed once, the retry is the same refund
  });

  test('an amount above what is left is refused before calling the server', async () => {
    const api = fakeApi({ 'createOrder.search': { orders: [{ ...PAID, status: 'partially_refunded', refundedFen: 4000 }] } }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    page.instance.onAmount({ currentTarget: { dataset: { id: 'o1' } }, detail: { value: '10.01' } });
    await page.instance.onRefund({ currentTarget: { dataset: { id: 'o1' } } });
    expect(api.of('createOrder', 'refund')).toHaveLength(0);
    expect(page.data.errorText).toBe('退款金额需在 0.01 到 ¥10.00 之间');
  });
});
