const { load, mount, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');

const ADMIN = { openid: 'o-admin', role: 'admin' };
const USER = { openid: 'o-user', role: 'user' };

const awaiting = (id, no, extra) => ({
  id,
  outTradeNo: no,
  status: 'paid',
  totalFen: 4900,
  items: [{ sku: 'mug', title: '马克杯', quantity: 1, unitPriceFen: 4900 }],
  address: { name: '张三', phone: '13800006789', province: '广东省', city: '深圳市', district: '南山区', detail: '科技园 1 号' },
  shipping: { state: 'awaiting', deadlineAt: 1800172800 },
  overdue: false,
  ...extra,
});

describe('admin shipping page', () => {
  let id;
  beforeAll(() => {
    id = load('admin/pages/shipping/shipping');
  });

  test('a non-admin sees "no permission" and nothing is listed', async () => {
    const api = fakeApi({ 'createOrder.shipments': { orders: [] } }, USER);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
    expect(api.calls).toHaveLength(0);
  });

  test('lists the orders to ship, deadline and overdue marked', async () => {
    const api = fakeApi(
      { 'createOrder.shipments': { orders: [awaiting('o1', 'T1', { overdue: true }), awaiting('o2', 'T2')] } },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(api.of('createOrder', 'shipments')[0].data).toEqual({ action: 'shipments', state: 'awaiting', limit: 50 });
    const orders = page.querySelectorAll('.order');
    expect(orders).toHaveLength(2);
    expect(text(orders[0])).toContain('已超时');
    expect(text(orders[0])).toContain('张三 13800006789 广东省深圳市南山区科技园 1 号');
    expect(text(orders[1])).not.toContain('已超时');
    await page.instance.onTab({ currentTarget: { dataset: { tab: 'overdue' } } });
    expect(api.of('createOrder', 'shipments')[1].data.state).toBe('overdue');
  });

  test('ships the selected orders by express in one call, several waybills each', async () => {
    let listed = 0;
    const api = fakeApi(
      {
        'createOrder.shipments': () => {
          listed += 1;
          return { orders: listed === 1 ? [awaiting('o1', 'T1'), awaiting('o2', 'T2'), awaiting('o3', 'T3')] : [awaiting('o3', 'T3')] };
        },
        'createOrder.ship': (d) => ({ shipped: d.shipments.length, results: d.shipments.map((s) => ({ orderId: s.orderId, ok: true })) }),
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    const at = (orderId) => ({ currentTarget: { dataset: { id: orderId } } });
    page.instance.onSelect(at('o1'));
    page.instance.onSelect(at('o2'));
    page.instance.onCompany({ ...at('o1'), detail: { value: 'sf ' } });
    page.instance.onTracking({ ...at('o1'), detail: { value: 'SF100, SF101' } });
    page.instance.onCompany({ ...at('o2'), detail: { value: 'ZTO' } });
    page.instance.onTracking({ ...at('o2'), detail: { value: 'ZT200' } });
    await page.instance.onShip();
    await flush();
    expect(api.of('createOrder', 'ship')[0].data).toEqual({
      action: 'ship',
      shipments: [
        { orderId: 'o1', logisticsType: 'express', packages: [{ expressCompany: 'SF', trackingNo: 'SF100' }, { expressCompany: 'SF', trackingNo: 'SF101' }] },
        { orderId: 'o2', logisticsType: 'express', packages: [{ expressCompany: 'ZTO', trackingNo: 'ZT200' }] },
      ],
    });
    expect(text(page.querySelector('.status'))).toBe('已发货 2 单');
    expect(page.querySelectorAll('.order')).toHaveLength(1);
  });

  test('express without a waybill is refused before any call; self-pickup needs none', async () => {
    const api = fakeApi(
      {
        'createOrder.shipments': { orders: [awaiting('o1', 'T1')] },
        'createOrder.ship': { shipped: 1, results: [{ orderId: 'o1', ok: true }] },
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    page.instance.onSelect({ currentTarget: { dataset: { id: 'o1' } } });
    await page.instance.onShip();
    expect(page.data.errorText).toBe('订单 T1 需要填写快递公司和运单号');
    expect(api.of('createOrder', 'ship')).toHaveLength(0);
    page.instance.onMethod({ currentTarget: { dataset: { method: 'self_pickup' } } });
    await page.instance.onShip();
    expect(api.of('createOrder', 'ship')[0].data.shipments).toEqual([{ orderId: 'o1', logisticsType: 'self_pickup' }]);
  });

  test('a refused order shows its own error; the others ship', async () => {
    fakeApi(
      {
        'createOrder.shipments': { orders: [awaiting('o1', 'T1'), awaiting('o2', 'T2')] },
        'createOrder.ship': {
          shipped: 1,
          results: [
            { orderId: 'o1', ok: true },
            { orderId: 'o2', ok: false, error: { code: 'ORDER_ALREADY_SHIPPED', message: 'shipped' } },
          ],
        },
      },
      ADMIN,
    );
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    page.instance.onMethod({ currentTarget: { dataset: { method: 'same_city' } } });
    page.instance.onSelect({ currentTarget: { dataset: { id: 'o1' } } });
    page.instance.onSelect({ currentTarget: { dataset: { id: 'o2' } } });
    await page.instance.onShip();
    await flush();
    expect(text(page.querySelector('.status'))).toBe('已发货 1 单');
    const errors = page.querySelectorAll('.order-error');
    expect(errors).toHaveLength(1);
    expect(text(errors[0])).toBe('订单已发货');
  });

  test('FORBIDDEN from the server also shows "no permission"', async () => {
    fakeApi({ 'createOrder.shipments': new ApiError('FORBIDDEN', 'admins only') }, ADMIN);
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toBe('没有权限');
  });
});

describe('buyer order page: shipping and confirm receipt', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/order/order');
  });
  const SHIPPED = {
    id: 'o1',
    outTradeNo: 'T1',
    status: 'fulfilled',
    channel: 'wxpay',
    items: [{ sku: 'mug', title: '马克杯', quantity: 1, unitPriceFen: 4900 }],
    totalFen: 4900,
    createdAt: 1800000000,
    expiresAt: 1800001800,
    paidAt: 1800000100,
    refundedFen: 0,
    shipping: {
      state: 'shipped',
      deadlineAt: 1800172900,
      logisticsType: 'express',
      packages: [{ expressCompany: 'SF', trackingNo: 'SF1400000000001' }],
      shippedAt: 1800003600,
      transactionId: '4200000000001',
    },
  };

  afterEach(() => {
    delete wx.openBusinessView;
  });

  test('shows the shipping state and waybills; confirm opens WeChat\'s page and the return asks the server', async () => {
    const api = fakeApi({
      'createOrder.get': { order: SHIPPED },
      'createOrder.syncShipping': { order: { ...SHIPPED, shipping: { ...SHIPPED.shipping, state: 'received', receivedAt: 1800090000 } } },
    });
    wx.openBusinessView = jest.fn();
    const page = mount(id);
    await page.instance.onLoad({ id: 'o1' });
    expect(text(page.querySelector('.shipping-state'))).toBe('已发货');
    expect(text(page.querySelector('.package'))).toBe('运单 SF SF1400000000001');
    expect(text(page.querySelector('.shipping'))).toContain('快递');
    // Coming back to the page without having opened the confirm page does nothing.
    await page.instance.onShow();
    expect(api.of('createOrder', 'syncShipping')).toHaveLength(0);

    page.instance.onConfirmReceipt();
    expect(wx.openBusinessView).toHaveBeenCalledWith(
      expect.objectContaining({ businessType: 'weappOrderConfirm', extraData: { transaction_id: '4200000000001' } }),
    );
    await page.instance.onShow();
    expect(api.of('createOrder', 'syncShipping')[0].data).toEqual({ action: 'syncShipping', orderId: 'o1' });
    expect(text(page.querySelector('.shipping-state'))).toBe('已签收');
    expect(page.querySelector('.confirm-receipt')).toBeUndefined();
    // Only once per trip to the confirm page.
    await page.instance.onShow();
    expect(api.of('createOrder', 'syncShipping')).toHaveLength(1);
  });

  test('no confirm button before shipping; the deadline is shown', async () => {
    fakeApi({ 'createOrder.get': { order: { ...SHIPPED, status: 'paid', shipping: { state: 'awaiting', deadlineAt: 1800172900 } } } });
    const page = mount(id);
    await page.instance.onLoad({ id: 'o1' });
    expect(text(page.querySelector('.shipping-state'))).toBe('待发货');
    expect(text(page.querySelector('.shipping'))).toContain('最晚发货');
    expect(page.querySelector('.confirm-receipt')).toBeUndefined();
  });

  test('an old WeChat without openBusinessView gets a hint, nothing is synced', async () => {
    const api = fakeApi({ 'createOrder.get': { order: SHIPPED } });
    const page = mount(id);
    await page.instance.onLoad({ id: 'o1' });
    expect(page.querySelector('.confirm-receipt')).toBeTruthy();
    page.instance.onConfirmReceipt();
    await page.instance.onShow();
    expect(page.data.errorText).toBe('当前微信版本不支持确认收货，请升级微信');
    expect(api.of('createOrder', 'syncShipping')).toHaveLength(0);
  });

  test('orders without shipping show no shipping section', async () => {
    fakeApi({ 'createOrder.get': { order: { ...SHIPPED, shipping: undefined } } });
    const page = mount(id);
    await page.instance.onLoad({ id: 'o1' });
    expect(page.querySelector('.shipping')).toBeUndefined();
  });
});
