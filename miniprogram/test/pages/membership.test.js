const { load, mount, setClient, CLIENTS, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');
const { formatTime, ERRORS, SUBSCRIPTION_STATE } = require('../../utils/labels');

const PLANS = [
  { sku: 'vip-basic-month', title: '基础会员（月）', priceFen: 1500, channel: 'xpay', kind: 'membership', active: true, plan: { id: 'basic', title: '基础会员', tier: 1, periodDays: 30, trialDays: 7 } },
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

  test('trial: button only for plans with trialDays, only before any subscription (expired counts)', async () => {
    setClient(CLIENTS.android);
    fakeApi({ 'createOrder.catalog': { products: PLANS }, 'gatedContent.entitlements': { entitlements: [] } });
    const none = mount(id);
    await none.instance.onLoad({});
    expect(none.querySelectorAll('.plan').map((n) => text(n))).toEqual([
      '基础会员（月） ¥15.00 30 天 免费试用 7 天 开通',
      '专业会员（月） ¥30.00 30 天 开通',
    ]);
    expect(none.querySelectorAll('.plan-trial').map((n) => text(n))).toEqual(['免费试用 7 天']);
    for (const state of ['trial', 'active', 'past_due', 'grace', 'expired', 'canceled']) {
      fakeApi({
        'createOrder.catalog': { products: PLANS },
        'gatedContent.entitlements': { entitlements: [], subscription: { plan: 'pro', state, periodEndAt: 1800000000, renewPlan: 'pro' } },
      });
      const page = mount(id);
      await page.instance.onLoad({});
      expect([state, page.querySelectorAll('.plan-trial').length]).toEqual([state, 0]);
    }
  });

  test('trial: shown where virtual payment is unavailable (a trial is not a sale)', async () => {
    setClient(CLIENTS.oldIos);
    fakeApi({ 'createOrder.catalog': { products: PLANS }, 'gatedContent.entitlements': { entitlements: [] } });
    const page = mount(id);
    await page.instance.onLoad({});
    expect(page.querySelectorAll('.plan-action')).toHaveLength(0);
    expect(page.querySelectorAll('.plan-trial').map((n) => text(n))).toEqual(['免费试用 7 天']);
  });

  test('trial: tapping calls startTrial with the plan id, no order or payment; reloads as trial', async () => {
    setClient(CLIENTS.android);
    let sub = null;
    const api = fakeApi({
      'createOrder.catalog': { products: PLANS },
      'gatedContent.entitlements': () => (sub ? { entitlements: [], subscription: sub } : { entitlements: [] }),
      'gatedContent.startTrial': () => {
        sub = { plan: 'basic', state: 'trial', periodEndAt: 1800604800, accessEndsAt: 1800604800, renewPlan: 'basic' };
        return { subscription: sub };
      },
    });
    wx.requestVirtualPayment = jest.fn();
    const page = mount(id);
    await page.instance.onLoad({});
    page.querySelector('.plan-trial').dispatchEvent('tap');
    await flush();
    expect(api.of('gatedContent', 'startTrial').map((c) => c.data)).toEqual([{ action: 'startTrial', plan: 'basic' }]);
    expect(api.calls.filter((c) => c.name === 'createOrder' && c.action !== 'catalog')).toHaveLength(0);
    expect(wx.requestVirtualPayment).not.toHaveBeenCalled();
    expect(api.of('gatedContent', 'entitlements')).toHaveLength(2);
    expect(text(page.querySelector('.status'))).toBe(`试用已开始，至 ${formatTime(1800604800)}`);
    expect(text(page.querySelector('.sub-state'))).toBe(SUBSCRIPTION_STATE.trial);
    expect(text(page.querySelector('.period-end'))).toBe(formatTime(1800604800));
    expect(page.querySelectorAll('.plan-trial')).toHaveLength(0);
    expect(page.data.busySku).toBe('');
  });

  test('trial errors show their messages and change nothing', async () => {
    setClient(CLIENTS.android);
    const codes = ['TRIAL_UNAVAILABLE', 'PLAN_NOT_FOUND'];
    const api = fakeApi({
      'createOrder.catalog': { products: PLANS },
      'gatedContent.entitlements': { entitlements: [] },
      'gatedContent.startTrial': () => new ApiError(codes.shift(), 'no'),
    });
    const page = mount(id);
    await page.instance.onLoad({});
    for (const code of ['TRIAL_UNAVAILABLE', 'PLAN_NOT_FOUND']) {
      await page.instance.onTrial({ currentTarget: { dataset: { sku: 'vip-basic-month' } } });
      expect(text(page.querySelector('.error'))).toBe(ERRORS[code]);
      expect(page.querySelector('.status')).toBeUndefined();
    }
    expect(ERRORS.TRIAL_UNAVAILABLE).toBe('该方案不提供试用，或你已开通过会员');
    expect(api.of('gatedContent', 'entitlements')).toHaveLength(1);
    expect(page.data.busySku).toBe('');
  });

  /** A basic member (period end 1800000000) whose entitlements follow `state.sub`. */
  function member(extra, sub) {
    const state = { sub: sub || { plan: 'basic', state: 'active', periodEndAt: 1800000000, renewPlan: 'basic' } };
    const api = fakeApi(Object.assign({
      'createOrder.catalog': { products: PLANS },
      'gatedContent.entitlements': () => ({ entitlements: [], subscription: state.sub }),
    }, extra(state)));
    return { api, state };
  }
  const upgradeTap = { currentTarget: { dataset: { sku: 'vip-pro-month', action: 'upgrade' } } };
  const QUOTE = {
    change: 'upgrade',
    applied: false,
    quote: { plan: 'pro', fromPlan: 'basic', amountFen: 750, quotedAt: 1799000000, periodEndAt: 1800000000 },
    checkout: { upgrade: { plan: 'pro', scope: 'user' } },
    subscription: { plan: 'basic', state: 'active', periodEndAt: 1800000000, renewPlan: 'basic' },
  };
  const upOrder = (status) => ({ id: 'o9', status, channel: 'xpay', totalFen: 750, upgrade: { plan: 'pro', fromPlan: 'basic', scope: 'user', from: 1799000000, until: 1800000000 } });
  const xpay = { channel: 'xpay', params: { mode: 'short_series_goods', signData: '{}', paySig: 'a', signature: 'b' } };

  test('upgrade: changePlan quote shown in a modal, then createOrder with upgrade (not items) is paid', async () => {
    setClient(CLIENTS.android);
    const { api } = member((state) => ({
      'gatedContent.changePlan': QUOTE,
      'createOrder.create': { order: upOrder('created'), payment: xpay },
      'createOrder.get': () => {
        state.sub = { plan: 'pro', state: 'active', periodEndAt: 1800000000, renewPlan: 'pro' };
        return { order: upOrder('fulfilled') };
      },
    }));
    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    wx.requestVirtualPayment = jest.fn((o) => o.success({}));
    const page = mount(id);
    await page.instance.onLoad({});
    await page.instance.onPlanTap(upgradeTap);
    expect(api.of('gatedContent', 'changePlan')[0].data).toEqual({ action: 'changePlan', plan: 'pro' });
    expect(wx.showModal).toHaveBeenCalledTimes(1);
    expect(wx.showModal.mock.calls[0][0].content).toBe(`升级到专业会员，补差价 ¥7.50，有效期至 ${formatTime(1800000000)}`);
    const create = api.of('createOrder', 'create');
    expect(create).toHaveLength(1);
    expect(create[0].data.upgrade).toEqual({ plan: 'pro', scope: 'user' });
    expect(create[0].data.items).toBeUndefined();
    const order = api.calls.map((c) => `${c.name}.${c.action}`);
    expect(order.indexOf('gatedContent.changePlan')).toBeLessThan(order.indexOf('createOrder.create'));
    expect(text(page.querySelector('.status'))).toBe('支付成功，已升级到专业会员');
    expect(text(page.querySelector('.plan-title'))).toBe('专业会员');
  });

  test('upgrade: declining the quote buys nothing; a cancelled payment keeps its clientRequestId and amount', async () => {
    setClient(CLIENTS.android);
    const { api } = member(() => ({
      'gatedContent.changePlan': () => ({ ...QUOTE, quote: { ...QUOTE.quote, amountFen: 700 } }),
      'createOrder.create': { order: upOrder('created'), payment: xpay },
      'createOrder.get': { order: upOrder('created') },
    }));
    wx.showModal = jest.fn((o) => o.success({ confirm: false }));
    const page = mount(id);
    await page.instance.onLoad({});
    await page.instance.onPlanTap(upgradeTap);
    expect(api.of('createOrder', 'create')).toHaveLength(0);

    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    wx.requestVirtualPayment = jest.fn((o) => o.fail({ errMsg: 'requestVirtualPayment:fail cancel', errCode: -2 }));
    await page.instance.onPlanTap(upgradeTap);
    expect(text(page.querySelector('.status'))).toBe('已取消支付');
    await page.instance.onPlanTap(upgradeTap);
    const creates = api.of('createOrder', 'create');
    expect(creates).toHaveLength(2);
    expect(creates[1].data.clientRequestId).toBe(creates[0].data.clientRequestId);
    // The retry pays the order already made (¥7.50), not the newer quote (¥7.00).
    expect(wx.showModal.mock.calls[0][0].content).toContain('¥7.00');
    expect(wx.showModal.mock.calls[1][0].content).toContain('¥7.50');
  });

  test('upgrade applied at once (only trial time left): no modal, no order, the page reloads', async () => {
    setClient(CLIENTS.android);
    const { api } = member((state) => ({
      'gatedContent.changePlan': () => {
        state.sub = { plan: 'pro', state: 'trial', periodEndAt: 1800000000, renewPlan: 'pro' };
        return { change: 'upgrade', applied: true, subscription: state.sub };
      },
    }), { plan: 'basic', state: 'trial', periodEndAt: 1800000000, renewPlan: 'basic' });
    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    const page = mount(id);
    await page.instance.onLoad({});
    await page.instance.onPlanTap(upgradeTap);
    expect(wx.showModal).not.toHaveBeenCalled();
    expect(api.of('createOrder', 'create')).toHaveLength(0);
    expect(api.of('gatedContent', 'entitlements')).toHaveLength(2);
    expect(text(page.querySelector('.plan-title'))).toBe('专业会员');
    expect(text(page.querySelector('.status'))).toBe('已升级到专业会员');
  });

  test('UPGRADE_PRICE_UNSUPPORTED: says so and offers buying the plan from the period end', async () => {
    setClient(CLIENTS.android);
    const { api } = member(() => ({
      'gatedContent.changePlan': QUOTE,
      'createOrder.create': (data) => (data.upgrade ? new ApiError('UPGRADE_PRICE_UNSUPPORTED', 'amount') : { order: { id: 'o10', status: 'paid' }, payment: null }),
    }));
    const answers = [true, false, true, true];
    wx.showModal = jest.fn((o) => o.success({ confirm: answers.shift() }));
    const page = mount(id);
    await page.instance.onLoad({});
    await page.instance.onPlanTap(upgradeTap);
    expect(text(page.querySelector('.error'))).toBe(ERRORS.UPGRADE_PRICE_UNSUPPORTED);
    expect(wx.showModal.mock.calls[1][0].title).toBe('到期后切换');
    expect(wx.showModal.mock.calls[1][0].content).toBe(`购买专业会员（¥30.00），当前会员到期后（${formatTime(1800000000)}）生效`);
    expect(api.of('createOrder', 'create')).toHaveLength(1);

    await page.instance.onPlanTap(upgradeTap);
    const creates = api.of('createOrder', 'create');
    expect(creates).toHaveLength(3);
    expect(creates[2].data.items).toEqual([{ sku: 'vip-pro-month', quantity: 1 }]);
    expect(creates[2].data.upgrade).toBeUndefined();
    expect(text(page.querySelector('.status'))).toBe('支付成功，会员已生效');
  });

  test('changePlan errors show their messages', async () => {
    setClient(CLIENTS.android);
    const codes = ['PLAN_CHANGE_INVALID', 'SUBSCRIPTION_EXPIRED', 'PLAN_NOT_FOR_SALE'];
    member(() => ({ 'gatedContent.changePlan': () => new ApiError(codes.shift(), 'no') }));
    const page = mount(id);
    await page.instance.onLoad({});
    for (const code of ['PLAN_CHANGE_INVALID', 'SUBSCRIPTION_EXPIRED', 'PLAN_NOT_FOR_SALE']) {
      await page.instance.onPlanTap(upgradeTap);
      expect(text(page.querySelector('.error'))).toBe(ERRORS[code]);
    }
  });

  test('downgrade: lower tier switches at the period end; the switch shows and can be undone', async () => {
    setClient(CLIENTS.android);
    const { api } = member((state) => ({
      'gatedContent.changePlan': (data) => {
        state.sub = { ...state.sub, renewPlan: data.plan };
        return data.plan === 'pro' ? { change: 'kept', subscription: state.sub } : { change: 'downgrade', effectiveAt: 1802592000, subscription: state.sub };
      },
    }), { plan: 'pro', state: 'active', periodEndAt: 1802592000, renewPlan: 'pro' });
    const page = mount(id);
    await page.instance.onLoad({});
    expect(page.querySelectorAll('.plan').map((n) => text(n))).toEqual([
      '基础会员（月） ¥15.00 30 天 到期后切换',
      '专业会员（月） ¥30.00 30 天 续费',
    ]);
    expect(page.querySelector('.renew-plan')).toBeUndefined();
    await page.instance.onPlanTap({ currentTarget: { dataset: { sku: 'vip-basic-month', action: 'downgrade' } } });
    expect(api.of('gatedContent', 'changePlan')[0].data).toEqual({ action: 'changePlan', plan: 'basic' });
    expect(api.of('createOrder', 'create')).toHaveLength(0);
    expect(text(page.querySelector('.status'))).toBe(`将于 ${formatTime(1802592000)} 切换为基础会员`);
    expect(text(page.querySelector('.renew-plan'))).toBe('到期后切换为基础会员 保留当前方案');
    expect(page.querySelectorAll('.plan').map((n) => text(n))).toEqual([
      '基础会员（月） ¥15.00 30 天 到期后生效',
      '专业会员（月） ¥30.00 30 天 续费',
    ]);

    await page.instance.onKeep();
    expect(api.of('gatedContent', 'changePlan')[1].data).toEqual({ action: 'changePlan', plan: 'pro' });
    expect(text(page.querySelector('.status'))).toBe('已保留专业会员');
    expect(page.querySelector('.renew-plan')).toBeUndefined();
  });

  test('cancel: confirmed, then cancelSubscription; canceled state shows and no cancel button', async () => {
    setClient(CLIENTS.android);
    const { api } = member((state) => ({
      'gatedContent.cancelSubscription': () => {
        state.sub = { ...state.sub, state: 'canceled', canceledAt: 1799000000 };
        return { subscription: state.sub };
      },
    }));
    wx.showModal = jest.fn((o) => o.success({ confirm: false }));
    const page = mount(id);
    await page.instance.onLoad({});
    expect(page.querySelector('.cancel-sub')).toBeTruthy();
    expect(page.querySelector('.resume-sub')).toBeUndefined();
    await page.instance.onCancelSub();
    expect(api.of('gatedContent', 'cancelSubscription')).toHaveLength(0);

    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    await page.instance.onCancelSub();
    expect(wx.showModal.mock.calls[0][0].content).toContain(formatTime(1800000000));
    expect(api.of('gatedContent', 'cancelSubscription')[0].data).toEqual({ action: 'cancelSubscription' });
    expect(text(page.querySelector('.status'))).toBe(`已取消，可使用至 ${formatTime(1800000000)}`);
    expect(text(page.querySelector('.sub-state'))).toBe(SUBSCRIPTION_STATE.canceled);
    expect(page.querySelector('.cancel-sub')).toBeUndefined();
    expect(text(page.querySelector('.resume-sub'))).toBe('恢复订阅');
  });

  test('resume button only for canceled subscriptions', async () => {
    setClient(CLIENTS.android);
    for (const state of ['trial', 'active', 'past_due', 'grace', 'expired', 'canceled']) {
      member(() => ({}), { plan: 'basic', state, periodEndAt: 1800000000, renewPlan: 'basic' });
      const page = mount(id);
      await page.instance.onLoad({});
      expect([state, !!page.querySelector('.resume-sub')]).toEqual([state, state === 'canceled']);
    }
    fakeApi({ 'createOrder.catalog': { products: PLANS }, 'gatedContent.entitlements': { entitlements: [] } });
    const none = mount(id);
    await none.instance.onLoad({});
    expect(none.querySelector('.resume-sub')).toBeUndefined();
  });

  test('resume: resumeSubscription, then the page reloads as active with the cancel button back', async () => {
    setClient(CLIENTS.android);
    const { api } = member((state) => ({
      'gatedContent.resumeSubscription': () => {
        state.sub = { plan: 'basic', state: 'active', periodEndAt: 1800000000, renewPlan: 'basic' };
        return { subscription: state.sub };
      },
    }), { plan: 'basic', state: 'canceled', canceledAt: 1799000000, periodEndAt: 1800000000, renewPlan: 'basic' });
    wx.showModal = jest.fn((o) => o.success({ confirm: true }));
    const page = mount(id);
    await page.instance.onLoad({});
    expect(page.querySelector('.cancel-sub')).toBeUndefined();
    await page.instance.onResumeSub();
    expect(api.of('gatedContent', 'resumeSubscription').map((c) => c.data)).toEqual([{ action: 'resumeSubscription' }]);
    expect(api.of('gatedContent', 'entitlements')).toHaveLength(2);
    expect(text(page.querySelector('.status'))).toBe('已恢复订阅');
    expect(text(page.querySelector('.sub-state'))).toBe(SUBSCRIPTION_STATE.active);
    expect(page.querySelector('.resume-sub')).toBeUndefined();
    expect(page.querySelector('.cancel-sub')).toBeTruthy();
    expect(page.data.busySku).toBe('');
    // Nothing is lost by resuming, so no confirmation step.
    expect(wx.showModal).not.toHaveBeenCalled();
  });

  test('resume errors show their messages and leave the page canceled', async () => {
    setClient(CLIENTS.android);
    const codes = ['SUBSCRIPTION_EXPIRED', 'SUBSCRIPTION_NOT_FOUND'];
    const { api } = member(() => ({ 'gatedContent.resumeSubscription': () => new ApiError(codes.shift(), 'no') }),
      { plan: 'basic', state: 'canceled', canceledAt: 1799000000, periodEndAt: 1800000000, renewPlan: 'basic' });
    const page = mount(id);
    await page.instance.onLoad({});
    for (const code of ['SUBSCRIPTION_EXPIRED', 'SUBSCRIPTION_NOT_FOUND']) {
      await page.instance.onResumeSub();
      expect(text(page.querySelector('.error'))).toBe(ERRORS[code]);
      expect(page.querySelector('.status')).toBeUndefined();
      expect(page.querySelector('.resume-sub')).toBeTruthy();
    }
    expect(api.of('gatedContent', 'resumeSubscription')).toHaveLength(2);
    expect(api.of('gatedContent', 'entitlements')).toHaveLength(1);
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

  const TEAM_PLANS = [
    { sku: 'team-month', title: '团队版（月）', priceFen: 9900, channel: 'xpay', kind: 'tenant_plan', active: true, plan: { id: 'team', title: '团队版', tier: 1, periodDays: 30, seats: 5, trialDays: 14 } },
    { sku: 'team-pro-month', title: '团队专业版（月）', priceFen: 19900, channel: 'xpay', kind: 'tenant_plan', active: true, plan: { id: 'team-pro', title: '团队专业版', tier: 2, periodDays: 30, seats: 20 } },
  ];
  const admin = { openid: 'o-user', role: 'user', tenant: { id: 't1', name: '小团队', role: 'admin', plan: null } };

  test('team trial: owners/admins see it for plans with trialDays while the team never subscribed', async () => {
    setClient(CLIENTS.oldIos);
    fakeApi({
      'login.members': { members: [{ openid: 'o-user', role: 'admin', joinedAt: 1 }] },
      'createOrder.catalog': { products: TEAM_PLANS },
      'gatedContent.entitlements': { entitlements: [] },
    }, admin);
    const page = mount(id);
    await page.instance.onLoad({});
    // No buy buttons on old iOS, but the trial is not a sale.
    expect(page.querySelectorAll('.plan-buy')).toHaveLength(0);
    expect(page.querySelectorAll('.plan-trial').map((n) => text(n))).toEqual(['免费试用 14 天']);

    setClient(CLIENTS.android);
    for (const state of ['trial', 'active', 'expired', 'canceled']) {
      fakeApi({
        'login.members': { members: [] },
        'createOrder.catalog': { products: TEAM_PLANS },
        'gatedContent.entitlements': { entitlements: [], tenantSubscription: { plan: 'team', state, periodEndAt: 1800000000, renewPlan: 'team', tenant: 't1' } },
      }, admin);
      const p = mount(id);
      await p.instance.onLoad({});
      expect([state, p.querySelectorAll('.plan-trial').length, p.querySelectorAll('.plan-buy').length]).toEqual([state, 0, 2]);
    }
    // A personal subscription does not use up the team's trial.
    fakeApi({
      'login.members': { members: [] },
      'createOrder.catalog': { products: TEAM_PLANS },
      'gatedContent.entitlements': { entitlements: [], subscription: { plan: 'basic', state: 'active', periodEndAt: 1800000000, renewPlan: 'basic' } },
    }, admin);
    const personal = mount(id);
    await personal.instance.onLoad({});
    expect(personal.querySelectorAll('.plan-trial')).toHaveLength(1);
    // Unknown standing: no trial offered, the page still loads.
    fakeApi({
      'login.members': { members: [] },
      'createOrder.catalog': { products: TEAM_PLANS },
      'gatedContent.entitlements': new ApiError('HTTP_ERROR', 'down'),
    }, admin);
    const unknown = mount(id);
    await unknown.instance.onLoad({});
    expect(unknown.querySelectorAll('.plan-trial')).toHaveLength(0);
    expect(unknown.querySelector('.error')).toBeUndefined();
  });

  test('team trial: tapping calls startTrial with scope tenant, no order; reloads; errors show', async () => {
    setClient(CLIENTS.android);
    let tsub = null;
    const api = fakeApi({
      'login.members': { members: [{ openid: 'o-user', role: 'admin', joinedAt: 1 }] },
      'createOrder.catalog': { products: TEAM_PLANS },
      'gatedContent.entitlements': () => (tsub ? { entitlements: [], tenantSubscription: tsub } : { entitlements: [] }),
      'gatedContent.startTrial': () => {
        tsub = { plan: 'team', state: 'trial', seats: 5, periodEndAt: 1801209600, renewPlan: 'team', tenant: 't1' };
        return { subscription: tsub };
      },
    }, admin);
    const page = mount(id);
    await page.instance.onLoad({});
    page.querySelector('.plan-trial').dispatchEvent('tap');
    await flush();
    expect(api.of('gatedContent', 'startTrial').map((c) => c.data)).toEqual([{ action: 'startTrial', plan: 'team', scope: 'tenant' }]);
    expect(api.calls.filter((c) => c.name === 'createOrder' && c.action !== 'catalog')).toHaveLength(0);
    expect(api.of('gatedContent', 'entitlements')).toHaveLength(2);
    expect(text(page.querySelector('.status'))).toBe(`试用已开始，至 ${formatTime(1801209600)}`);
    expect(page.querySelectorAll('.plan-trial')).toHaveLength(0);
    expect(page.data.busy).toBe(false);

    fakeApi({
      'login.members': { members: [] },
      'createOrder.catalog': { products: TEAM_PLANS },
      'gatedContent.entitlements': { entitlements: [] },
      'gatedContent.startTrial': new ApiError('TRIAL_UNAVAILABLE', 'used'),
    }, admin);
    const p2 = mount(id);
    await p2.instance.onLoad({});
    await p2.instance.onTrialPlan({ currentTarget: { dataset: { sku: 'team-month' } } });
    expect(text(p2.querySelector('.error'))).toBe(ERRORS.TRIAL_UNAVAILABLE);
    expect(p2.querySelector('.status')).toBeUndefined();
  });
});
