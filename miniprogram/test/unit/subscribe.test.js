/**
 * utils/subscribe.js: wx.requestSubscribeMessage for the configured templates, results by the
 * server's keys, accepted ones reported to gatedContent subscribeGrant, never a rejection.
 */
const { askConsent, isAccepted } = require('../../utils/subscribe');
const { fakeApi, ApiError } = require('../helpers/fake-api');

const TEMPLATES = { shipping: 'TPL_SHIP', postNotice: 'TPL_POST', renewal: 'TPL_RENEW' };

/** A wx whose popup answers `answer(opts)` (a function calling opts.success / opts.fail). */
function popupWx(answer) {
  return { requestSubscribeMessage: jest.fn((o) => answer(o)) };
}

test('asks the configured templates and reports the accepted ones by key', async () => {
  const api = fakeApi({ 'gatedContent.subscribeGrant': { grants: [{ key: 'shipping', credits: 1 }] } });
  const w = popupWx((o) => o.success({ errMsg: 'requestSubscribeMessage:ok', TPL_SHIP: 'accept', TPL_RENEW: 'reject' }));
  const r = await askConsent(['shipping', 'renewal'], { wx: w, api, templates: TEMPLATES });
  expect(w.requestSubscribeMessage).toHaveBeenCalledWith(expect.objectContaining({ tmplIds: ['TPL_SHIP', 'TPL_RENEW'] }));
  expect(r.results).toEqual({ shipping: 'accept', renewal: 'reject' });
  expect(r.accepted).toEqual(['shipping']);
  await expect(r.reported).resolves.toEqual({ grants: [{ key: 'shipping', credits: 1 }] });
  expect(api.of('gatedContent', 'subscribeGrant').map((c) => c.data)).toEqual([
    { action: 'subscribeGrant', results: { shipping: 'accept', renewal: 'reject' } },
  ]);
});

test('every accept… value counts as accepted; reject, ban and filter do not', () => {
  for (const v of ['accept', 'acceptWithAlert', 'acceptWithAudio', 'acceptWithForcePush']) expect(isAccepted(v)).toBe(true);
  for (const v of ['reject', 'ban', 'filter', undefined, '']) expect(isAccepted(v)).toBe(false);
});

test('nothing accepted: nothing reported', async () => {
  const api = fakeApi({});
  const w = popupWx((o) => o.success({ TPL_POST: 'reject' }));
  const r = await askConsent(['postNotice'], { wx: w, api, templates: TEMPLATES });
  expect(r.accepted).toEqual([]);
  await r.reported;
  expect(api.calls).toEqual([]);
});

test('a key without a template id, or an unknown key, is not asked; nothing configured → no popup', async () => {
  const w = popupWx((o) => o.success({ TPL_SHIP: 'accept' }));
  const api = fakeApi({ 'gatedContent.subscribeGrant': { grants: [] } });
  await askConsent(['shipping', 'renewal', 'nonsense'], { wx: w, api, templates: { shipping: 'TPL_SHIP', renewal: '' } });
  expect(w.requestSubscribeMessage.mock.calls[0][0].tmplIds).toEqual(['TPL_SHIP']);
  const r = await askConsent(['renewal'], { wx: w, api, templates: { renewal: '' } });
  expect(w.requestSubscribeMessage).toHaveBeenCalledTimes(1);
  expect(r).toEqual(expect.objectContaining({ results: {}, accepted: [], error: null }));
});

test('fail (e.g. 20004, subscriptions switched off), a throw, or no API: resolves, nothing reported', async () => {
  const api = fakeApi({});
  const failed = await askConsent(['shipping'], { wx: popupWx((o) => o.fail({ errCode: 20004, errMsg: 'requestSubscribeMessage:fail' })), api, templates: TEMPLATES });
  expect(failed.error).toEqual({ errCode: 20004, errMsg: 'requestSubscribeMessage:fail' });
  expect(failed.accepted).toEqual([]);
  const thrown = await askConsent(['shipping'], {
    wx: popupWx(() => {
      throw new Error('boom');
    }),
    api,
    templates: TEMPLATES,
  });
  expect(thrown.error).toEqual({ errMsg: 'boom' });
  const old = await askConsent(['shipping'], { wx: {}, api, templates: TEMPLATES });
  expect(old.error).toEqual({ errMsg: 'requestSubscribeMessage unavailable' });
  expect(api.calls).toEqual([]);
});

test('the server refusing the report is swallowed (logged), the consent result stands', async () => {
  const warn = jest.spyOn(console, 'warn').mockImplementation(() => {});
  const api = fakeApi({ 'gatedContent.subscribeGrant': new ApiError('SUBSCRIBE_TEMPLATE_UNKNOWN', 'no') });
  const r = await askConsent(['renewal'], { wx: popupWx((o) => o.success({ TPL_RENEW: 'acceptWithAlert' })), api, templates: TEMPLATES });
  expect(r.accepted).toEqual(['renewal']);
  await expect(r.reported).resolves.toBeNull();
  expect(warn).toHaveBeenCalledWith('subscribeGrant failed', 'SUBSCRIBE_TEMPLATE_UNKNOWN');
  warn.mockRestore();
});

test('at most 3 templates in one call', async () => {
  const w = popupWx((o) => o.success({}));
  await askConsent(['shipping', 'postNotice', 'renewal', 'shipping'], { wx: w, api: fakeApi({}), templates: TEMPLATES });
  expect(w.requestSubscribeMessage.mock.calls[0][0].tmplIds).toHaveLength(3);
});
