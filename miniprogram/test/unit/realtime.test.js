/** @jest-environment node */
const { RealtimeClient } = require('../../utils/realtime');
const { waitForPaid } = require('../../utils/checkout');

/** A wx whose connectSocket hands out scripted socket tasks the test drives. */
function fakeSocketWx() {
  const sockets = [];
  const w = {
    sockets,
    connectSocket(opts) {
      const handlers = {};
      const task = {
        opts,
        sent: [],
        closedWith: null,
        onOpen: (f) => (handlers.open = f),
        onMessage: (f) => (handlers.message = f),
        onClose: (f) => (handlers.close = f),
        onError: (f) => (handlers.error = f),
        send: ({ data }) => task.sent.push(JSON.parse(data)),
        close: (c) => (task.closedWith = c),
        // Test side:
        open: () => handlers.open(),
        push: (obj) => handlers.message({ data: JSON.stringify(obj) }),
        drop: (code) => handlers.close({ code: code || 1006, reason: '' }),
      };
      sockets.push(task);
      return task;
    },
  };
  return w;
}

const flush = () => new Promise((r) => setImmediate(r));
const ev = (seq, type, extra) => Object.assign({ seq, type, at: 1, data: {} }, extra || {});

function client(w, extra) {
  const seen = [];
  const statuses = [];
  const c = new RealtimeClient(
    Object.assign(
      {
        wx: w,
        url: 'wss://rt.example/',
        getToken: async () => 'tok-1',
        topics: ['orders'],
        onEvent: (e) => seen.push(e),
        onStatus: (s) => statuses.push(s),
        random: () => 0.5,
      },
      extra || {},
    ),
  );
  return { c, seen, statuses };
}

beforeEach(() => jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick'] }));
afterEach(() => jest.useRealTimers());

test('connects with the session token and subscribes its topics', async () => {
  const w = fakeSocketWx();
  const { c, statuses } = client(w);
  c.start();
  await flush();
  expect(w.sockets).toHaveLength(1);
  expect(w.sockets[0].opts.header).toEqual({ Authorization: 'Bearer tok-1' });
  w.sockets[0].open();
  expect(w.sockets[0].sent[0]).toEqual({ op: 'subscribe', topics: ['orders'] });
  w.sockets[0].push({ type: 'subscribed', topics: ['orders'], refused: [], head: 4 });
  expect(statuses).toEqual(['connecting', 'open']);
});

test('after a drop it reconnects with backoff and resumes after the last seq, without duplicates', async () => {
  const w = fakeSocketWx();
  const { c, seen } = client(w);
  c.start();
  await flush();
  w.sockets[0].open();
  w.sockets[0].push({ type: 'subscribed', topics: ['orders'], refused: [] });
  w.sockets[0].push({ type: 'events', events: [ev(3, 'order.paid'), ev(5, 'order.paid')] });
  w.sockets[0].drop();
  // Backoff: base 500 ms × (0.5 + 0.5) jitter = 500 ms before the first retry.
  jest.advanceTimersByTime(499);
  await flush();
  expect(w.sockets).toHaveLength(1);
  jest.advanceTimersByTime(1);
  await flush();
  expect(w.sockets).toHaveLength(2);
  w.sockets[1].open();
  expect(w.sockets[1].sent[0]).toEqual({ op: 'subscribe', topics: ['orders'], after: 5 });
  w.sockets[1].push({ type: 'subscribed', topics: ['orders'], refused: [] });
  // A replay overlapping what was seen is handed out once.
  w.sockets[1].push({ type: 'events', events: [ev(5, 'order.paid'), ev(6, 'order.paid'), ev(8, 'order.paid')] });
  expect(seen.map((e) => e.seq)).toEqual([3, 5, 6, 8]);
});

test('backoff doubles up to the cap and resets once subscribed', async () => {
  const w = fakeSocketWx();
  const { c } = client(w, { options: { baseDelayMs: 100, maxDelayMs: 350 } });
  expect([0, 1, 2, 3].map((n) => c.delay(n))).toEqual([100, 200, 350, 350]);
  c.start();
  await flush();
  for (let i = 0; i < 3; i += 1) {
    w.sockets[i].drop();
    jest.advanceTimersByTime(400);
    await flush();
  }
  expect(c.attempt).toBe(3);
  w.sockets[3].open();
  w.sockets[3].push({ type: 'subscribed', topics: ['orders'], refused: [] });
  expect(c.attempt).toBe(0);
});

test('onHide closes and keeps the position; onShow resumes from it', async () => {
  const w = fakeSocketWx();
  const { c } = client(w);
  c.start();
  await flush();
  w.sockets[0].open();
  w.sockets[0].push({ type: 'subscribed', topics: ['orders'], refused: [] });
  w.sockets[0].push({ type: 'events', events: [ev(9, 'order.paid')] });
  c.hide();
  expect(w.sockets[0].closedWith).toEqual({ code: 1000, reason: 'hidden' });
  // A close event after hide schedules nothing.
  w.sockets[0].drop(1000);
  jest.advanceTimersByTime(60000);
  await flush();
  expect(w.sockets).toHaveLength(1);
  c.show();
  await flush();
  expect(w.sockets).toHaveLength(2);
  w.sockets[1].open();
  expect(w.sockets[1].sent[0].after).toBe(9);
});

test('heartbeat pings while open; revoked topics are dropped; resync is reported', async () => {
  const w = fakeSocketWx();
  const revoked = [];
  const resyncs = [];
  const { c } = client(w, {
    topics: ['tenant:t1', 'posts'],
    onRevoked: (t) => revoked.push(t),
    onResync: (o) => resyncs.push(o),
  });
  c.start();
  await flush();
  w.sockets[0].open();
  w.sockets[0].push({ type: 'subscribed', topics: ['tenant:t1', 'posts'], refused: [] });
  jest.advanceTimersByTime(20000);
  expect(w.sockets[0].sent.filter((m) => m.op === 'ping')).toHaveLength(1);
  w.sockets[0].push({ type: 'revoked', topic: 'tenant:t1', code: 'FORBIDDEN' });
  expect(revoked).toEqual(['tenant:t1']);
  expect(c.topics).toEqual(['posts']);
  w.sockets[0].push({ type: 'resync', oldest: 40 });
  expect(resyncs).toEqual([40]);
  c.stop();
  jest.advanceTimersByTime(60000);
  expect(w.sockets[0].sent.filter((m) => m.op === 'ping')).toHaveLength(1);
});

test('checkout waits for order.paid on the socket, then confirms with get', async () => {
  const w = fakeSocketWx();
  const { c } = client(w, { topics: [] });
  const statuses = ['created', 'paid'];
  const api = { call: jest.fn(async () => ({ order: { id: 'o1', status: statuses.shift() } })) };
  const done = waitForPaid(api, 'o1', { realtime: c, timeoutMs: 60000 });
  await flush();
  w.sockets[0].open();
  expect(w.sockets[0].sent[0]).toEqual({ op: 'subscribe', topics: ['order:o1'] });
  w.sockets[0].push({ type: 'subscribed', topics: ['order:o1'], refused: [] });
  await flush();
  expect(api.call).toHaveBeenCalledTimes(1);
  w.sockets[0].push({ type: 'events', events: [ev(2, 'order.paid', { orderId: 'other' }), ev(3, 'order.paid', { orderId: 'o1' })] });
  const r = await done;
  expect(r.outcome).toBe('paid');
  expect(api.call).toHaveBeenCalledTimes(2);
  expect(w.sockets[0].sent[1]).toEqual({ op: 'unsubscribe', topics: ['order:o1'] });
});

test('checkout falls back to polling when the socket cannot connect', async () => {
  const w = {
    connectSocket: (opts) => {
      const task = { onOpen() {}, onMessage() {}, onClose() {}, onError() {}, send() {}, close() {} };
      opts.fail({ errMsg: 'connectSocket:fail' });
      return task;
    },
  };
  const { c } = client(w, { topics: [] });
  const statuses = ['created', 'paid'];
  const api = { call: jest.fn(async () => ({ order: { id: 'o1', status: statuses.shift() } })) };
  const done = waitForPaid(api, 'o1', { realtime: c, readyMs: 1000, intervalMs: 10, sleep: () => Promise.resolve() });
  await flush();
  jest.advanceTimersByTime(1000);
  const r = await done;
  expect(r.outcome).toBe('paid');
  expect(api.call).toHaveBeenCalledTimes(2);
  c.stop();
});
