/**
 * Checkout: createOrder → the payment UI for the order's channel → poll createOrder `get`
 * until the server says paid. The payment UI's success callback grants nothing: only the
 * server's order status (set from a verified notification or query) does.
 */
const { ApiError } = require('./api');

const PAID = ['paid', 'fulfilled'];
const FINAL_NOT_PAID = ['closed', 'refunded', 'partially_refunded', 'refunding'];

/** Runs the payment UI. Resolves 'done' or 'cancelled'; rejects with an ApiError on failure. */
function runPaymentUi(w, payment) {
  return new Promise((resolve, reject) => {
    if (!payment || !payment.params) {
      reject(new ApiError('BAD_REPLY', 'order has no payment parameters'));
      return;
    }
    const fail = (err) => {
      const msg = (err && err.errMsg) || '';
      const code = err && err.errCode;
      // requestPayment says "requestPayment:fail cancel"; requestVirtualPayment uses errCode -2.
      if (/cancel/i.test(msg) || code === -2) resolve('cancelled');
      else reject(new ApiError('PAYMENT_UI_FAILED', msg || 'payment failed', { status: code }));
    };
    if (payment.channel === 'wxpay') {
      const p = payment.params;
      w.requestPayment({
        timeStamp: p.timeStamp,
        nonceStr: p.nonceStr,
        package: p.package,
        signType: p.signType,
        paySign: p.paySign,
        success: () => resolve('done'),
        fail,
      });
    } else if (payment.channel === 'xpay') {
      if (typeof w.requestVirtualPayment !== 'function') {
        reject(new ApiError('VIRTUAL_PAYMENT_UNSUPPORTED', 'this WeChat cannot take virtual payments'));
        return;
      }
      const p = payment.params;
      // signData goes on as the exact string the server signed.
      w.requestVirtualPayment({
        mode: p.mode,
        signData: p.signData,
        paySig: p.paySig,
        signature: p.signature,
        success: () => resolve('done'),
        fail,
      });
    } else {
      reject(new ApiError('BAD_REPLY', `unknown payment channel ${payment.channel}`));
    }
  });
}

/**
 * Polls `get` until the order is paid or final, or `timeoutMs` passes.
 * Resolves `{order, outcome}` with outcome 'paid', 'closed' (or another final status) or 'pending'.
 */
async function pollOrder(api, orderId, opts) {
  const o = opts || {};
  const interval = o.intervalMs === undefined ? 1500 : o.intervalMs;
  const timeout = o.timeoutMs === undefined ? 60000 : o.timeoutMs;
  const now = o.now || (() => Date.now());
  const sleep = o.sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
  const deadline = now() + timeout;
  let order = null;
  for (;;) {
    const data = await api.call('createOrder', { action: 'get', orderId });
    order = data.order;
    if (o.onUpdate) o.onUpdate(order);
    if (PAID.indexOf(order.status) >= 0) return { order, outcome: 'paid' };
    if (FINAL_NOT_PAID.indexOf(order.status) >= 0) return { order, outcome: order.status };
    if (now() + interval > deadline) return { order, outcome: 'pending' };
    await sleep(interval);
  }
}

/**
 * Waits for the order to be paid: over the realtime socket when one is given (`order.paid`
 * for this order, after one `get` that covers a payment applied before the subscription),
 * else, or when the socket does not come up within `readyMs`, by polling `get`.
 * Resolves like pollOrder.
 */
async function waitForPaid(api, orderId, opts) {
  const o = opts || {};
  const socket = o.realtime;
  if (!socket) return pollOrder(api, orderId, o);
  const timeout = o.timeoutMs === undefined ? 60000 : o.timeoutMs;
  const timers = o.timers || { setTimeout, clearTimeout };
  let stop = () => {};
  let timer = null;
  const paidEvent = new Promise((resolve) => {
    stop = socket.listen((e) => {
      if (e.type === 'order.paid' && e.orderId === orderId) resolve(e);
    });
  });
  try {
    socket.subscribe([`order:${orderId}`]);
    socket.start();
    await socket.ready(o.readyMs === undefined ? 5000 : o.readyMs);
  } catch (e) {
    stop();
    return pollOrder(api, orderId, o);
  }
  try {
    const first = await api.call('createOrder', { action: 'get', orderId });
    if (o.onUpdate) o.onUpdate(first.order);
    if (PAID.indexOf(first.order.status) >= 0) return { order: first.order, outcome: 'paid' };
    if (FINAL_NOT_PAID.indexOf(first.order.status) >= 0) return { order: first.order, outcome: first.order.status };
    const expired = new Promise((resolve) => {
      timer = timers.setTimeout(() => resolve(null), timeout);
    });
    const event = await Promise.race([paidEvent, expired]);
    if (!event) return pollOrder(api, orderId, Object.assign({}, o, { timeoutMs: 0 }));
    const got = await api.call('createOrder', { action: 'get', orderId });
    if (o.onUpdate) o.onUpdate(got.order);
    return { order: got.order, outcome: PAID.indexOf(got.order.status) >= 0 ? 'paid' : got.order.status };
  } finally {
    stop();
    if (timer) timers.clearTimeout(timer);
    socket.unsubscribe([`order:${orderId}`]);
  }
}

/**
 * createOrder `create` data for either `items` (goods, memberships, renewals) or `upgrade`
 * (`{plan, scope?}` from gatedContent changePlan: the server prices the prorated difference).
 */
function createData(params) {
  const { items, upgrade, address, clientRequestId } = params;
  if (!items === !upgrade) throw new TypeError('checkout takes exactly one of items or upgrade');
  const data = { action: 'create', clientRequestId };
  if (items) {
    data.items = items.map((i) => ({ sku: i.sku, quantity: i.quantity }));
  } else {
    data.upgrade = { plan: upgrade.plan };
    if (upgrade.scope) data.upgrade.scope = upgrade.scope;
  }
  if (address) data.address = address;
  return data;
}

/**
 * The whole flow. `items: [{sku, quantity}]` or `upgrade: {plan, scope?}`, `clientRequestId`
 * reused when the user retries the same checkout (the server then returns the same order).
 * Resolves `{order, outcome}` with outcome 'paid', 'pending' (paid UI done but not confirmed
 * yet), 'cancelled' (user closed the payment UI) or a final status such as 'closed'.
 */
async function checkout(params) {
  const { api, onStage } = params;
  const w = params.wx || (typeof wx !== 'undefined' ? wx : undefined);
  const stage = (s, extra) => onStage && onStage(s, extra);
  const data = createData(params);
  stage('creating');
  let created;
  try {
    created = await api.call('createOrder', data);
  } catch (err) {
    if (!err || err.code !== 'SESSION_KEY_MISSING' || typeof api.login !== 'function') throw err;
    // Virtual payment is signed with the user's session_key: a fresh login stores a new one.
    // The resend carries the same clientRequestId, so it is still one order.
    stage('relogin');
    await api.login();
    created = await api.call('createOrder', data);
  }
  let order = created.order;
  if (PAID.indexOf(order.status) >= 0) return { order, outcome: 'paid' };
  stage('paying', { order });
  const ui = await runPaymentUi(w, created.payment);
  stage('confirming', { order });
  if (ui === 'cancelled') {
    // One look: the payment may have gone through before the user closed the sheet.
    const got = await api.call('createOrder', { action: 'get', orderId: order.id });
    order = got.order;
    return { order, outcome: PAID.indexOf(order.status) >= 0 ? 'paid' : 'cancelled' };
  }
  const wait = Object.assign({}, params.poll, { onUpdate: params.onUpdate, realtime: params.realtime });
  return waitForPaid(api, order.id, wait);
}

module.exports = { checkout, pollOrder, waitForPaid, runPaymentUi, PAID };
