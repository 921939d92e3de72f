const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { UPDATE_WECHAT_HINT } = require('../../utils/labels');

const OFFERS = [
  { sku: 'article-42', title: '单篇解锁', priceFen: 990, channel: 'xpay', kind: 'content_unlock' },
  { sku: 'vip-month', title: '月度会员', priceFen: 3000, channel: 'xpay', kind: 'membership' },
];

let id;
beforeAll(() => {
  id = load('components/paywall/paywall');
});

test('shows each offer with its price and a buy button', () => {
  setClient(CLIENTS.android);
  const comp = mount(id, { offers: OFFERS });
  const rows = comp.querySelectorAll('.offer');
  expect(rows.map((r) => text(r))).toEqual(['单篇解锁 ¥9.90 单独购买', '月度会员 ¥30.00 开通会员']);
  expect(comp.querySelectorAll('.offer-buy')).toHaveLength(2);
});

test('buy emits the chosen offer', async () => {
  setClient(CLIENTS.android);
  const comp = mount(id, { offers: OFFERS });
  const onBuy = jest.fn();
  comp.addEventListener('buy', (e) => onBuy(e.detail));
  comp.querySelectorAll('.offer-buy')[1].dispatchEvent('tap');
  await flush();
  expect(onBuy).toHaveBeenCalledWith({ offer: expect.objectContaining({ sku: 'vip-month', priceFen: 3000 }) });
});

test('on iOS with an old WeChat: update hint instead of prices, no buy buttons', () => {
  setClient(CLIENTS.oldIos);
  const comp = mount(id, { offers: OFFERS });
  expect(comp.querySelectorAll('.offer').map((r) => text(r))).toEqual([
    `单篇解锁 ${UPDATE_WECHAT_HINT}`,
    `月度会员 ${UPDATE_WECHAT_HINT}`,
  ]);
  expect(comp.querySelectorAll('.offer-buy')).toHaveLength(0);
});

test('no offers → says so', () => {
  setClient(CLIENTS.android);
  const comp = mount(id, { offers: [] });
  expect(text(comp)).toContain('暂无可购买的方案');
});
