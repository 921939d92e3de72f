const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');
const cart = require('../../utils/cart');
const config = require('../../config');

const TEE = { sku: 'tee', title: 'T恤', priceFen: 1999, channel: 'wxpay', kind: 'physical', stock: 5, active: true };
const WXPAY = { channel: 'wxpay', params: { timeStamp: '1800000000', nonceStr: 'n', package: 'prepay_id=wx1', signType: 'RSA', paySign: 'sig' } };
const ADDRESS = { userName: '张三', telNumber: '13800000000', provinceName: '广东省', cityName: '深圳市', countyName: '南山区', detailInfo: '科技园 1 号', postalCode: '518000' };

beforeAll(() => {
  config.poll.intervalMs = 1; // page tests should not wait 1.5 s per poll
});

describe('checkout page', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/checkout/checkout');
  });

  beforeEach(() => {
    setClient(CLIENTS.android);
    cart.clear();
    wx.chooseAddress = (o) => o.success(ADDRESS);
  });

  test('cart → address → createOrder → requestPayment → polled until paid; cart emptied', async () => {
    cart.add(TEE, 2);
    const statuses = ['created', 'paid'];
    const api = fakeApi({
      'createOrder.catalog': { products: [TEE] },
      'createOrder.create': { order: { id: 'o1', status: 'created', channel: 'wxpay', totalFen: 3998 }, payment: WXPAY },
      'createOrder.get': () => ({ order: { id: 'o1', status: statuses.shift(), channel: 'wxpay', totalFen: 3998 } }),
    });
    wx.requestPayment = jest.fn((o) => o.success({ errMsg: 'requestPayment:ok' }));
    const page = mount(id);
    await page.instance.onLoad({ from: 'cart' });
    await flush();
    expect(text(page.querySelector('.items'))).toBe('T恤 × 2 ¥19.99');
    expect(text(page.querySelector('.total'))).toBe('实付 ¥39.98');

    await page.instance.onPay();
    expect(page.data.errorText).toBe('请选择收货地址');
    expect(api.of('createOrder', 'create')).toHaveLength(0);

    page.instance.onChooseAddress();
    await page.instance.onPay();
    const create = api.of('createOrder', 'create')[0].data;
    expect(create).toEqual({
      action: 'create',
      clientRequestId: expect.stringMatching(/^ck[0-9a-z]{8,30}$/),
      items: [{ sku: 'tee', quantity: 2 }],
      address: { name: '张三', phone: '13800000000', province: '广东省', city: '深圳市', district: '南山区', detail: '科技园 1 号', postalCode: '518000' },
    });
    expect(wx.requestPayment).toHaveBeenCalledWith(expect.objectContaining(WXPAY.params));
    expect(api.of('createOrder', 'get')).toHaveLength(2);
    expect(text(page.querySelector('.status-text'))).toBe('支付成功');
    expect(cart.lines()).toEqual([]);
  });

  test('cancelling the payment sheet keeps the order and the same clientRequestId for "pay again"', async () => {
    const api = fakeApi({
      'createOrder.catalog': { products: [TEE] },
      'createOrder.create': { order: { id: 'o2', status: 'created', channel: 'wxpay', totalFen: 1999 }, payment: WXPAY },
      'createOrder.get': { order: { id: 'o2', status: 'created', channel: 'wxpay', totalFen: 1999 } },
    });
    wx.requestPayment = jest.fn((o) => o.fail({ errMsg: 'requestPayment:fail cancel' }));
    const page = mount(id);
    await page.instance.onLoad({ sku: 'tee', quantity: '1' });
    page.instance.onChooseAddress();
    await page.instance.onPay();
    expect(text(page.querySelector('.status-text'))).toBe('已取消支付，可重新支付');
    expect(text(page.querySelector('.pay'))).toBe('重新支付');
    await page.instance.onPay();
    const ids = api.of('createOrder', 'create').map((c) => c.data.clientRequestId);
    expect(ids).toHaveLength(2);
    expect(ids[1]).toBe(ids[0]);
  });

  test.each([
    ['OUT_OF_STOCK', '库存不足'],
    ['TOO_MANY_OPEN_ORDERS', '未支付的订单太多，请先支付或取消一些订单'],
  ])('%s is explained, nothing is paid', async (code, message) => {
    fakeApi({
      'createOrder.catalog': { products: [TEE] },
      'createOrder.create': new ApiError(code, 'refused'),
    });
    wx.requestPayment = jest.fn();
    const page = mount(id);
    await page.instance.onLoad({ sku: 'tee', quantity: '1' });
    page.instance.onChooseAddress();
    await page.instance.onPay();
    expect(text(page.querySelector('.error'))).toBe(message);
    expect(wx.requestPayment).not.toHaveBeenCalled();
  });

  test('a virtual good on old iOS WeChat: hint instead of the pay button', async () => {
    setClient(CLIENTS.oldIos);
    fakeApi({ 'createOrder.catalog': { products: [{ sku: 'vip', title: '会员', priceFen: 3000, channel: 'xpay', kind: 'membership', active: true }] } });
    const page = mount(id);
    await page.instance.onLoad({ sku: 'vip', quantity: '1' });
    await flush();
    expect(page.querySelector('.pay')).toBeUndefined();
    expect(text(page.querySelector('.footer-bar'))).toContain('请升级微信');
  });
});

describe('order page', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/order/order');
  });
  const ORDER = { id: 'o1', outTradeNo: 'T1', status: 'created', channel: 'wxpay', items: [{ sku: 'tee', title: 'T恤', quantity: 1, unitPriceFen: 1999 }], totalFen: 1999, createdAt: 1800000000, expiresAt: 1800001800, refundedFen: 0 };

  test('an unpaid order can be cancelled after confirming', async () => {
    const api = fakeApi({
      'createOrder.get': { order: ORDER },
      'createOrder.cancel': { order: { ...ORDER, status: 'closed' } },
    });
    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    const page = mount(id);
    await page.instance.onLoad({ id: 'o1' });
    expect(text(page.querySelector('.order-status'))).toBe('待支付');
    expect(page.querySelector('.cancel')).toBeTruthy();
    await page.instance.onCancel();
    expect(api.of('createOrder', 'cancel')[0].data).toEqual({ action: 'cancel', orderId: 'o1' });
    expect(text(page.querySelector('.order-status'))).toBe('已关闭');
    expect(page.querySelector('.cancel')).toBeUndefined();
  });

  test('no cancel for a paid order; ORDER_NOT_CANCELABLE reloads the truth', async () => {
    const replies = [{ order: ORDER }, { order: { ...ORDER, status: 'paid', paidAt: 1800000100 } }];
    fakeApi({
      'createOrder.get': () => replies.shift(),
      'createOrder.cancel': new ApiError('ORDER_NOT_CANCELABLE', 'already paid'),
    });
    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    const page = mount(id);
    await page.instance.onLoad({ id: 'o1' });
    await page.instance.onCancel();
    expect(page.data.errorText).toBe('订单已无法取消');
    expect(text(page.querySelector('.order-status'))).toBe('已支付');
    expect(page.querySelector('.cancel')).toBeUndefined();
  });
});

describe('orders list', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/orders/orders');
  });

  test('lists orders with status and total, pages with the cursor', async () => {
    const mk = (n, status) => ({ id: `o${n}`, outTradeNo: `T${n}`, status, items: [{ title: 'T恤', quantity: n }], totalFen: 1999 * n, createdAt: 1800000000 - n });
    const api = fakeApi({
      'createOrder.list': (d) => (d.before ? { orders: [mk(3, 'closed')], next: null } : { orders: [mk(1, 'paid'), mk(2, 'created')], next: 1799999998 }),
    });
    const page = mount(id);
    await page.instance.onShow();
    await page.instance.onMore();
    expect(page.querySelectorAll('.order-status').map((n) => text(n))).toEqual(['已支付', '待支付', '已关闭']);
    expect(page.querySelectorAll('.order-total').map((n) => text(n))).toEqual(['¥19.99', '¥39.98', '¥59.97']);
    expect(api.of('createOrder', 'list')[1].data).toEqual({ action: 'list', limit: 20, before: 1799999998 });
  });
});
