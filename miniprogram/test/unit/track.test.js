/**
 * utils/track.js: batching, when it sends (batch size, timer, app/page hide), caps, bounded
 * retry, failures swallowed, and nothing personal kept or sent.
 */
const simulate = require('miniprogram-simulate');
const { ApiError } = require('../../utils/api');
const track = require('../../utils/track');

const { createTracker, setTracker, cleanProps, pagePath } = track;

/** An api whose `call` is recorded; `reply(n)` decides the n-th call's outcome (0-based). */
function recordingApi(reply) {
  const calls = [];
  return {
    calls,
    call: jest.fn((name, data) => {
      calls.push({ name, data: JSON.parse(JSON.stringify(data)) });
      const r = reply ? reply(calls.length - 1, data) : { accepted: data.events.length, dropped: {} };
      if (r instanceof Error) return Promise.reject(r);
      return Promise.resolve(r);
    }),
  };
}

/** A settable clock. */
function clock(start) {
  const c = { t: start === undefined ? 1733370000000 : start };
  c.now = () => c.t;
  return c;
}

const settle = () => new Promise((r) => setTimeout(r, 0));

let wxBefore;
beforeEach(() => {
  wxBefore = global.wx;
  global.wx = Object.assign({}, global.wx, {
    setStorage: jest.fn(),
    setStorageSync: jest.fn(),
    showToast: jest.fn(),
    showModal: jest.fn(),
  });
});
afterEach(() => {
  global.wx = wxBefore;
  jest.useRealTimers();
});

describe('schema', () => {
  test('each event keeps its schema props only; invalid or unknown events are not recorded', () => {
    expect(cleanProps('add_to_cart', { sku: 'tee', qty: 2, phone: '13800000000', address: '北京市' })).toEqual({ sku: 'tee', qty: 2 });
    expect(cleanProps('add_to_cart', { sku: 'tee', qty: 0 })).toBeNull();
    expect(cleanProps('add_to_cart', { sku: 'tee', qty: 1000 })).toBeNull();
    expect(cleanProps('add_to_cart', { sku: 'tee', qty: '2' })).toBeNull();
    expect(cleanProps('product_view', { sku: 'x'.repeat(65) })).toBeNull();
    expect(cleanProps('page_view', { page: 'shop/pages/list/list', durationMs: -1 })).toBeNull();
    expect(cleanProps('page_view', { page: 'shop/pages/list/list', durationMs: 1200 })).toEqual({ page: 'shop/pages/list/list', durationMs: 1200 });
    expect(cleanProps('checkout_start', { skus: ['a', 'b'], channel: 'wxpay' })).toEqual({ skus: ['a', 'b'], channel: 'wxpay' });
    expect(cleanProps('checkout_start', { skus: ['a', 3], channel: 'wxpay' })).toBeNull();
    expect(cleanProps('checkout_start', { skus: new Array(51).fill('a') })).toBeNull();
    expect(cleanProps('checkout_start', { skus: ['a'], channel: 'cash' })).toBeNull();
    expect(cleanProps('checkout_start', { skus: ['a'] })).toBeNull();
    expect(cleanProps('payment_result', { orderId: 'o1', ok: 'yes' })).toBeNull();
    expect(cleanProps('payment_result', { orderId: 'o1', ok: false, channel: 'xpay' })).toEqual({ orderId: 'o1', ok: false, channel: 'xpay' });
    expect(cleanProps('post_publish', {})).toEqual({});
    expect(cleanProps('login', { openid: 'o-1' })).toBeNull();
  });

  test('page paths lose their query and leading slash', () => {
    expect(pagePath('/shop/pages/product/product?sku=tee&invite=abc')).toBe('shop/pages/product/product');
  });
});

describe('batching and sending', () => {
  test('events wait in memory and go in one track call with the contract shape', async () => {
    const api = recordingApi();
    const c = clock();
    const t = createTracker({ api: () => api, now: c.now, intervalMs: 0 });
    expect(t.track('product_view', { sku: 'tee' })).toBe(true);
    c.t += 10;
    t.track('add_to_cart', { sku: 'tee', qty: 2 });
    expect(t.track('nope', {})).toBe(false);
    expect(api.calls).toHaveLength(0);
    expect(t.pending()).toHaveLength(2);
    await t.flush();
    expect(api.calls).toEqual([
      {
        name: 'analytics',
        data: {
          action: 'track',
          events: [
            { name: 'product_view', at: 1733370000000, props: { sku: 'tee' } },
            { name: 'add_to_cart', at: 1733370000010, props: { sku: 'tee', qty: 2 } },
          ],
        },
      },
    ]);
    expect(t.pending()).toEqual([]);
    expect(t.stats()).toEqual({ sent: 2, dropped: 0, failedSends: 0 });
    await t.flush(); // nothing waiting: no call
    expect(api.calls).toHaveLength(1);
  });

  test('the 20th waiting event sends the batch at once', async () => {
    const api = recordingApi();
    const t = createTracker({ api: () => api, intervalMs: 0 });
    for (let i = 0; i < 19; i += 1) t.track('product_view', { sku: `s${i}` });
    await settle();
    expect(api.calls).toHaveLength(0);
    t.track('product_view', { sku: 's19' });
    await settle();
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0].data.events).toHaveLength(20);
  });

  test('the timer sends 5 s after the first waiting event, and no timer runs while idle', async () => {
    jest.useFakeTimers();
    const api = recordingApi();
    const t = createTracker({ api: () => api });
    expect(t.armed()).toBe(false);
    t.track('share', { page: 'shop/pages/product/product' });
    expect(t.armed()).toBe(true);
    jest.advanceTimersByTime(2000);
    t.track('paywall_view', { contentId: 'c1' }); // does not push the deadline back
    jest.advanceTimersByTime(2999);
    expect(api.calls).toHaveLength(0);
    jest.advanceTimersByTime(1);
    await Promise.resolve();
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0].data.events.map((e) => e.name)).toEqual(['share', 'paywall_view']);
    await t.flush();
    expect(t.armed()).toBe(false);
    expect(jest.getTimerCount()).toBe(0);
  });

  test('no request carries more than 50 events, even when events pile up during a send', async () => {
    let release;
    const first = new Promise((r) => {
      release = r;
    });
    const api = recordingApi();
    api.call.mockImplementationOnce((name, data) => {
      api.calls.push({ name, data: JSON.parse(JSON.stringify(data)) });
      return first;
    });
    const t = createTracker({ api: () => api, intervalMs: 0, batchSize: 500 });
    for (let i = 0; i < 120; i += 1) t.track('product_view', { sku: `s${i}` });
    release({ accepted: 50, dropped: {} });
    await t.flush();
    await settle();
    expect(api.calls.map((c) => c.data.events.length)).toEqual([50, 50, 20]);
    expect(api.calls.flatMap((c) => c.data.events.map((e) => e.props.sku))).toEqual(Array.from({ length: 120 }, (_, i) => `s${i}`));
  });
});

describe('failures', () => {
  test('a retryable failure keeps the events for at most 3 sends, then drops them', async () => {
    const api = recordingApi(() => new ApiError('NETWORK_ERROR', 'offline'));
    const t = createTracker({ api: () => api, intervalMs: 0 });
    t.track('product_view', { sku: 'tee' });
    await t.flush();
    expect(t.pending()).toHaveLength(1);
    await t.flush();
    expect(t.pending()).toHaveLength(1);
    await t.flush();
    expect(t.pending()).toHaveLength(0);
    await t.flush();
    expect(api.calls).toHaveLength(3);
    expect(t.stats()).toEqual({ sent: 0, dropped: 1, failedSends: 3 });
  });

  test('a refused batch (not retryable) is dropped at once', async () => {
    const api = recordingApi(() => new ApiError('FORBIDDEN', 'no'));
    const t = createTracker({ api: () => api, intervalMs: 0 });
    t.track('product_view', { sku: 'tee' });
    await t.flush();
    expect(t.pending()).toEqual([]);
    expect(t.stats().dropped).toBe(1);
  });

  test('after a failure the timer tries again, then stops once the queue is empty', async () => {
    jest.useFakeTimers();
    const api = recordingApi((n) => (n === 0 ? new ApiError('INTERNAL', 'boom') : { accepted: 1, dropped: {} }));
    const t = createTracker({ api: () => api });
    t.track('product_view', { sku: 'tee' });
    await t.flush();
    expect(t.armed()).toBe(true);
    jest.advanceTimersByTime(5000);
    await t.flush();
    expect(api.calls).toHaveLength(2);
    expect(api.calls[1].data.events).toEqual([{ name: 'product_view', at: expect.any(Number), props: { sku: 'tee' } }]);
    expect(t.armed()).toBe(false);
  });

  test('the queue is bounded: the oldest events go first', async () => {
    const api = recordingApi();
    api.call.mockImplementation(() => new Promise(() => {})); // a send that never comes back
    const t = createTracker({ api: () => api, intervalMs: 0, maxQueue: 200 });
    for (let i = 0; i < 1000; i += 1) t.track('product_view', { sku: `s${i}` });
    // s0..s19 are in the one send in flight; of the 980 after them the newest 200 are kept
    expect(api.call).toHaveBeenCalledTimes(1);
    const kept = t.pending().map((e) => e.props.sku);
    expect(kept).toHaveLength(200);
    expect([kept[0], kept[199]]).toEqual(['s800', 's999']);
    expect(t.stats().dropped).toBe(780);
  });

  test('nothing thrown reaches the caller and nothing is shown', async () => {
    const throwing = {
      call: () => {
        throw new Error('sync failure');
      },
    };
    const t = createTracker({ api: () => throwing, intervalMs: 0 });
    expect(() => t.track('product_view', { sku: 'tee' })).not.toThrow();
    await expect(t.flush()).resolves.toBeUndefined();
    const noApi = createTracker({
      api: () => {
        throw new Error('no client');
      },
      intervalMs: 0,
    });
    noApi.track('product_view', { sku: 'tee' });
    await expect(noApi.flush()).resolves.toBeUndefined();
    const badClock = createTracker({
      now: () => {
        throw new Error('clock');
      },
    });
    expect(badClock.track('product_view', { sku: 'tee' })).toBe(false);
    expect(wx.showToast).not.toHaveBeenCalled();
    expect(wx.showModal).not.toHaveBeenCalled();
  });
});

describe('privacy', () => {
  test('personal data passed by mistake is neither stored nor sent', async () => {
    const api = recordingApi();
    const t = setTracker(createTracker({ api: () => api, intervalMs: 0 }));
    track.addToCart('tee', 1);
    t.track('product_view', { sku: 'tee', nickName: '张三', phone: '13800000000', address: '北京市朝阳区' });
    track.share('/shop/pages/product/product?sku=tee&phone=13800000000');
    await track.flush();
    const wire = JSON.stringify(api.calls);
    expect(wire).not.toMatch(/13800000000|张三|北京/);
    expect(api.calls[0].data.events.map((e) => e.props)).toEqual([
      { sku: 'tee', qty: 1 },
      { sku: 'tee' },
      { page: 'shop/pages/product/product' },
    ]);
    expect(wx.setStorage).not.toHaveBeenCalled();
    expect(wx.setStorageSync).not.toHaveBeenCalled();
  });
});

describe('hide', () => {
  test('app onHide sends what is waiting', async () => {
    const api = recordingApi();
    let app = null;
    global.App = (def) => {
      app = def;
    };
    let tr;
    jest.isolateModules(() => {
      require('../../app'); // eslint-disable-line global-require
      tr = require('../../utils/track'); // eslint-disable-line global-require
    });
    tr.setTracker(tr.createTracker({ api: () => api, intervalMs: 0 }));
    tr.productView('tee');
    expect(api.calls).toHaveLength(0);
    app.onHide();
    await settle();
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0].data.events[0]).toMatchObject({ name: 'product_view', props: { sku: 'tee' } });
    delete global.App;
  });

  test('a page records its time on page at hide and at unload, and sends then', async () => {
    const api = recordingApi();
    const c = clock(1000);
    setTracker(createTracker({ api: () => api, now: c.now, intervalMs: 0 }));
    const id = simulate.load({ template: '<view>x</view>', behaviors: [track.pageView('/shop/pages/cart/cart?x=1')] });
    const page = simulate.render(id);
    page.attach(document.createElement('parent-wrapper'));
    c.t += 1500;
    page.triggerPageLifeTime('hide');
    await settle();
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0].data.events).toEqual([{ name: 'page_view', at: 2500, props: { page: 'shop/pages/cart/cart', durationMs: 1500 } }]);
    c.t += 60000; // hidden: not counted
    page.triggerPageLifeTime('show');
    c.t += 700;
    page.detach();
    await settle();
    expect(api.calls).toHaveLength(2);
    expect(api.calls[1].data.events[0].props).toEqual({ page: 'shop/pages/cart/cart', durationMs: 700 });
    expect(wx.setStorage).not.toHaveBeenCalled();
    expect(wx.setStorageSync).not.toHaveBeenCalled();
  });
});
