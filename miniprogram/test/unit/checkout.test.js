/** @jest-environment node */
const { checkout, pollOrder } = require('../../utils/checkout');

/** An api whose createOrder replies come from a script, recording every call. */
function scriptedApi(handlers) {
  const calls = [];
  return {
    calls,
    call: jest.fn(async (name, data) => {
      calls.push({ name, data });
      const h = handlers[data.action];
      if (!h) throw new Error(`unexpected ${name}.${data.action}`);
      return h(data);
    }),
  };
}

const order = (status) => ({ id: 'o1', outTradeNo: 'T1', status, channel: 'wxpay', totalFen: 1999, items: [] });
const wxpayPayment = { channel: 'wxpay', params: { timeStamp: '1', nonceStr: 'n', package: 'prepay_id=p', signType: 'RSA', paySign: 's' } };
const xpayPayment = { channel: 'xpay', params: { mode: 'short_series_goods', signData: '{"offerId":"1"}', paySig: 'ps', signature: 'sg' } };
const fastPoll = { intervalMs: 10, timeoutMs: 100, sleep: () => Promise.resolve() };

test('wxpay: requestPayment gets the params, then get is polled until paid', async () => {
  const statuses = ['created', 'created', 'paid'];
  const api = scriptedApi({
    create: () => ({ order: order('created'), payment: wxpayPayment }),
    get: () => ({ order: order(statuses.shift()) }),
  });
  const w = { requestPayment: jest.fn((o) => o.success({ errMsg: 'requestPayment:ok' })) };
  const stages = [];
  const r = await checkout({ api, wx: w, items: [{ sku: 'tee', quantity: 2, priceFen: 1 }], clientRequestId: 'ck1', poll: fastPoll, onStage: (s) => stages.push(s) });
  expect(r.outcome).toBe('paid');
  expect(api.calls[0].data).toEqual({ action: 'create', clientRequestId: 'ck1', items: [{ sku: 'tee', quantity: 2 }] });
  expect(w.requestPayment).toHaveBeenCalledWith(expect.objectContaining(wxpayPayment.params));
  expect(api.calls.filter((c) => c.data.action === 'get')).toHaveLength(3);
  expect(stages).toEqual(['creating', 'paying', 'confirming']);
});

test('the success callback alone is not "paid": still created at the deadline → pending', async () => {
  const api = scriptedApi({
    create: () => ({ order: order('created'), payment: wxpayPayment }),
    get: () => ({ order: order('created') }),
  });
  const w = { requestPayment: (o) => o.success({}) };
  let t = 0;
  const r = await checkout({ api, wx: w, items: [{ sku: 'tee', quantity: 1 }], clientRequestId: 'ck2', poll: { intervalMs: 1000, timeoutMs: 3000, now: () => t, sleep: async (ms) => { t += ms; } } });
  expect(r.outcome).toBe('pending');
  expect(r.order.status).toBe('created');
});

test('xpay: requestVirtualPayment gets signData as the exact string', async () => {
  const api = scriptedApi({
    create: () => ({ order: { ...order('created'), channel: 'xpay' }, payment: xpayPayment }),
    get: () => ({ order: { ...order('fulfilled'), channel: 'xpay' } }),
  });
  const w = { requestVirtualPayment: jest.fn((o) => o.success({})) };
  const r = await checkout({ api, wx: w, items: [{ sku: 'vip-month', quantity: 1 }], clientRequestId: 'ck3', poll: fastPoll });
  expect(r.outcome).toBe('paid');
  const arg = w.requestVirtualPayment.mock.calls[0][0];
  expect(arg.signData).toBe('{"offerId":"1"}');
  expect(arg).toMatchObject({ mode: 'short_series_goods', paySig: 'ps', signature: 'sg' });
});

test('cancel in the payment sheet → one get, outcome cancelled', async () => {
  const api = scriptedApi({
    create: () => ({ order: order('created'), payment: wxpayPayment }),
    get: () => ({ order: order('created') }),
  });
  const w = { requestPayment: (o) => o.fail({ errMsg: 'requestPayment:fail cancel' }) };
  const r = await checkout({ api, wx: w, items: [{ sku: 'tee', quantity: 1 }], clientRequestId: 'ck4', poll: fastPoll });
  expect(r.outcome).toBe('cancelled');
  expect(api.calls.map((c) => c.data.action)).toEqual(['create', 'get']);
});

test('virtual payment cancel (errCode -2) is a cancel, other failures are errors', async () => {
  const api = scriptedApi({
    create: () => ({ order: order('created'), payment: xpayPayment }),
    get: () => ({ order: order('created') }),
  });
  const cancel = { requestVirtualPayment: (o) => o.fail({ errMsg: 'requestVirtualPayment:fail', errCode: -2 }) };
  await expect(checkout({ api, wx: cancel, items: [{ sku: 'v', quantity: 1 }], clientRequestId: 'ck5', poll: fastPoll })).resolves.toMatchObject({ outcome: 'cancelled' });
  const risk = { requestVirtualPayment: (o) => o.fail({ errMsg: 'requestVirtualPayment:fail risk', errCode: -4 }) };
  await expect(checkout({ api, wx: risk, items: [{ sku: 'v', quantity: 1 }], clientRequestId: 'ck6', poll: fastPoll })).rejects.toMatchObject({ code: 'PAYMENT_UI_FAILED' });
});

test('an order closed while polling ends the poll with that status', async () => {
  const api = scriptedApi({ get: () => ({ order: order('closed') }) });
  await expect(pollOrder(api, 'o1', fastPoll)).resolves.toMatchObject({ outcome: 'closed' });
});

test('an already paid order (same clientRequestId after success) skips the payment UI', async () => {
  const api = scriptedApi({ create: () => ({ order: order('paid'), payment: null }) });
  const w = { requestPayment: jest.fn() };
  await expect(checkout({ api, wx: w, items: [{ sku: 'tee', quantity: 1 }], clientRequestId: 'ck7', poll: fastPoll })).resolves.toMatchObject({ outcome: 'paid' });
  expect(w.requestPayment).not.toHaveBeenCalled();
});

test('SESSION_KEY_MISSING: one fresh login, then the same create again', async () => {
  let first = true;
  const api = scriptedApi({
    create: () => {
      if (first) {
        first = false;
        const { ApiError } = require('../../utils/api');
        throw new ApiError('SESSION_KEY_MISSING', 'login again');
      }
      return { order: { ...order('created'), channel: 'xpay' }, payment: xpayPayment };
    },
    get: () => ({ order: { ...order('fulfilled'), channel: 'xpay' } }),
  });
  api.login = jest.fn(async () => ({ token: 'fresh' }));
  const w = { requestVirtualPayment: (o) => o.success({}) };
  const r = await checkout({ api, wx: w, items: [{ sku: 'vip', quantity: 1 }], clientRequestId: 'ck8', poll: fastPoll });
  expect(r.outcome).toBe('paid');
  expect(api.login).toHaveBeenCalledTimes(1);
  const creates = api.calls.filter((c) => c.data.action === 'create');
  expect(creates).toHaveLength(2);
  expect(creates[1].data.clientRequestId).toBe('ck8');
});

test('upgrade: create carries upgrade (no items), then the order is paid like any other', async () => {
  const upOrder = { ...order('created'), channel: 'xpay', totalFen: 750, upgrade: { plan: 'pro', fromPlan: 'basic', scope: 'user', from: 1, until: 2 } };
  const api = scriptedApi({
    create: () => ({ order: upOrder, payment: xpayPayment }),
    get: () => ({ order: { ...upOrder, status: 'fulfilled' } }),
  });
  const w = { requestVirtualPayment: jest.fn((o) => o.success({})) };
  const r = await checkout({ api, wx: w, upgrade: { plan: 'pro', scope: 'user', extra: 'x' }, clientRequestId: 'ck9', poll: fastPoll });
  expect(r.outcome).toBe('paid');
  expect(api.calls[0].data).toEqual({ action: 'create', clientRequestId: 'ck9', upgrade: { plan: 'pro', scope: 'user' } });
  expect(w.requestVirtualPayment).toHaveBeenCalledTimes(1);
  const noScope = scriptedApi({ create: () => ({ order: { ...upOrder, status: 'paid' }, payment: null }) });
  await checkout({ api: noScope, wx: w, upgrade: { plan: 'pro' }, clientRequestId: 'ck10', poll: fastPoll });
  expect(noScope.calls[0].data).toEqual({ action: 'create', clientRequestId: 'ck10', upgrade: { plan: 'pro' } });
});

test('exactly one of items or upgrade: both or neither is refused before any call', async () => {
  const api = scriptedApi({});
  await expect(checkout({ api, wx: {}, items: [{ sku: 'tee', quantity: 1 }], upgrade: { plan: 'pro' }, clientRequestId: 'ck11' })).rejects.toThrow(TypeError);
  await expect(checkout({ api, wx: {}, clientRequestId: 'ck12' })).rejects.toThrow(TypeError);
  expect(api.calls).toHaveLength(0);
});
