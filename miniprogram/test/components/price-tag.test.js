const { load, mount, setClient, CLIENTS, text } = require('../helpers/sim');
const { UPDATE_WECHAT_HINT } = require('../../utils/labels');

let id;
beforeAll(() => {
  id = load('components/price-tag/price-tag');
});

test.each([
  [1999, '¥19.99'],
  [100, '¥1.00'],
  [5, '¥0.05'],
])('renders %i fen as %s', (priceFen, shown) => {
  setClient(CLIENTS.android);
  const comp = mount(id, { priceFen, kind: 'physical', channel: 'wxpay' });
  expect(text(comp)).toBe(shown);
  expect(comp.querySelector('.update-hint')).toBeUndefined();
});

test('virtual goods on iOS with an old WeChat show the update hint and no price', () => {
  setClient(CLIENTS.oldIos);
  const comp = mount(id, { priceFen: 3000, kind: 'membership', channel: 'xpay' });
  expect(text(comp)).toBe(UPDATE_WECHAT_HINT);
  expect(text(comp)).not.toContain('30.00');
  expect(comp.querySelector('.price')).toBeUndefined();
});

test('virtual goods on a new enough iOS WeChat show the price', () => {
  setClient(CLIENTS.newIos);
  const comp = mount(id, { priceFen: 3000, kind: 'membership', channel: 'xpay' });
  expect(text(comp)).toBe('¥30.00');
});

test('physical goods on old iOS still show the price', () => {
  setClient(CLIENTS.oldIos);
  const comp = mount(id, { priceFen: 8800, kind: 'physical', channel: 'wxpay' });
  expect(text(comp)).toBe('¥88.00');
});

test('updates when the price changes', () => {
  setClient(CLIENTS.android);
  const comp = mount(id, { priceFen: 100, kind: 'physical' });
  comp.setData({ priceFen: 250 });
  expect(text(comp)).toBe('¥2.50');
});
