/**
 * A `wx` for Node that talks to a running wemint-dev over real HTTP, standing in for the
 * WeChat client: wx.login gets a dev code, wx.request is fetch, and the payment sheets ask the
 * emulator to pay (as WeChat would after the user confirms). See README "End-to-end test".
 */
const fs = require('fs');
const path = require('path');

function base(url) {
  return String(url).replace(/\/+$/, '');
}

/** POST JSON; resolves {statusCode, data} with data parsed when it is JSON. */
async function postJson(url, body, headers) {
  const res = await fetch(url, {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, headers || {}),
    body: JSON.stringify(body),
  });
  const raw = await res.text();
  let data = raw;
  try {
    data = JSON.parse(raw);
  } catch (e) {
    // not JSON: hand the text on
  }
  return { statusCode: res.status, data, header: Object.fromEntries(res.headers.entries()) };
}

/** The emulator may answer its dev endpoints with an envelope or plain JSON; accept both. */
function payload(data) {
  if (data && typeof data === 'object' && typeof data.ok === 'boolean') return data.ok ? data.data : null;
  return data;
}

function createWxShim(options) {
  const devBaseUrl = base(options.devBaseUrl);
  const openid = options.openid;
  const log = options.log || (() => {});

  const callbacks = (promise, opts) =>
    promise.then(
      (r) => opts.success && opts.success(r),
      (e) => opts.fail && opts.fail({ errMsg: `${opts.api}:fail ${e && e.message ? e.message : e}` }),
    );

  const pay = (channel, params, api, opts) =>
    callbacks(
      (async () => {
        const r = await postJson(`${devBaseUrl}/dev/pay`, { channel, params });
        log(`${api} → /dev/pay ${r.statusCode}`);
        if (r.statusCode < 200 || r.statusCode > 299 || (r.data && r.data.ok === false)) {
          throw new Error(`dev pay refused (${r.statusCode}): ${JSON.stringify(r.data)}`);
        }
        return { errMsg: `${api}:ok` };
      })(),
      Object.assign({ api }, opts),
    );

  return {
    login(opts) {
      callbacks(
        (async () => {
          const r = await postJson(`${devBaseUrl}/dev/login`, openid ? { openid } : {});
          const data = payload(r.data);
          if (r.statusCode !== 200 || !data || !data.code) throw new Error(`dev login failed (${r.statusCode}): ${JSON.stringify(r.data)}`);
          return { code: data.code, errMsg: 'login:ok' };
        })(),
        Object.assign({ api: 'login' }, opts),
      );
    },
    request(opts) {
      callbacks(
        (async () => {
          const r = await postJson(opts.url, opts.data, opts.header);
          log(`request ${opts.data && opts.data.name}.${opts.data && opts.data.data && opts.data.data.action} → ${r.statusCode}`);
          return r;
        })(),
        Object.assign({ api: 'request' }, opts),
      );
    },
    uploadFile(opts) {
      callbacks(
        (async () => {
          const form = new FormData();
          Object.entries(opts.formData || {}).forEach(([k, v]) => form.append(k, v));
          form.append(opts.name, new Blob([fs.readFileSync(opts.filePath)]), path.basename(opts.filePath));
          const res = await fetch(opts.url, { method: 'POST', headers: opts.header, body: form });
          return { statusCode: res.status, data: await res.text() };
        })(),
        Object.assign({ api: 'uploadFile' }, opts),
      );
    },
    requestPayment(opts) {
      const { timeStamp, nonceStr, signType, paySign } = opts;
      pay('wxpay', { timeStamp, nonceStr, package: opts.package, signType, paySign }, 'requestPayment', opts);
    },
    requestVirtualPayment(opts) {
      const { mode, signData, paySig, signature } = opts;
      pay('xpay', { mode, signData, paySig, signature }, 'requestVirtualPayment', opts);
    },
  };
}

module.exports = { createWxShim };
