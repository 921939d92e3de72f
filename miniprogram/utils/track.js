/**
 * Behaviour analytics: records what the buyer does and sends it to the `analytics` function's
 * `track` action (functions/analytics; the server's schema is shared/src/domain/analytics.rs)
 * through utils/api.js. README.md "Analytics" lists the events and where pages record them.
 *
 * - Events are kept in memory only and sent in batches: when `batchSize` events are waiting,
 *   `intervalMs` after the first waiting event (a one-shot timer: nothing runs while idle), and
 *   whenever the app or a page is hidden or a page unloads.
 * - Nothing is written to wx storage. Only the props of the schema below leave the device;
 *   anything else a caller passes is dropped here, so no free text, address or name can slip in.
 * - It never throws into a page and never shows anything: a failed send is retried with the
 *   next flush (retryable errors only, `maxAttempts` sends per event) and then dropped; the
 *   queue holds at most `maxQueue` events (the oldest go first).
 * - Identity is the session's, as for every call; events carry no user id.
 */
const { getApi, isRetryable } = require('./api');

/** One request's cap on the server (contract: 50 events per batch). */
const SERVER_BATCH_CAP = 50;

const DEFAULTS = Object.freeze({
  batchSize: 20, // send once this many events wait
  intervalMs: 5000, // send this long after the first waiting event
  maxQueue: 200, // events kept at most while sends fail
  maxAttempts: 3, // sends per event before it is dropped
});

const str = (max) => (v) => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : undefined);
const int = (min, max) => (v) => (Number.isSafeInteger(v) && v >= min && v <= max ? v : undefined);
const bool = (v) => (typeof v === 'boolean' ? v : undefined);
const channel = (v) => (v === 'wxpay' || v === 'xpay' ? v : undefined);
const skuList = (v) => {
  if (!Array.isArray(v) || v.length > 50) return undefined;
  const out = v.filter((s) => str(64)(s) !== undefined);
  return out.length === v.length ? out : undefined;
};

/**
 * The event schema (the same table as the server's, a little stricter: no empty strings, and
 * `durationMs` always set). `required` props must be valid or the event is not recorded, as the
 * server would drop it; optional ones are left out when missing or invalid.
 */
const SCHEMA = Object.freeze({
  page_view: { page: [str(128), true], durationMs: [int(0, Number.MAX_SAFE_INTEGER), true] },
  product_view: { sku: [str(64), true] },
  add_to_cart: { sku: [str(64), true], qty: [int(1, 999), true] },
  checkout_start: { skus: [skuList, true], channel: [channel, true] },
  payment_result: { orderId: [str(64), true], ok: [bool, true], channel: [channel, true] },
  share: { page: [str(128), true] },
  paywall_view: { contentId: [str(64), true] },
  paywall_unlock: { contentId: [str(64), true] },
  post_publish: { postId: [str(64), false] },
});

/** The schema's props of `props` for event `name`, or null when the event is not valid. */
function cleanProps(name, props) {
  const spec = SCHEMA[name];
  if (!spec) return null;
  const p = props && typeof props === 'object' ? props : {};
  const out = {};
  for (const key of Object.keys(spec)) {
    const [check, required] = spec[key];
    const v = check(p[key]);
    if (v !== undefined) out[key] = v;
    else if (required) return null;
  }
  return out;
}

/** A page route without its query string or leading slash (queries can carry personal data). */
function pagePath(route) {
  return String(route || '').split('?')[0].replace(/^\/+/, '');
}

/**
 * A tracker. Options (all optional, for tests and tuning): `{api: () => client, now (ms),
 * setTimeout, clearTimeout, batchSize, intervalMs, maxQueue, maxAttempts}`; `intervalMs: 0`
 * turns the timer off (sends then happen only at `batchSize` and on flush).
 */
function createTracker(options) {
  const o = Object.assign({}, DEFAULTS, options || {});
  const apiOf = o.api || getApi;
  const now = o.now || (() => Date.now());
  const setT = o.setTimeout || ((fn, ms) => setTimeout(fn, ms));
  const clearT = o.clearTimeout || ((t) => clearTimeout(t));
  const batchSize = Math.max(1, Math.min(o.batchSize, SERVER_BATCH_CAP));
  let queue = []; // {name, at, props, tries}
  let timer = null;
  let sending = null;
  let again = false;
  const stats = { sent: 0, dropped: 0, failedSends: 0 };

  function disarm() {
    if (timer !== null) clearT(timer);
    timer = null;
  }

  function arm() {
    if (timer !== null || !o.intervalMs || !queue.length) return;
    timer = setT(() => {
      timer = null;
      flush();
    }, o.intervalMs);
  }

  function trim() {
    if (queue.length > o.maxQueue) {
      stats.dropped += queue.length - o.maxQueue;
      queue = queue.slice(queue.length - o.maxQueue);
    }
  }

  async function sendAll() {
    while (queue.length) {
      const batch = queue.slice(0, SERVER_BATCH_CAP);
      queue = queue.slice(batch.length);
      const events = batch.map((e) => ({ name: e.name, at: e.at, props: e.props }));
      try {
        await apiOf().call('analytics', { action: 'track', events });
        stats.sent += batch.length;
      } catch (err) {
        stats.failedSends += 1;
        // Only a send that may work later is kept, each event for `maxAttempts` sends at most.
        const keep = isRetryable(err) ? batch.filter((e) => e.tries + 1 < o.maxAttempts) : [];
        stats.dropped += batch.length - keep.length;
        queue = keep.map((e) => Object.assign({}, e, { tries: e.tries + 1 })).concat(queue);
        trim();
        return; // the rest waits for the next flush
      }
    }
  }

  /** Sends what is waiting. Resolves when done; never rejects. */
  function flush() {
    try {
      disarm();
      if (sending) {
        again = true;
        return sending;
      }
      if (!queue.length) return Promise.resolve();
      sending = sendAll()
        .catch(() => {})
        .then(() => {
          sending = null;
          if (again) {
            again = false;
            return flush();
          }
          arm();
          return undefined;
        });
      return sending;
    } catch (e) {
      return Promise.resolve();
    }
  }

  /** Records one event; returns whether it was kept. Never throws. */
  function track(name, props) {
    try {
      const clean = cleanProps(name, props);
      if (!clean) return false;
      queue.push({ name, at: now(), props: clean, tries: 0 });
      trim();
      if (queue.filter((e) => e.tries === 0).length >= batchSize) flush();
      else arm();
      return true;
    } catch (e) {
      return false;
    }
  }

  return {
    track,
    flush,
    /** The events waiting to be sent, as they will be sent. */
    pending: () => queue.map((e) => ({ name: e.name, at: e.at, props: e.props })),
    /** Counts since creation: `{sent, dropped, failedSends}`. */
    stats: () => Object.assign({}, stats),
    /** Whether the flush timer is set. */
    armed: () => timer !== null,
    /** This tracker's clock (ms). */
    now,
  };
}

let shared = null;

/** The app-wide tracker, built on first use. */
function getTracker() {
  if (!shared) shared = createTracker();
  return shared;
}

/** Replaces the app-wide tracker (tests); returns it. */
function setTracker(t) {
  shared = t;
  return t;
}

const record = (name, props) => getTracker().track(name, props);

/**
 * A behavior for pages: one `page_view` with the time on page each time the page is hidden or
 * unloaded, and a flush then. `route` is the page's path, e.g. 'shop/pages/list/list'.
 * Page show/hide come from pageLifetimes; attach/detach (load/unload) bound the view as well,
 * so a view is recorded even where pageLifetimes do not reach the page itself.
 */
function pageView(route) {
  const page = pagePath(route);
  const start = (self) => {
    if (self.trackShownAt === undefined || self.trackShownAt === null) self.trackShownAt = getTracker().now();
  };
  const end = (self) => {
    try {
      const from = self.trackShownAt;
      if (from === undefined || from === null) return;
      self.trackShownAt = null;
      record('page_view', { page, durationMs: Math.max(0, Math.round(getTracker().now() - from)) });
      getTracker().flush();
    } catch (e) {
      // analytics never breaks a page
    }
  };
  return Behavior({
    lifetimes: {
      attached() {
        start(this);
      },
      detached() {
        end(this);
      },
    },
    pageLifetimes: {
      show() {
        start(this);
      },
      hide() {
        end(this);
      },
    },
  });
}

module.exports = {
  SCHEMA,
  DEFAULTS,
  SERVER_BATCH_CAP,
  cleanProps,
  pagePath,
  createTracker,
  getTracker,
  setTracker,
  pageView,
  flush: () => getTracker().flush(),
  track: record,
  productView: (sku) => record('product_view', { sku }),
  addToCart: (sku, qty) => record('add_to_cart', { sku, qty }),
  checkoutStart: (skus, ch) => record('checkout_start', { skus, channel: ch }),
  paymentResult: (orderId, ok, ch) => record('payment_result', { orderId, ok, channel: ch }),
  share: (route) => record('share', { page: pagePath(route) }),
  paywallView: (contentId) => record('paywall_view', { contentId }),
  paywallUnlock: (contentId) => record('paywall_unlock', { contentId }),
  postPublish: (postId) => record('post_publish', { postId }),
};
