/**
 * The one socket to the `realtime` function (docs/api.md, "realtime"), over wx.connectSocket.
 *
 * - Opens with the session token (`Authorization: Bearer`), then subscribes to its topics.
 * - Remembers the highest event `seq` it handed out and resumes after it on every reconnect,
 *   so nothing is lost and nothing is handed out twice (within the server's retention; past
 *   it the server says `resync` and `onResync` should reload what the page shows).
 * - Reconnects with exponential backoff and jitter; a close the server asks for (1013 "too
 *   slow") is retried the same way, a refused session (401) after a fresh token.
 * - Sends `{"op":"ping"}` every heartbeat (wx sockets cannot send ping frames): the server
 *   closes a silent socket, and the platform closes an idle one.
 * - `hide()` (page/app onHide) closes the socket and keeps the position; `show()` (onShow)
 *   reconnects and resumes.
 */

const DEFAULTS = Object.freeze({
  baseDelayMs: 500,
  maxDelayMs: 30000,
  heartbeatMs: 20000,
});

class RealtimeClient {
  /**
   * @param {object} o
   * @param {object} o.wx           the wx API (connectSocket)
   * @param {string} o.url          ws(s):// URL of the realtime function
   * @param {function} o.getToken   async () => session token
   * @param {string[]} o.topics     initial topics (orders, order:<id>, posts, tenant:<id>)
   * @param {function} [o.onEvent]  (event) => void, once per seq, in order
   * @param {function} [o.onRevoked] (topic) => void: a topic was taken away (removed member)
   * @param {function} [o.onResync] () => void: events were missed beyond retention: reload
   * @param {function} [o.onStatus] ('connecting'|'open'|'closed'|'stopped', detail) => void
   * @param {function} [o.onRefused] (refusals) => void: topics the server refused
   */
  constructor(o) {
    this.wx = o.wx;
    this.url = o.url;
    this.getToken = o.getToken;
    this.topics = (o.topics || []).slice();
    this.onEvent = o.onEvent || (() => {});
    this.onRevoked = o.onRevoked || (() => {});
    this.onResync = o.onResync || (() => {});
    this.onStatus = o.onStatus || (() => {});
    this.onRefused = o.onRefused || (() => {});
    this.opts = Object.assign({}, DEFAULTS, o.options || {});
    this.timers = o.timers || { setTimeout, clearTimeout, setInterval, clearInterval };
    this.random = o.random || Math.random;
    this.lastSeq = null;
    this.attempt = 0;
    this.task = null;
    this.running = false;
    this.hidden = false;
    this.retryTimer = null;
    this.heartbeat = null;
    this.subscribed = false;
    this.waiters = [];
    this.listeners = [];
  }

  /** Also hands every event to `fn`; returns the function that stops it. */
  listen(fn) {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  /** Starts connecting (idempotent). */
  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  /** Closes for good. */
  stop() {
    this.running = false;
    this.teardown(1000, 'stopped');
    this.onStatus('stopped');
  }

  /** onHide: close the socket, keep the position. */
  hide() {
    if (this.hidden) return;
    this.hidden = true;
    this.teardown(1000, 'hidden');
  }

  /** onShow: reconnect and resume. */
  show() {
    if (!this.hidden) return;
    this.hidden = false;
    this.attempt = 0;
    if (this.running) this.connect();
  }

  /** Adds topics (sent now if open, and on every reconnect). */
  subscribe(topics) {
    topics.forEach((t) => {
      if (this.topics.indexOf(t) < 0) this.topics.push(t);
    });
    if (this.subscribed) this.send({ op: 'subscribe', topics });
  }

  /** Drops topics. */
  unsubscribe(topics) {
    this.topics = this.topics.filter((t) => topics.indexOf(t) < 0);
    if (this.subscribed) this.send({ op: 'unsubscribe', topics });
  }

  /** Resolves once the socket is open and subscribed (or rejects after `ms`). */
  ready(ms) {
    if (this.subscribed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      waiter.timer = this.timers.setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error('realtime: not connected'));
      }, ms);
      this.waiters.push(waiter);
    });
  }

  async connect() {
    if (!this.running || this.hidden || this.task) return;
    this.onStatus('connecting', { attempt: this.attempt });
    let token;
    try {
      token = await this.getToken();
    } catch (e) {
      this.scheduleRetry();
      return;
    }
    if (!this.running || this.hidden || this.task) return;
    // `fail` may run before connectSocket returns the task.
    const box = { task: null, failed: false };
    const task = this.wx.connectSocket({
      url: this.url,
      header: { Authorization: `Bearer ${token}` },
      fail: () => {
        if (box.task) this.closed(box.task, {});
        else box.failed = true;
      },
    });
    box.task = task;
    this.task = task;
    task.onOpen(() => this.opened(task));
    task.onMessage((m) => this.message(task, m && m.data));
    task.onClose((c) => this.closed(task, c || {}));
    task.onError(() => this.closed(task, {}));
    if (box.failed) this.closed(task, {});
  }

  opened(task) {
    if (task !== this.task) return;
    const msg = { op: 'subscribe', topics: this.topics };
    if (this.lastSeq !== null) msg.after = this.lastSeq;
    this.send(msg);
    this.heartbeat = this.timers.setInterval(() => this.send({ op: 'ping' }), this.opts.heartbeatMs);
  }

  message(task, data) {
    if (task !== this.task || typeof data !== 'string') return;
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      return;
    }
    switch (m && m.type) {
      case 'subscribed':
        this.attempt = 0;
        if (m.refused && m.refused.length) this.onRefused(m.refused);
        if (!this.subscribed) {
          this.subscribed = true;
          this.onStatus('open', { head: m.head });
          const waiters = this.waiters;
          this.waiters = [];
          waiters.forEach((w) => {
            this.timers.clearTimeout(w.timer);
            w.resolve();
          });
        }
        break;
      case 'events':
        (m.events || []).forEach((e) => {
          if (typeof e.seq !== 'number') return;
          if (this.lastSeq !== null && e.seq <= this.lastSeq) return;
          this.lastSeq = e.seq;
          this.onEvent(e);
          this.listeners.slice().forEach((l) => l(e));
        });
        break;
      case 'revoked':
        this.topics = this.topics.filter((t) => t !== m.topic);
        this.onRevoked(m.topic);
        break;
      case 'resync':
        this.onResync(m.oldest);
        break;
      default:
        break;
    }
  }

  send(obj) {
    if (!this.task) return;
    this.task.send({ data: JSON.stringify(obj), fail: () => {} });
  }

  closed(task, info) {
    if (task !== this.task) return;
    this.teardown();
    this.onStatus('closed', { code: info.code, reason: info.reason });
    this.scheduleRetry();
  }

  teardown(code, reason) {
    const task = this.task;
    this.task = null;
    this.subscribed = false;
    if (this.heartbeat) this.timers.clearInterval(this.heartbeat);
    this.heartbeat = null;
    if (this.retryTimer) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (task && code) {
      try {
        task.close({ code, reason });
      } catch (e) {
        // already closed
      }
    }
  }

  /** The delay before attempt `n` (from 0): doubling from baseDelayMs, capped, ±50 % jitter. */
  delay(n) {
    const raw = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * Math.pow(2, n));
    return Math.round(raw * (0.5 + this.random()));
  }

  scheduleRetry() {
    if (!this.running || this.hidden || this.retryTimer) return;
    const wait = this.delay(this.attempt);
    this.attempt += 1;
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, wait);
  }
}

let shared = null;

/**
 * The app-wide socket, built on first use from `config.realtime.url` with the api's session
 * token; null when no URL is configured or `wx.connectSocket` is missing (pages then keep
 * to reloads and polling).
 */
function getRealtime(api, wxApi, cfg) {
  if (shared) return shared;
  const c = cfg || require('../config');
  const url = c.realtime && c.realtime.url;
  if (!url || !wxApi || typeof wxApi.connectSocket !== 'function') return null;
  shared = new RealtimeClient({
    wx: wxApi,
    url,
    getToken: async () => (await api.ensureSession()).token,
    topics: [],
  });
  return shared;
}

/** Replaces the app-wide socket (tests). */
function setRealtime(client) {
  shared = client;
}

module.exports = { RealtimeClient, DEFAULTS, getRealtime, setRealtime };
