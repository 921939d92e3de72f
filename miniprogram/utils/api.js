/**
 * The one way the Mini Program talks to the wemint functions (docs/api.md).
 *
 * - The transport is chosen by config.mode: CloudBase event functions (`wx.cloud.callFunction`,
 *   token in `data.token`), HTTP functions (`wx.cloud.callHTTPFunction`) or CloudBase Run
 *   (`wx.cloud.callContainer`) with `Authorization: Bearer`, or `wx.request` to `wemint-dev`.
 * - Every reply envelope becomes resolved `data` or a thrown `ApiError` carrying the stable code.
 * - The session token lives in memory only (app globalData); it is refreshed before expiry and
 *   once on UNAUTHENTICATED. Nothing is written to wx storage.
 * - Only safe calls are retried: read-only actions, and createOrder `create` that carries a
 *   clientRequestId (the server dedupes on it). `cancel`, `refund` and other writes never are.
 */
const defaultConfig = require('../config');

/** A failed call. `code` is the server's stable code or one of CLIENT_CODES. */
class ApiError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = 'ApiError';
    this.code = code;
    const x = extra || {};
    if (x.retryAfterSecs !== undefined) this.retryAfterSecs = x.retryAfterSecs;
    if (x.status !== undefined) this.status = x.status;
    if (x.fn) this.fn = x.fn;
    if (x.action) this.action = x.action;
  }
}

/** Codes raised on the client side, never by a function. */
const CLIENT_CODES = Object.freeze({
  NETWORK_ERROR: 'NETWORK_ERROR', // the request did not complete (offline, timeout, gateway fail)
  HTTP_ERROR: 'HTTP_ERROR', // a non-2xx reply without an envelope (`status` is set)
  BAD_REPLY: 'BAD_REPLY', // a reply that is not an envelope
  WX_LOGIN_FAILED: 'WX_LOGIN_FAILED', // wx.login itself failed
  NOT_CONFIGURED: 'NOT_CONFIGURED', // config.mode unknown or the needed wx API is missing
});

/** The action each function runs when `action` is absent. */
const DEFAULT_ACTION = Object.freeze({
  login: 'login',
  createOrder: 'create',
  gatedContent: 'get',
  ugcUpload: 'create',
});

/** Actions that change nothing, so they can be sent again freely. */
const READ_ONLY = Object.freeze({
  login: ['me', 'members'],
  createOrder: ['catalog', 'list', 'get', 'search', 'shipments'],
  gatedContent: ['get', 'list', 'entitlements'],
  ugcUpload: ['list', 'queue'],
  analytics: ['dashboard'],
});

/** Codes worth another attempt of a safe call. */
const RETRYABLE_CODES = new Set(['NETWORK_ERROR', 'RATE_LIMITED', 'WECHAT_BUSY', 'INTERNAL', 'TIMEOUT']);

function actionOf(name, data) {
  return (data && data.action) || DEFAULT_ACTION[name] || '';
}

/** createOrder → create-order: the crate / service name of a deployed function. */
function kebab(name) {
  return String(name).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * HTTP path for a call. The function runtime takes the action from the last path segment
 * (docs/runtime.md), so the action is always spelled out there: `/login` would otherwise
 * select login's `login` action whatever `data.action` says.
 */
function httpPath(prefix, action) {
  const p = String(prefix || '/').replace(/\/+$/, '');
  return action ? `${p}/${action}` : p || '/';
}

/** Whether sending this call twice can do no harm. */
function isRetrySafe(name, data) {
  const action = actionOf(name, data);
  if ((READ_ONLY[name] || []).indexOf(action) >= 0) return true;
  return name === 'createOrder' && action === 'create' && !!(data && data.clientRequestId);
}

function isRetryable(err) {
  if (!(err instanceof ApiError)) return false;
  if (err.code === 'HTTP_ERROR') return err.status === 429 || err.status === 502 || err.status === 503 || err.status === 504;
  return RETRYABLE_CODES.has(err.code);
}

/** Turns a reply body (object or JSON text) into `{data}` or throws the ApiError it carries. */
function unwrapEnvelope(body, status, ctx) {
  let b = body;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b);
    } catch (e) {
      b = undefined;
    }
  }
  const isEnvelope = b && typeof b === 'object' && typeof b.ok === 'boolean';
  if (!isEnvelope) {
    if (status !== undefined && (status < 200 || status > 299)) {
      throw new ApiError(CLIENT_CODES.HTTP_ERROR, `HTTP ${status}`, { status, fn: ctx.fn, action: ctx.action });
    }
    throw new ApiError(CLIENT_CODES.BAD_REPLY, 'reply is not a wemint envelope', { status, fn: ctx.fn, action: ctx.action });
  }
  if (b.ok) return b.data === undefined ? null : b.data;
  const e = b.error && typeof b.error === 'object' ? b.error : {};
  const code = typeof e.code === 'string' && e.code ? e.code : CLIENT_CODES.BAD_REPLY;
  const extra = { status, fn: ctx.fn, action: ctx.action };
  if (typeof e.retryAfterSecs === 'number') extra.retryAfterSecs = e.retryAfterSecs;
  throw new ApiError(code, typeof e.message === 'string' ? e.message : code, extra);
}

/** Calls a callback-style wx API as a promise. */
function wxCall(fn, options) {
  return new Promise((resolve, reject) => {
    fn(Object.assign({}, options, { success: resolve, fail: reject }));
  });
}

function failMessage(err) {
  if (!err) return 'request failed';
  return err.errMsg || err.message || String(err);
}

function merge(base, over) {
  const out = Object.assign({}, base, over);
  ['retry', 'poll', 'http', 'container'].forEach((k) => {
    out[k] = Object.assign({}, base[k], over && over[k]);
  });
  return out;
}

/** Session holder in app globalData when there is an app, else in this module's memory. */
function defaultStore() {
  const local = { session: null };
  const holder = () => {
    if (typeof getApp === 'function') {
      const app = getApp();
      if (app && app.globalData) return app.globalData;
    }
    return local;
  };
  return {
    get: () => holder().session || null,
    set: (s) => {
      holder().session = s;
    },
  };
}

/**
 * Builds a client. Everything outside is injectable so tests are exact:
 * `{wx, config, store, now (ms), sleep (ms → promise), random ([0,1))}`.
 */
function createApi(options) {
  const o = options || {};
  const w = o.wx || (typeof wx !== 'undefined' ? wx : undefined);
  const cfg = merge(defaultConfig, o.config || {});
  const store = o.store || defaultStore();
  const now = o.now || (() => Date.now());
  const sleep = o.sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
  const random = o.random || Math.random;
  let loginInFlight = null;

  function transport(name, data, token) {
    const ctx = { fn: name, action: actionOf(name, data) };
    const auth = token ? { Authorization: `Bearer ${token}` } : {};
    const netFail = (err) => {
      throw new ApiError(CLIENT_CODES.NETWORK_ERROR, failMessage(err), ctx);
    };
    switch (cfg.mode) {
      case 'event': {
        if (!w || !w.cloud || typeof w.cloud.callFunction !== 'function') break;
        const payload = token ? Object.assign({}, data, { token }) : Object.assign({}, data);
        const req = { name, data: payload };
        if (cfg.env) req.config = { env: cfg.env };
        return wxCall(w.cloud.callFunction, req).then((res) => unwrapEnvelope(res && res.result, undefined, ctx), netFail);
      }
      case 'http': {
        if (!w || !w.cloud || typeof w.cloud.callHTTPFunction !== 'function') break;
        const req = {
          name,
          path: httpPath(cfg.http.path, ctx.action),
          method: 'POST',
          header: Object.assign({ 'content-type': 'application/json' }, auth),
          data,
          timeout: cfg.timeoutMs,
        };
        if (cfg.env) req.config = { env: cfg.env };
        return wxCall(w.cloud.callHTTPFunction, req).then((res) => unwrapEnvelope(res && res.data, res && res.statusCode, ctx), netFail);
      }
      case 'container': {
        if (!w || !w.cloud || typeof w.cloud.callContainer !== 'function') break;
        const service = (cfg.container.services && cfg.container.services[name]) || kebab(name);
        const req = {
          path: httpPath(cfg.container.path, ctx.action),
          method: 'POST',
          header: Object.assign({ 'content-type': 'application/json', 'X-WX-SERVICE': service }, auth),
          data,
          timeout: cfg.timeoutMs,
        };
        if (cfg.env) req.config = { env: cfg.env };
        return wxCall(w.cloud.callContainer, req).then((res) => unwrapEnvelope(res && res.data, res && res.statusCode, ctx), netFail);
      }
      case 'dev': {
        if (!w || typeof w.request !== 'function') break;
        const req = {
          url: `${String(cfg.devBaseUrl).replace(/\/+$/, '')}/tcb/callFunction`,
          method: 'POST',
          header: Object.assign({ 'content-type': 'application/json' }, auth),
          data: { name, data },
          timeout: cfg.timeoutMs,
        };
        return wxCall(w.request, req).then((res) => unwrapEnvelope(res && res.data, res && res.statusCode, ctx), netFail);
      }
      default:
        break;
    }
    return Promise.reject(new ApiError(CLIENT_CODES.NOT_CONFIGURED, `transport "${cfg.mode}" is not available`, ctx));
  }

  /** Wait before the next attempt, or null when the error says not to wait that long. */
  function backoffMs(err, attempt) {
    if (err.code === 'RATE_LIMITED' && typeof err.retryAfterSecs === 'number') {
      const ms = Math.max(0, err.retryAfterSecs) * 1000;
      return ms > cfg.retry.maxRateLimitWaitMs ? null : ms;
    }
    const exp = Math.min(cfg.retry.maxDelayMs, cfg.retry.baseDelayMs * 2 ** (attempt - 1));
    return Math.round(exp * (0.5 + random() / 2));
  }

  function nowSecs() {
    return Math.floor(now() / 1000);
  }

  function sessionValid(s) {
    return !!(s && s.token && (typeof s.expiresAt !== 'number' || s.expiresAt - cfg.sessionSkewSecs > nowSecs()));
  }

  function wxLoginCode() {
    if (!w || typeof w.login !== 'function') {
      return Promise.reject(new ApiError(CLIENT_CODES.NOT_CONFIGURED, 'wx.login is not available'));
    }
    return wxCall(w.login, { timeout: cfg.timeoutMs }).then(
      (res) => {
        if (!res || !res.code) throw new ApiError(CLIENT_CODES.WX_LOGIN_FAILED, 'wx.login returned no code');
        return res.code;
      },
      (err) => {
        throw new ApiError(CLIENT_CODES.WX_LOGIN_FAILED, failMessage(err));
      },
    );
  }

  async function doLogin(extra) {
    // A phoneCode is single-use like the login code but cannot be renewed here: no retries then.
    const max = extra && extra.phoneCode ? 1 : cfg.retry.maxAttempts;
    for (let attempt = 1; ; attempt += 1) {
      try {
        // A fresh code per attempt: codes are single-use, so a retry never replays one.
        const code = await wxLoginCode();
        const data = await transport('login', Object.assign({ action: 'login', code }, extra || {}), null);
        if (!data || typeof data.token !== 'string' || !data.token) {
          throw new ApiError(CLIENT_CODES.BAD_REPLY, 'login reply has no token', { fn: 'login', action: 'login' });
        }
        const session = { token: data.token, expiresAt: data.expiresAt, user: data.user || null };
        store.set(session);
        return session;
      } catch (err) {
        const again = attempt < max && (isRetryable(err) || (err && err.code === 'WX_LOGIN_FAILED'));
        const wait = again ? backoffMs(err, attempt) : null;
        if (wait === null) throw err;
        await sleep(wait);
      }
    }
  }

  /** Logs in (wx.login → login). Concurrent callers share one attempt. */
  function login(extra) {
    if (extra) return doLogin(extra);
    if (!loginInFlight) {
      loginInFlight = doLogin().then(
        (s) => {
          loginInFlight = null;
          return s;
        },
        (e) => {
          loginInFlight = null;
          throw e;
        },
      );
    }
    return loginInFlight;
  }

  /** The current session, logging in first when there is none or it is about to expire. */
  async function ensureSession() {
    const s = store.get();
    if (sessionValid(s)) return s;
    return login();
  }

  /**
   * Calls `name` with `data` (which carries `action`). Resolves the envelope's `data`.
   * `opts.retry: false` turns retries off even for safe calls.
   */
  async function call(name, data, opts) {
    const payload = Object.assign({}, data || {});
    const options = opts || {};
    const safe = options.retry !== false && isRetrySafe(name, payload);
    const maxAttempts = safe ? cfg.retry.maxAttempts : 1;
    const needsSession = !(name === 'login' && actionOf(name, payload) === 'login');
    let reauthed = false;
    let attempt = 0;
    for (;;) {
      attempt += 1;
      try {
        const token = needsSession ? (await ensureSession()).token : null;
        return await transport(name, payload, token);
      } catch (err) {
        if (err && err.code === 'UNAUTHENTICATED' && needsSession && !reauthed) {
          // The server refused before doing anything: log in again and resend once.
          reauthed = true;
          attempt -= 1;
          store.set(null);
          continue;
        }
        if (attempt >= maxAttempts || !isRetryable(err)) throw err;
        const wait = backoffMs(err, attempt);
        if (wait === null) throw err;
        await sleep(wait);
      }
    }
  }

  /** Adopts a new token from createTenant / switchTenant, keeping the session's expiry. */
  function replaceToken(token, expiresAt, user) {
    const old = store.get() || {};
    store.set({
      token,
      expiresAt: typeof expiresAt === 'number' ? expiresAt : old.expiresAt,
      user: user === undefined ? old.user || null : user,
    });
  }

  /** Re-reads the user (role, tenant) after something changed it. */
  async function refreshUser() {
    const data = await call('login', { action: 'me' });
    const s = store.get();
    if (s && data && data.user) store.set(Object.assign({}, s, { user: data.user }));
    return data && data.user;
  }

  /** The signed-in user, or null before login. */
  function currentUser() {
    const s = store.get();
    return (s && s.user) || null;
  }

  /**
   * Uploads a local file to cloud storage under `cloudPath`; resolves the file id.
   * Dev mode posts multipart to `{devBaseUrl}/tcb/uploadFile` (field `file`, form `cloudPath`).
   */
  async function uploadFile(filePath, cloudPath) {
    const ctx = { fn: 'uploadFile', action: 'upload' };
    if (cfg.mode === 'dev') {
      const s = await ensureSession();
      const res = await wxCall(w.uploadFile, {
        url: `${String(cfg.devBaseUrl).replace(/\/+$/, '')}/tcb/uploadFile`,
        filePath,
        name: 'file',
        formData: { cloudPath },
        header: { Authorization: `Bearer ${s.token}` },
        timeout: cfg.timeoutMs,
      }).catch((err) => {
        throw new ApiError(CLIENT_CODES.NETWORK_ERROR, failMessage(err), ctx);
      });
      const data = unwrapEnvelope(res && res.data, res && res.statusCode, ctx);
      if (!data || !data.fileID) throw new ApiError(CLIENT_CODES.BAD_REPLY, 'upload reply has no fileID', ctx);
      return data.fileID;
    }
    if (!w || !w.cloud || typeof w.cloud.uploadFile !== 'function') {
      throw new ApiError(CLIENT_CODES.NOT_CONFIGURED, 'wx.cloud.uploadFile is not available', ctx);
    }
    const req = { cloudPath, filePath };
    if (cfg.env) req.config = { env: cfg.env };
    const res = await wxCall(w.cloud.uploadFile, req).catch((err) => {
      throw new ApiError(CLIENT_CODES.NETWORK_ERROR, failMessage(err), ctx);
    });
    if (!res || !res.fileID) throw new ApiError(CLIENT_CODES.BAD_REPLY, 'upload reply has no fileID', ctx);
    return res.fileID;
  }

  return { call, login, ensureSession, replaceToken, refreshUser, currentUser, uploadFile, config: cfg };
}

let shared = null;

/** The app-wide client, built on first use from config.js. */
function getApi() {
  if (!shared) shared = createApi();
  return shared;
}

/** Replaces the app-wide client (tests, or an app that builds its own). */
function setApi(api) {
  shared = api;
}

module.exports = {
  ApiError,
  CLIENT_CODES,
  DEFAULT_ACTION,
  READ_ONLY,
  actionOf,
  httpPath,
  isRetrySafe,
  isRetryable,
  unwrapEnvelope,
  wxCall,
  createApi,
  getApi,
  setApi,
};
