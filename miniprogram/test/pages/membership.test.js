const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');
const { formatTime } = require('../../utils/labels');

const PLANS = [
  { sku: 'vip-basic-month', title: '基础会员（月）', priceFen: 1500, channel: 'xpay', kind: 'membership', active: true, plan: { id: 'basic', title: '基础会员', tier: 1, periodDays: 30 } },
  { sku: 'vip-pro-month', title: '专业会员（月）', priceFen: 3000, channel: 'xpay', kind: 'membership', active: true, plan: { id: 'pro', title: '专业会员', tier: 2, periodDays: 30 } },
  { sku: 'tee', title: 'T恤', priceFen: 1999, channel: 'wxpay', kind: 'physical', active: true },
];

describe('membership page', () => {
  let id;
  beforeAll(() => {
    id = load('membership/pages/membership/membership');
  });

  test('shows plan, state and period end; renew the current plan, upgrade to a higher tier', async () => {
    setClient(CLIENTS.android);
    fakeApi({
      'createOrder.catalog': { products: PLANS },
      'gatedContent.entitlements': { entitlements: [], subscription: { plan: 'basic', state: 'active', periodEndAt: 1800000000, renewPlan: 'basic' } },
    });
    const page = mount(id);
    await page.instance.onLoad({});
    await flush();
    expect(text(page.querySelector('.plan-title'))).toBe('基础会员');
    expect(text(page.querySelector('.sub-state'))).toBe('生效中');
    expect(text(page.querySelector('.period-end'))).toBe(formatTime(1800000000));
    expect(page.querySelectorAll('.plan').map((n) => text(n))).toEqual([
      '基础会员（月） ¥15.00 30 天 续费',
      '专业会员（月） ¥30.00 30 天 升级',
    ]);
  });

  test('no subscription: subscribe buttons; buying runs checkout and reloads', async () => {
    setClient(CLIENTS.android);
    let paid = false;
    const api = fakeApi({
      'createOrder.catalog': { products: PLANS },
      'gatedContent.entitlements': () =>
        paid ? { entitlements: [], subscription: { plan: 'pro', state: 'active', periodEndAt: 1802592000, renewPlan: 'pro' } } : { entitlements: [] },
      'createOrder.create': { order: { id: 'o5', status: 'created', channel: 'xpay', totalFen: 3000 }, payment: { channel: 'xpay', params: { mode: 'short_series_goods', signData: '{}', paySig: 'a', signature: 'b' } } },
      'createOrder.get': () => {
        paid = true;
        return { order: { id: 'o5', status: 'fulfilled' } };
      },
    });
    wx.requestVirtualPayment = jest.fn((o) => o.success({}));
    const page = mount(id);
    await page.instance.onLoad({});
    expect(text(page.querySelector('.no-sub'))).toBe('还不是会员');
    expect(page.querySelectorAll('.plan-action').map((n) => text(n))).toEqual(['开通', '开通']);
    await page.instance.onBuy({ currentTarget: { dataset: { sku: 'vip-pro-month' } } });
    expect(api.of('createOrder', 'create')[0].data.items).toEqual([{ sku: 'vip-pro-month', quantity: 1 }]);
    expect(text(page.querySelector('.plan-title'))).toBe('专业会员');
    expect(text(page.querySelector('.status'))).toBe('支付成功，会员已生效');
  });

  test('old iOS WeChat: plans show the update hint and no buy buttons', async () => {
    setClient(CLIENTS.oldIos);
    fakeApi({ 'createOrder.catalog': { products: PLANS }, 'gatedContent.entitlements': { entitlements: [] } });
    const page = mount(id);
    await page.instance.onLoad({});
    expect(page.querySelectorAll('.plan-action')).toHaveLength(0);
    expect(text(page.querySelector('.plans'))).toContain('请升级微信');
    expect(text(page.querySelector('.plans'))).not.toContain('¥');
  });
});

describe('tenant page', () => {
  let id;
  beforeAll(() => {
    id = load('membership/pages/tenant/tenant');
  });

  test('no tenant: create one, adopt the new token, then show members', async () => {
    const api = fakeApi({
      'login.createTenant': { tenant: { id: 't1', name: '小团队' }, token: 'tok-tenant' },
      'login.members': { members: [{ openid: 'o-user', role: 'owner', joinedAt: 1 }] },
      'createOrder.catalog': { products: [] },
    });
    const page = mount(id);
    await page.instance.onLoad({});
    expect(page.querySelector('.create')).toBeTruthy();
    page.instance.onNameInput({ detail: { value: ' 小团队 ' } });
    api.refreshUser.mockImplementation(async () => ({ openid: 'o-user', role: 'user', tenant: { id: 't1', name: '小团队', role: 'owner', plan: null } }));
    await page.instance.onCreate();
    expect(api.of('login', 'createTenant')[0].data).toEqual({ action: 'createTenant', name: '小团队' });
    expect(api.replaceToken).toHaveBeenCalledWith('tok-tenant');
    expect(text(page.querySelector('.tenant-name'))).toBe('小团队');
    expect(page.querySelectorAll('.member').map((n) => text(n))).toEqual(['o-user 所有者']);
    expect(page.querySelector('.invite')).toBeTruthy();
  });

  test('invite hitting the seat limit says so; members cannot invite', async () => {
    const owner = { openid: 'o-user', role: 'user', tenant: { id: 't1', name: '小团队', role: 'owner', plan: 'team' } };
    const api = fakeApi({
      'login.members': { members: [{ openid: 'o-user', role: 'owner', joinedAt: 1 }] },
      'login.invite': new ApiError('SEAT_LIMIT_REACHED', 'full'),
      'createOrder.catalog': { products: [] },
    }, owner);
    const page = mount(id);
    await page.instance.onLoad({});
    page.instance.onInviteInput({ detail: { value: 'o-new' } });
    page.instance.onRoleChange({ detail: { value: 'admin' } });
    await page.instance.onInvite();
    expect(api.of('login', 'invite')[0].data).toEqual({ action: 'invite', openid: 'o-new', role: 'admin' });
    expect(text(page.querySelector('.error'))).toBe('团队席位已满，请升级套餐');

    fakeApi({ 'login.members': { members: [] } }, { ...owner, tenant: { ...owner.tenant, role: 'member' } });
    const p2 = mount(id);
    await p2.instance.onLoad({});
    expect(p2.querySelector('.invite')).toBeUndefined();
  });
});
