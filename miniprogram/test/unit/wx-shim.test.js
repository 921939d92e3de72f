/**
 * The e2e wx shim speaks the wemint-dev protocol documented in README: checked here against a
 * tiny local HTTP server that records what it receives (the real emulator is another crate).
 * @jest-environment node
 */
const http = require('http');
const { createWxShim } = require('../e2e/wx-shim');
const { createApi } = require('../../utils/api');
const { checkout } = require('../../utils/checkout');

let server;
let url;
const seen = [];
let orderStatus = 'created';

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const json = body ? JSON.parse(body) : null;
      seen.push({ path: req.url, auth: req.headers.authorization, body: json });
      const send = (status, obj) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(obj));
      };
      if (req.url === '/dev/login') return send(200, { ok: true, data: { code: `dev-code-${json.openid}` } });
      if (req.url === '/dev/pay') {
        orderStatus = 'paid';
        return send(200, { ok: true, data: { outTradeNo: 'T1', status: 'paid' } });
      }
      if (req.url === '/tcb/callFunction') {
        const { name, data } = json;
        if (name === 'login') return send(200, { ok: true, data: { token: 'tok', expiresAt: 4102444800, user: { openid: 'o-e2e', role: 'user' } } });
        if (name === 'createOrder' && data.action === 'create') {
          return send(200, { ok: true, data: { order: { id: 'o1', status: 'created', channel: 'wxpay', totalFen: 100 }, payment: { channel: 'wxpay', params: { timeStamp: '1', nonceStr: 'n', package: 'prepay_id=p1', signType: 'RSA', paySign: 's' } } } });
        }
        if (name === 'createOrder' && data.action === 'get') return send(200, { ok: true, data: { order: { id: 'o1', status: orderStatus } } });
        return send(404, { ok: false, error: { code: 'NOT_FOUND', message: 'no such function' } });
      }
      return send(404, {});
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${server.address().port}`;
});

afterAll(() => new Promise((r) => server.close(r)));

test('login, call, pay and poll go over HTTP the way README describes', async () => {
  const shim = createWxShim({ devBaseUrl: url, openid: 'o-e2e' });
  let s = null;
  const api = createApi({ wx: shim, config: { mode: 'dev', devBaseUrl: url }, store: { get: () => s, set: (v) => { s = v; } } });
  const result = await checkout({ api, wx: shim, items: [{ sku: 'tee', quantity: 1 }], clientRequestId: 'ck1', poll: { intervalMs: 1, timeoutMs: 2000 } });
  expect(result.outcome).toBe('paid');
  expect(seen[0]).toEqual({ path: '/dev/login', auth: undefined, body: { openid: 'o-e2e' } });
  expect(seen[1]).toEqual({ path: '/tcb/callFunction', auth: undefined, body: { name: 'login', data: { action: 'login', code: 'dev-code-o-e2e' } } });
  expect(seen[2]).toMatchObject({ path: '/tcb/callFunction', auth: 'Bearer tok', body: { name: 'createOrder', data: { action: 'create', clientRequestId: 'ck1' } } });
  expect(seen[3]).toEqual({
    path: '/dev/pay',
    auth: undefined,
    body: { channel: 'wxpay', params: { timeStamp: '1', nonceStr: 'n', package: 'prepay_id=p1', signType: 'RSA', paySign: 's' } },
  });
  expect(seen[4]).toMatchObject({ path: '/tcb/callFunction', auth: 'Bearer tok', body: { name: 'createOrder', data: { action: 'get', orderId: 'o1' } } });
});

test('an error envelope with a non-2xx status still surfaces the stable code', async () => {
  const shim = createWxShim({ devBaseUrl: url, openid: 'o-e2e' });
  const api = createApi({ wx: shim, config: { mode: 'dev', devBaseUrl: url } });
  await expect(api.call('nope', { action: 'x' })).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 });
});

test('an unreachable emulator fails login with WX_LOGIN_FAILED (wx.login itself cannot get a code)', async () => {
  const shim = createWxShim({ devBaseUrl: 'http://127.0.0.1:1', openid: 'o' });
  const api = createApi({ wx: shim, config: { mode: 'dev', devBaseUrl: 'http://127.0.0.1:1', retry: { maxAttempts: 1 } } });
  await expect(api.login()).rejects.toMatchObject({ code: 'WX_LOGIN_FAILED' });
});
