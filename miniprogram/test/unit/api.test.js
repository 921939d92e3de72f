/** @jest-environment node */
const { createApi, ApiError, isRetrySafe, unwrapEnvelope } = require('../../utils/api');
const { fakeWx, ok, err, loginReply } = require('../helpers/fake-wx');

const NOW_MS = 1_800_000_000_000;
const NOW = NOW_MS / 1000;

function memoryStore() {
  let s = null;
  return { get: () => s, set: (v) => { s = v; } };
}

function build(replies, config, extra) {
  const w = fakeWx(replies);
  const sleeps = [];
  const store = memoryStore();
  const api = createApi({
    wx: w,
    store,
    config: Object.assign({ mode: 'dev', devBaseUrl: 'http://dev.local:8787/' }, config),
    now: () => NOW_MS,
    sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    },
    random: () => 0.5,
    ...extra,
  });
  return { api, w, sleeps, store };
}

const http = (body, statusCode) => ({ statusCode: statusCode || 200, data: body });

describe('envelope', () => {
  test('ok → data', () => {
    expect(unwrapEnvelope({ ok: true, data: { a: 1 } }, 200, {})).toEqual({ a: 1 });
    expect(unwrapEnvelope('{"ok":true,"data":[1]}', 200, {})).toEqual([1]);
    expect(unwrapEnvelope({ ok: true }, 200, {})).toBeNull();
  });

  test('error → ApiError with the stable code, message and retryAfterSecs', () => {
    let e;
    try {
      unwrapEnvelope(err('RATE_LIMITED', 'slow down', 7), 429, { fn: 'createOrder', action: 'list' });
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(ApiError);
    expect(e.code).toBe('RATE_LIMITED');
    expect(e.message).toBe('slow down');
    expect(e.retryAfterSecs).toBe(7);
    expect(e.status).toBe(429);
    expect(e.fn).toBe('createOrder');
    expect(e.action).toBe('list');
  });

  test('non-envelope replies are typed client errors', () => {
    expect(() => unwrapEnvelope('<html>bad gateway</html>', 502, {})).toThrow(expect.objectContaining({ code: 'HTTP_ERROR', status: 502 }));
    expect(() => unwrapEnvelope({ hello: 1 }, 200, {})).toThrow(expect.objectContaining({ code: 'BAD_REPLY' }));
    expect(() => unwrapEnvelope({ ok: false }, 400, {})).toThrow(expect.objectContaining({ code: 'BAD_REPLY' }));
  });
});

describe('retry safety', () => {
  test.each([
    ['createOrder', { action: 'get', orderId: 'o' }, true],
    ['createOrder', { action: 'list' }, true],
    ['createOrder', { action: 'catalog' }, true],
    ['createOrder', { action: 'create', clientRequestId: 'ck1', items: [] }, true],
    ['createOrder', { clientRequestId: 'ck1', items: [] }, true],
    ['createOrder', { action: 'create', items: [] }, false],
    ['createOrder', { action: 'cancel', orderId: 'o' }, false],
    ['createOrder', { action: 'refund', orderId: 'o', refundNo: 'r' }, false],
    ['gatedContent', { contentId: 'c' }, true],
    ['gatedContent', { action: 'entitlements' }, true],
    ['ugcUpload', { text: 'hi' }, false],
    ['ugcUpload', { action: 'approve', postId: 'p' }, false],
    ['ugcUpload', { action: 'list' }, true],
    ['login', { action: 'me' }, true],
    ['login', { action: 'invite', openid: 'x', role: 'member' }, false],
  ])('%s %j → %s', (name, data, safe) => {
    expect(isRetrySafe(name, data)).toBe(safe);
  });
});

describe('dev mode transport', () => {
  test('logs in with wx.login, then posts {name, data} with a bearer token', async () => {
    const { api, w } = build([
      loginReply('tok-1', NOW + 3600),
      http(ok({ orders: [], next: null })),
    ]);
    const data = await api.call('createOrder', { action: 'list', limit: 10 });
    expect(data).toEqual({ orders: [], next: null });
    expect(w.loginCalls).toBe(1);
    const [loginCall, listCall] = w.calls;
    expect(loginCall.opts.url).toBe('http://dev.local:8787/tcb/callFunction');
    expect(loginCall.opts.method).toBe('POST');
    expect(loginCall.opts.data).toEqual({ name: 'login', data: { action: 'login', code: 'code-1' } });
    expect(loginCall.opts.header.Authorization).toBeUndefined();
    expect(listCall.opts.data).toEqual({ name: 'createOrder', data: { action: 'list', limit: 10 } });
    expect(listCall.opts.header.Authorization).toBe('Bearer tok-1');
    expect(api.currentUser()).toEqual({ openid: 'o-1', role: 'user' });
  });

  test('a valid session is reused; one about to expire is refreshed first', async () => {
    const { api, w, store } = build([
      http(ok({ order: { id: 'a' } })),
      loginReply('tok-2', NOW + 7200),
      http(ok({ order: { id: 'b' } })),
    ]);
    store.set({ token: 'tok-1', expiresAt: NOW + 3600, user: null });
    await api.call('createOrder', { action: 'get', orderId: 'a' });
    expect(w.loginCalls).toBe(0);
    store.set({ token: 'tok-1', expiresAt: NOW + 30, user: null }); // inside the 60 s skew
    await api.call('createOrder', { action: 'get', orderId: 'b' });
    expect(w.loginCalls).toBe(1);
    expect(w.calls[2].opts.header.Authorization).toBe('Bearer tok-2');
  });

  test('UNAUTHENTICATED → one fresh login and one resend, even for a write', async () => {
    const { api, w, store } = build([
      http(err('UNAUTHENTICATED'), 401),
      loginReply('tok-2', NOW + 7200),
      http(ok({ order: { id: 'o1', status: 'closed' } })),
    ]);
    store.set({ token: 'stale', expiresAt: NOW + 3600, user: null });
    const data = await api.call('createOrder', { action: 'cancel', orderId: 'o1' });
    expect(data.order.status).toBe('closed');
    expect(w.calls.map((c) => c.opts.header.Authorization)).toEqual(['Bearer stale', undefined, 'Bearer tok-2']);
  });

  test('UNAUTHENTICATED twice is surfaced, not looped', async () => {
    const { api, store } = build([
      http(err('UNAUTHENTICATED'), 401),
      loginReply('tok-2', NOW + 7200),
      http(err('UNAUTHENTICATED'), 401),
    ]);
    store.set({ token: 'stale', expiresAt: NOW + 3600, user: null });
    await expect(api.call('createOrder', { action: 'get', orderId: 'x' })).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  test('concurrent calls share one login', async () => {
    const { api, w } = build([
      loginReply('tok-1', NOW + 3600),
      http(ok({ n: 1 })),
      http(ok({ n: 2 })),
    ]);
    const [a, b] = await Promise.all([
      api.call('gatedContent', { action: 'list' }),
      api.call('gatedContent', { action: 'entitlements' }),
    ]);
    expect([a.n, b.n].sort()).toEqual([1, 2]);
    expect(w.loginCalls).toBe(1);
  });
});

describe('retries', () => {
  const session = (store) => store.set({ token: 't', expiresAt: NOW + 3600, user: null });

  test('RATE_LIMITED on a read waits retryAfterSecs, then succeeds', async () => {
    const { api, sleeps, store } = build([
      http(err('RATE_LIMITED', 'slow', 3), 429),
      http(ok({ orders: [] })),
    ]);
    session(store);
    await expect(api.call('createOrder', { action: 'list' })).resolves.toEqual({ orders: [] });
    expect(sleeps).toEqual([3000]);
  });

  test('RATE_LIMITED asking for longer than the cap is not waited out', async () => {
    const { api, sleeps, store } = build([http(err('RATE_LIMITED', 'slow', 600), 429)]);
    session(store);
    await expect(api.call('createOrder', { action: 'list' })).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterSecs: 600 });
    expect(sleeps).toEqual([]);
  });

  test('network failures on a read back off exponentially, up to maxAttempts', async () => {
    const fail = { fail: { errMsg: 'request:fail timeout' } };
    const { api, sleeps, store, w } = build([fail, fail, fail]);
    session(store);
    await expect(api.call('gatedContent', { contentId: 'c1' })).rejects.toMatchObject({ code: 'NETWORK_ERROR', message: 'request:fail timeout' });
    expect(w.calls).toHaveLength(3);
    // base 300 ms × 2^(n-1) × (0.5 + 0.5/2)
    expect(sleeps).toEqual([225, 450]);
  });

  test('create with a clientRequestId is resent with the same id', async () => {
    const { api, w, store } = build([
      { fail: { errMsg: 'request:fail' } },
      http(ok({ order: { id: 'o1' }, payment: {} })),
    ]);
    session(store);
    const data = { action: 'create', clientRequestId: 'ck-42', items: [{ sku: 'tee', quantity: 1 }] };
    await api.call('createOrder', data);
    expect(w.calls).toHaveLength(2);
    expect(w.calls[0].opts.data).toEqual(w.calls[1].opts.data);
    expect(w.calls[1].opts.data.data.clientRequestId).toBe('ck-42');
  });

  test.each([
    ['refund', { action: 'refund', orderId: 'o', refundNo: 'r1' }],
    ['cancel', { action: 'cancel', orderId: 'o' }],
    ['create without clientRequestId', { action: 'create', items: [] }],
  ])('%s is never retried blindly', async (_label, data) => {
    const { api, w, store, sleeps } = build([{ fail: { errMsg: 'request:fail' } }, http(ok({}))]);
    session(store);
    await expect(api.call('createOrder', data)).rejects.toMatchObject({ code: 'NETWORK_ERROR' });
    expect(w.calls).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  test('business errors are not retried even on reads', async () => {
    const { api, w, store } = build([http(err('ORDER_NOT_FOUND'), 404), http(ok({}))]);
    session(store);
    await expect(api.call('createOrder', { action: 'get', orderId: 'x' })).rejects.toMatchObject({ code: 'ORDER_NOT_FOUND' });
    expect(w.calls).toHaveLength(1);
  });

  test('a 503 without an envelope on a read is retried', async () => {
    const { api, w, store } = build([http('Service Unavailable', 503), http(ok({ contents: [] }))]);
    session(store);
    await expect(api.call('gatedContent', { action: 'list' })).resolves.toEqual({ contents: [] });
    expect(w.calls).toHaveLength(2);
  });

  test('login retries with a fresh code each time', async () => {
    const { api, w } = build([
      http(err('WECHAT_BUSY'), 503),
      loginReply('tok', NOW + 3600),
    ]);
    await api.login();
    expect(w.calls.map((c) => c.opts.data.data.code)).toEqual(['code-1', 'code-2']);
  });

  test('login with a phoneCode sends it once and is not retried (the code is single-use)', async () => {
    const { api, w } = build([http(err('WECHAT_BUSY'), 503), loginReply('tok', NOW + 3600)]);
    await expect(api.login({ phoneCode: 'pc-1' })).rejects.toMatchObject({ code: 'WECHAT_BUSY' });
    expect(w.calls).toHaveLength(1);
    expect(w.calls[0].opts.data.data).toEqual({ action: 'login', code: 'code-1', phoneCode: 'pc-1' });
  });

  test('INVALID_CODE from login is surfaced', async () => {
    const { api } = build([http(err('INVALID_CODE'), 400)]);
    await expect(api.login()).rejects.toMatchObject({ code: 'INVALID_CODE' });
  });
});

describe('other transports', () => {
  test('event mode: wx.cloud.callFunction with the token in data.token', async () => {
    const { api, w } = build(
      [{ result: ok({ token: 'tok', expiresAt: NOW + 3600, user: null }) }, { result: ok({ contents: [] }) }],
      { mode: 'event', env: 'prod-1' },
    );
    await api.call('gatedContent', { action: 'list' });
    expect(w.calls[0].kind).toBe('callFunction');
    expect(w.calls[0].opts).toMatchObject({ name: 'login', data: { action: 'login', code: 'code-1' }, config: { env: 'prod-1' } });
    expect(w.calls[0].opts.data.token).toBeUndefined();
    expect(w.calls[1].opts).toMatchObject({ name: 'gatedContent', data: { action: 'list', token: 'tok' } });
  });

  test('event mode: a function error envelope becomes an ApiError', async () => {
    const { api, store } = build([{ result: err('CONTENT_NOT_FOUND', 'no such content') }], { mode: 'event' });
    store.set({ token: 't', expiresAt: NOW + 3600 });
    await expect(api.call('gatedContent', { contentId: 'nope' })).rejects.toMatchObject({ code: 'CONTENT_NOT_FOUND', message: 'no such content' });
  });

  test('http mode: callHTTPFunction with Authorization: Bearer', async () => {
    const { api, w, store } = build([http(ok({ posts: [] }))], { mode: 'http', env: 'e1' });
    store.set({ token: 't', expiresAt: NOW + 3600 });
    await api.call('ugcUpload', { action: 'list' });
    expect(w.calls[0].kind).toBe('callHTTPFunction');
    expect(w.calls[0].opts).toMatchObject({
      name: 'ugcUpload',
      path: '/list',
      method: 'POST',
      header: { Authorization: 'Bearer t' },
      data: { action: 'list' },
      config: { env: 'e1' },
    });
  });

  test('container mode: callContainer to the function\'s service, the action in the path', async () => {
    const { api, w, store } = build(
      [http(ok({ user: { role: 'admin' } })), http(ok({ orders: [] })), http(ok({ order: {} }))],
      { mode: 'container', container: { services: { gatedContent: 'paywall-svc' } } },
    );
    store.set({ token: 't', expiresAt: NOW + 3600 });
    await api.call('login', { action: 'me' });
    expect(w.calls[0].kind).toBe('callContainer');
    expect(w.calls[0].opts).toMatchObject({
      path: '/me',
      header: { 'X-WX-SERVICE': 'login', Authorization: 'Bearer t' },
      data: { action: 'me' },
    });
    await api.call('createOrder', { action: 'list' });
    expect(w.calls[1].opts).toMatchObject({ path: '/list', header: { 'X-WX-SERVICE': 'create-order' } });
    await api.call('gatedContent', { contentId: 'c1' });
    // no action given: the function's default action is spelled out in the path
    expect(w.calls[2].opts).toMatchObject({ path: '/get', header: { 'X-WX-SERVICE': 'paywall-svc' }, data: { contentId: 'c1' } });
  });

  test('httpPath appends the action to the prefix', () => {
    const { httpPath } = require('../../utils/api');
    expect(httpPath('/', 'me')).toBe('/me');
    expect(httpPath('/api/', 'list')).toBe('/api/list');
    expect(httpPath('', 'get')).toBe('/get');
  });

  test('an unknown mode is a typed error', async () => {
    const { api, store } = build([], { mode: 'carrier-pigeon' });
    store.set({ token: 't', expiresAt: NOW + 3600 });
    await expect(api.call('login', { action: 'me' })).rejects.toMatchObject({ code: 'NOT_CONFIGURED' });
  });
});

describe('session helpers', () => {
  test('replaceToken keeps expiry and user; refreshUser reads me', async () => {
    const { api, store } = build([http(ok({ user: { openid: 'o', role: 'user', tenant: { id: 't1' } } }))]);
    store.set({ token: 'a', expiresAt: NOW + 3600, user: { openid: 'o', role: 'user' } });
    api.replaceToken('b');
    expect(store.get()).toEqual({ token: 'b', expiresAt: NOW + 3600, user: { openid: 'o', role: 'user' } });
    await api.refreshUser();
    expect(api.currentUser().tenant).toEqual({ id: 't1' });
  });

  test('uploadFile in dev mode posts multipart with the token and returns the fileID', async () => {
    const { api, w, store } = build([http(JSON.stringify(ok({ fileID: 'cloud://dev/ugc/o/1.jpg' })))]);
    store.set({ token: 't', expiresAt: NOW + 3600 });
    await expect(api.uploadFile('/tmp/1.jpg', 'ugc/o/1.jpg')).resolves.toBe('cloud://dev/ugc/o/1.jpg');
    expect(w.calls[0].kind).toBe('uploadFile');
    expect(w.calls[0].opts).toMatchObject({
      url: 'http://dev.local:8787/tcb/uploadFile',
      filePath: '/tmp/1.jpg',
      name: 'file',
      formData: { cloudPath: 'ugc/o/1.jpg' },
      header: { Authorization: 'Bearer t' },
    });
  });

  test('uploadFile in cloud modes uses wx.cloud.uploadFile', async () => {
    const { api, w } = build([{ fileID: 'cloud://env/ugc/x.jpg' }], { mode: 'event', env: 'e' });
    await expect(api.uploadFile('/tmp/x.jpg', 'ugc/o/x.jpg')).resolves.toBe('cloud://env/ugc/x.jpg');
    expect(w.calls[0].opts).toMatchObject({ cloudPath: 'ugc/o/x.jpg', filePath: '/tmp/x.jpg', config: { env: 'e' } });
  });

  test('nothing is written to wx storage', async () => {
    const { api, w } = build([loginReply('secret-token', NOW + 3600), http(ok({}))]);
    w.setStorage = jest.fn();
    w.setStorageSync = jest.fn();
    await api.call('login', { action: 'me' });
    expect(w.setStorage).not.toHaveBeenCalled();
    expect(w.setStorageSync).not.toHaveBeenCalled();
  });
});
