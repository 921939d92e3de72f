// The payNotify handler a CloudBase Node user would write, for scripts/bench.sh's peer
// comparison: wx-server-sdk loaded and initialised as in any cloud function, and
// wechatpay-axios-plugin doing what wemint's payNotify does before it touches its store:
// check the Wechatpay-* headers and timestamp window, verify the RSA-SHA256 signature over
// `timestamp\nnonce\nbody\n`, decrypt the AES-256-GCM resource with the APIv3 key and parse
// it. It does no database work.
//
// Run modes, chosen like wemint's: SCF custom runtime when SCF_RUNTIME_API is set (init/ready,
// then next → response), else an HTTP server on $PORT (default 9000).
'use strict';

const fs = require('fs');
const http = require('http');
const cloud = require('wx-server-sdk');
const { Wechatpay, Rsa, Aes, Formatter } = require('wechatpay-axios-plugin');

cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });

const publicKey = Rsa.from(fs.readFileSync(process.env.WECHATPAY_PUBLIC_KEY_FILE, 'utf8'), Rsa.KEY_TYPE_PUBLIC);
const publicKeyId = process.env.WECHATPAY_PUBLIC_KEY_ID;
const apiv3Key = process.env.WECHATPAY_APIV3_KEY;
const mchid = process.env.WECHATPAY_MCHID;
const appid = process.env.WECHAT_APPID;
const WINDOW_SECS = 300;

function reply(statusCode, message) {
  return { statusCode, body: message ? JSON.stringify({ code: 'FAIL', message }) : '' };
}

// headers: lower-case names; body: the exact string received.
function payNotify(headers, body) {
  const timestamp = headers['wechatpay-timestamp'];
  const nonce = headers['wechatpay-nonce'];
  const signature = headers['wechatpay-signature'];
  const serial = headers['wechatpay-serial'];
  if (!timestamp || !nonce || !signature || !serial) return reply(401, 'missing signature headers');
  if (serial !== publicKeyId) return reply(401, 'unknown serial');
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > WINDOW_SECS) return reply(401, 'stale');
  if (!Rsa.verify(Formatter.response(timestamp, nonce, body), signature, publicKey)) {
    return reply(401, 'signature check failed');
  }
  let envelope;
  let transaction;
  try {
    envelope = JSON.parse(body);
    const r = envelope.resource;
    if (r.algorithm !== 'AEAD_AES_256_GCM') return reply(400, 'algorithm');
    transaction = JSON.parse(Aes.AesGcm.decrypt(r.ciphertext, apiv3Key, r.nonce, r.associated_data || ''));
  } catch (e) {
    return reply(400, 'malformed notification');
  }
  if (envelope.event_type !== 'TRANSACTION.SUCCESS') return reply(204);
  if (transaction.mchid !== mchid || transaction.appid !== appid || !transaction.out_trade_no) {
    return reply(400, 'not ours');
  }
  return reply(204);
}

function serveHttp() {
  const port = Number(process.env.PORT || 9000);
  http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const out = req.method === 'POST' && req.url.startsWith('/payNotify')
        ? payNotify(req.headers, Buffer.concat(chunks).toString('utf8'))
        : reply(404, 'not found');
      res.writeHead(out.statusCode, { 'content-type': 'application/json' });
      res.end(out.body);
    });
  }).listen(port, '0.0.0.0');
}

// createOrder's peer: the JSAPI prepay through the plugin's client (request signed with the
// merchant key, answer verified with the WeChat Pay public key), then the `wx.requestPayment`
// parameters signed with the merchant key. Priced from a constant: no database here either.
const merchantKey = Rsa.from(fs.readFileSync(process.env.WECHATPAY_PRIVATE_KEY_FILE, 'utf8'), Rsa.KEY_TYPE_PRIVATE);
const wxpay = new Wechatpay({
  mchid,
  serial: process.env.WECHATPAY_MERCHANT_SERIAL,
  privateKey: merchantKey,
  certs: { [publicKeyId]: publicKey },
  baseURL: `${process.env.WECHATPAY_API_BASE || 'https://api.mch.weixin.qq.com'}/`,
});

async function checkout(openid) {
  const outTradeNo = `N${Date.now()}${Math.random().toString(36).slice(2, 10)}`;
  const res = await wxpay.v3.pay.transactions.jsapi.post({
    appid, mchid, description: 'Brewing guide', out_trade_no: outTradeNo,
    notify_url: process.env.WECHATPAY_NOTIFY_URL || 'https://example.com/payNotify',
    amount: { total: 990, currency: 'CNY' }, payer: { openid },
  });
  const timeStamp = `${Formatter.timestamp()}`;
  const nonceStr = Formatter.nonce();
  const pkg = `prepay_id=${res.data.prepay_id}`;
  const paySign = Rsa.sign(Formatter.joinedByLineFeed(appid, timeStamp, nonceStr, pkg), merchantKey);
  return { ok: true, data: { outTradeNo, payment: { timeStamp, nonceStr, package: pkg, signType: 'RSA', paySign } } };
}

// SCF custom runtime API client.
function api(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: process.env.SCF_RUNTIME_API,
      port: Number(process.env.SCF_RUNTIME_API_PORT || 9001),
      method,
      path,
      headers: body === undefined ? {} : { 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function handleEvent(event) {
  if (event && event.httpMethod) {
    const headers = {};
    for (const [k, v] of Object.entries(event.headers || {})) headers[k.toLowerCase()] = v;
    const body = event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : (event.body || '');
    const out = payNotify(headers, body);
    return { statusCode: out.statusCode, headers: { 'content-type': 'application/json' }, body: out.body, isBase64Encoded: false };
  }
  if (event && event.action === 'create') {
    const openid = event.userInfo && event.userInfo.openId;
    if (!openid) return { ok: false, error: { code: 'UNAUTHENTICATED', message: 'no caller' } };
    try {
      return await checkout(openid);
    } catch (e) {
      return { ok: false, error: { code: 'PROVIDER', message: String(e && e.message) } };
    }
  }
  return { ok: true, data: { name: 'payNotify', mode: 'scf-event' } };
}

async function serveScf() {
  await api('POST', '/runtime/init/ready', ' ');
  for (;;) {
    const event = JSON.parse(await api('GET', '/runtime/invocation/next'));
    await api('POST', '/runtime/invocation/response', JSON.stringify(await handleEvent(event)));
  }
}

if (process.env.SCF_RUNTIME_API) {
  serveScf().catch((e) => { console.error(e); process.exit(1); });
} else {
  serveHttp();
}
