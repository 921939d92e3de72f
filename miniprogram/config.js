/**
 * How the Mini Program reaches the wemint functions. Change `mode` when deploying:
 *
 * - `event`:     CloudBase event functions through `wx.cloud.callFunction` (token in `data.token`).
 * - `http`:      CloudBase HTTP functions through `wx.cloud.callHTTPFunction`
 *                (`Authorization: Bearer <token>`), base library >= 3.15.1.
 * - `container`: CloudBase Run through `wx.cloud.callContainer` (service in `X-WX-SERVICE`).
 * - `dev`:       the local suite `wemint-dev` through `wx.request`
 *                (`POST {devBaseUrl}/tcb/callFunction` with `{name, data}`).
 *                In WeChat DevTools tick "do not verify request domains" for this mode.
 *
 * Nothing secret belongs here: this file ships inside the Mini Program package.
 */
module.exports = {
  mode: 'dev',
  /** CloudBase environment id (event, http, container modes). */
  env: '',
  /** Base URL of a running `wemint-dev` (dev mode). */
  devBaseUrl: 'http://127.0.0.1:8787',
  /** HTTP functions: path prefix inside each function; the action is appended (`/list`). */
  http: { path: '/' },
  /**
   * CloudBase Run: one service per function, named like its crate (createOrder → create-order)
   * unless `services` maps it; the action is appended to `path` (`/list`).
   */
  container: { path: '/', services: {} },
  /** Per-call transport timeout. */
  timeoutMs: 15000,
  /** Retries of safe calls (read-only actions, createOrder create with its clientRequestId). */
  retry: { maxAttempts: 3, baseDelayMs: 300, maxDelayMs: 4000, maxRateLimitWaitMs: 30000 },
  /** Order status polling after the payment UI returns. */
  poll: { intervalMs: 1500, timeoutMs: 60000 },
  /**
   * The realtime function's WebSocket URL (`wss://…`, also in the socket legal domains; in dev
   * mode `GET {devBaseUrl}/dev/realtime` tells it). Empty: no live updates, pages poll.
   */
  realtime: { url: '' },
  /** Log in again this many seconds before the session token expires. */
  sessionSkewSecs: 60,
  /**
   * Subscribe messages (MP admin → 订阅消息 → 我的模板: one-time templates). Keys are the
   * server's: `shipping` = WEMINT_SHIPPING_TEMPLATE_ID (order shipped), `postNotice` =
   * WEMINT_POST_NOTICE_TEMPLATE (moderation result), `renewal` = WEMINT_RENEWAL_TEMPLATE_ID
   * (membership renewal reminder). Each id must equal the server's; an empty id is never asked.
   */
  subscribe: {
    templates: { shipping: '', postNotice: '', renewal: '' },
  },
};
