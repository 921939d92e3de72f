const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { fakeApi } = require('../helpers/fake-api');
const { UPDATE_WECHAT_HINT } = require('../../utils/labels');

const CATALOG = {
  products: [
    { sku: 'tee', title: 'T恤', priceFen: 1999, channel: 'wxpay', kind: 'physical', stock: 10, active: true },
    { sku: 'mug', title: '杯子', priceFen: 5, channel: 'wxpay', kind: 'physical', stock: 0, active: true },
    { sku: 'vip-month', title: '月度会员', priceFen: 3000, channel: 'xpay', kind: 'membership', active: true },
    { sku: 'old', title: '下架商品', priceFen: 100, channel: 'wxpay', kind: 'physical', active: false },
  ],
};

describe('product list', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/list/list');
  });

  test('renders active products with prices from fen in a scroll-view', async () => {
    setClient(CLIENTS.android);
    const api = fakeApi({ 'createOrder.catalog': CATALOG });
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(api.of('createOrder', 'catalog')).toHaveLength(1);
    expect(page.querySelector('.products').dom.tagName.toLowerCase()).toBe('wx-scroll-view');
    const cards = page.querySelectorAll('.products >>> .product-card');
    expect(cards.map((c) => text(c))).toEqual(['T恤 ¥19.99', '杯子 ¥0.05 售罄', '月度会员 ¥30.00']);
  });

  test('on an old iOS WeChat the membership shows the update hint, physical goods keep prices', async () => {
    setClient(CLIENTS.oldIos);
    fakeApi({ 'createOrder.catalog': CATALOG });
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    const cards = page.querySelectorAll('.products >>> .product-card').map((c) => text(c));
    expect(cards[0]).toBe('T恤 ¥19.99');
    expect(cards[2]).toBe(`月度会员 ${UPDATE_WECHAT_HINT}`);
  });

  test('a load failure shows the error and a retry', async () => {
    setClient(CLIENTS.android);
    const { ApiError } = require('../../utils/api');
    fakeApi({ 'createOrder.catalog': new ApiError('NETWORK_ERROR', 'offline') });
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page)).toContain('网络不太顺畅');
  });

  test('tapping a product opens its page', async () => {
    setClient(CLIENTS.android);
    fakeApi({ 'createOrder.catalog': CATALOG });
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    const nav = jest.spyOn(wx, 'navigateTo').mockImplementation(() => {});
    page.querySelectorAll('.products >>> .product-card')[0].dispatchEvent('tap');
    await flush();
    expect(nav).toHaveBeenCalledWith({ url: '/shop/pages/product/product?sku=tee' });
    nav.mockRestore();
  });
});
