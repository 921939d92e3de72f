/**
 * Subscribe-message consent (`wx.requestSubscribeMessage`) and reporting it to the server.
 *
 * WeChat shows the consent popup only when the call is made inside a user's tap handler (or the
 * payment-completion callback), so `askConsent` must be called synchronously at the start of the
 * handler, before any `await`. Template ids come from `config.subscribe.templates`, keyed by the
 * names the server uses (`shipping`, `postNotice`, `renewal`); a key without an id is not asked.
 * Each `accept…` result lets the server send that template to the user once: the results go to
 * gatedContent `subscribeGrant` (`{results: {<key>: <result>}}`), which counts the grants. The
 * promise resolves when the popup closes and never rejects: consent never blocks the flow.
 */
const config = require('../config');
const { getApi } = require('./api');

/** The keys the server knows, in the order they are asked. */
const KEYS = ['shipping', 'postNotice', 'renewal'];
/** One call asks at most 3 templates (older clients allow no more). */
const MAX_PER_CALL = 3;

function isAccepted(result) {
  return typeof result === 'string' && result.indexOf('accept') === 0;
}

/** Sends the results to the server's grant counter. Resolves the reply, or null on failure. */
function report(api, results) {
  if (!Object.keys(results).some((k) => isAccepted(results[k]))) return Promise.resolve(null);
  return Promise.resolve()
    .then(() => api.call('gatedContent', { action: 'subscribeGrant', results }))
    .catch((err) => {
      console.warn('subscribeGrant failed', err && err.code);
      return null;
    });
}

/**
 * Asks the user to allow the templates of `keys`. Call it synchronously in a tap handler.
 * Resolves `{results, accepted, error, reported}`: `results` maps each asked key to WeChat's
 * answer (`accept`, `reject`, `ban`, `filter`, `acceptWith…`), `accepted` the keys allowed,
 * `error` the `fail` argument when the popup could not be shown, `reported` the server report's
 * promise (already running; nobody has to wait for it).
 */
function askConsent(keys, options) {
  const o = options || {};
  const w = o.wx || (typeof wx !== 'undefined' ? wx : null);
  const templates = o.templates || (config.subscribe && config.subscribe.templates) || {};
  const asked = keys.filter((k, i) => KEYS.indexOf(k) >= 0 && templates[k] && keys.indexOf(k) === i).slice(0, MAX_PER_CALL);
  const none = (error) => Promise.resolve({ results: {}, accepted: [], error: error || null, reported: Promise.resolve(null) });
  if (!asked.length) return none();
  if (!w || typeof w.requestSubscribeMessage !== 'function') return none({ errMsg: 'requestSubscribeMessage unavailable' });
  return new Promise((resolve) => {
    let settled = false;
    const finish = (res, error) => {
      if (settled) return;
      settled = true;
      const results = {};
      for (const k of asked) if (res && typeof res[templates[k]] === 'string') results[k] = res[templates[k]];
      const accepted = asked.filter((k) => isAccepted(results[k]));
      const reported = accepted.length ? report(o.api || getApi(), results) : Promise.resolve(null);
      resolve({ results, accepted, error: error || null, reported });
    };
    try {
      w.requestSubscribeMessage({
        tmplIds: asked.map((k) => templates[k]),
        success: (res) => finish(res, null),
        // 20004: the user switched subscriptions off for this Mini Program; not asked again here.
        fail: (err) => finish(null, err || { errMsg: 'requestSubscribeMessage:fail' }),
      });
    } catch (err) {
      finish(null, { errMsg: String((err && err.message) || err) });
    }
  });
}

module.exports = { askConsent, isAccepted, KEYS, MAX_PER_CALL };
