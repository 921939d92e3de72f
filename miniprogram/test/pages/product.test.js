const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { fakeApi } = require('../helpers/fake-api');
const cart = require('../../utils/cart');

const PRODUCTS = [
  { sku: 'tee', title: 'T恤', priceFen: 1999, channel: 'wxpay', kind: 'physical', stock: 2, active: true, description: '纯棉' },
  { sku: 'vip', title: '月度会员', priceFen: 3000, channel: 'xpay', kind: 'membership', active: true },
  { sku: 'mug', title: '杯子', priceFen: 500, channel: 'wxpay', kind: 'physical', stock: 0, active: true },
];

describe('product page', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/product/product');
  });
  beforeEach(() => {
    cart.clear();
    setClient(CLIENTS.android);
  });

  test('physical: price, stock, quantity capped by stock, add to cart', async () => {
    fakeApi({ 'createOrder.catalog': { products: PRODUCTS } });
    wx.showToast = jest.fn();
    const page = mount(id);
    await page.instance.onLoad({ sku: 'tee' });
    expect(text(page.querySelector('.price'))).toBe('¥19.99');
    expect(text(page.querySelector('.stock'))).toBe('库存 2');
    page.instance.onPlus();
    page.instance.onPlus();
    expect(page.data.quantity).toBe(2);
    page.instance.onAddToCart();
    expect(cart.lines()).toEqual([{ sku: 'tee', title: 'T恤', priceFen: 1999, kind: 'physical', channel: 'wxpay', quantity: 2 }]);
  });

  test('virtual: buy now only (no cart); on old iOS the hint replaces price and buttons', async () => {
    fakeApi({ 'createOrder.catalog': { products: PRODUCTS } });
    const page = mount(id);
    await page.instance.onLoad({ sku: 'vip' });
    expect(page.querySelector('.add-cart')).toBeUndefined();
    expect(page.querySelector('.buy-now')).toBeTruthy();

    setClient(CLIENTS.oldIos);
    fakeApi({ 'createOrder.catalog': { products: PRODUCTS } });
    const old = mount(id);
    await old.instance.onLoad({ sku: 'vip' });
    await flush();
    expect(old.querySelector('.buy-now')).toBeUndefined();
    expect(text(old)).not.toContain('¥');
    expect(text(old.querySelector('.footer-bar'))).toBe('请升级微信到最新版本后购买');
  });

  test('sold out: no buy buttons', async () => {
    fakeApi({ 'createOrder.catalog': { products: PRODUCTS } });
    const page = mount(id);
    await page.instance.onLoad({ sku: 'mug' });
    expect(page.querySelector('.buy-now')).toBeUndefined();
    expect(text(page.querySelector('.footer-bar'))).toBe('暂不可购买');
  });

  test('unknown sku: not found', async () => {
    fakeApi({ 'createOrder.catalog': { products: PRODUCTS } });
    const page = mount(id);
    await page.instance.onLoad({ sku: 'nope' });
    expect(text(page)).toBe('商品不存在');
  });
});

describe('cart page', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/cart/cart');
  });

  test('lines, steppers and the total in fen', () => {
    cart.clear();
    cart.add(PRODUCTS[0], 1);
    cart.add({ sku: 'sock', title: '袜子', priceFen: 5, kind: 'physical', channel: 'wxpay' }, 3);
    const page = mount(id);
    page.instance.onShow();
    expect(text(page.querySelector('.total'))).toBe('合计 ¥20.14');
    page.instance.onStep({ currentTarget: { dataset: { sku: 'tee', delta: '1' } } });
    expect(text(page.querySelector('.total'))).toBe('合计 ¥40.13');
    page.instance.onStep({ currentTarget: { dataset: { sku: 'sock', delta: '-1' } } });
    page.instance.onStep({ currentTarget: { dataset: { sku: 'sock', delta: '-1' } } });
    page.instance.onStep({ currentTarget: { dataset: { sku: 'sock', delta: '-1' } } });
    expect(page.data.lines.map((l) => l.sku)).toEqual(['tee']);
    expect(text(page.querySelector('.total'))).toBe('合计 ¥39.98');
  });
});
