/**
 * Privacy consent (用户隐私保护指引), wired once for the whole app.
 *
 * `install()` (app.js onLaunch) registers the single `wx.onNeedPrivacyAuthorization` listener:
 * WeChat calls it when a privacy API (`wx.chooseAddress`, `wx.chooseMedia`, the phone-number
 * button, …) is used before the user agreed to the current guide, and holds that call until the
 * listener's `resolve` is called. The listener keeps `resolve` and opens the `<privacy-popup>` of
 * the page on screen (every page that uses a privacy API renders one; the privacy scan test
 * checks it). The popup's agree button (`open-type="agreePrivacyAuthorization"`) resolves
 * `{event: 'agree', buttonId}`, which lets the held call go on; disagreeing resolves
 * `{event: 'disagree'}` and the call fails (errno 104). A registration overwrites the previous
 * one, so there is exactly one, here. Base library >= 2.32.3; older clients have no listener and
 * WeChat shows its own prompt.
 */

/** The id of the popup's agree button: WeChat checks `buttonId` against the tapped button. */
const AGREE_BUTTON_ID = 'privacy-agree';

/** Attached popups, the one on screen last. */
let popups = [];
/** `resolve`s of privacy calls waiting for the user's choice. */
let pending = [];
/** What triggered the wait (`eventInfo.referrer`, e.g. "chooseAddress"). */
let referrer = '';
let installed = false;

function top() {
  return popups[popups.length - 1] || null;
}

/** Resolves every waiting call with `decision` and closes the popups. */
function settle(decision) {
  const waiting = pending;
  pending = [];
  referrer = '';
  popups.forEach((p) => p.close());
  waiting.forEach((resolve) => resolve(decision));
  return waiting.length;
}

function onNeed(resolve, eventInfo) {
  pending.push(resolve);
  referrer = (eventInfo && eventInfo.referrer) || referrer;
  const popup = top();
  if (!popup) {
    // A page without <privacy-popup> cannot collect consent: let the call fail now instead of
    // holding it forever.
    console.warn(`privacy: no <privacy-popup> on this page for ${referrer || 'a privacy API'}`);
    settle({ event: 'disagree' });
    return;
  }
  popup.open(referrer);
  resolve({ event: 'exposureAuthorization' });
}

/** Registers the app's one listener. Returns whether it did (false on old base libraries). */
function install(w) {
  const x = w || (typeof wx !== 'undefined' ? wx : null);
  if (installed) return true;
  if (!x || typeof x.onNeedPrivacyAuthorization !== 'function') return false;
  x.onNeedPrivacyAuthorization(onNeed);
  installed = true;
  return true;
}

/** A popup came on screen (attached, or its page shown again). */
function attach(popup) {
  popups = popups.filter((p) => p !== popup).concat([popup]);
  if (pending.length) popup.open(referrer);
}

/** A popup left the screen (its page hidden or unloaded). */
function detach(popup) {
  popups = popups.filter((p) => p !== popup);
}

/** The user tapped the agree button (`buttonId` = its id). */
function agree(buttonId) {
  return settle({ event: 'agree', buttonId: buttonId || AGREE_BUTTON_ID });
}

/** The user declined: the waiting calls fail. */
function disagree() {
  return settle({ event: 'disagree' });
}

/** Whether a privacy call is waiting for the user. */
function isPending() {
  return pending.length > 0;
}

/** Tests: forget the listener, popups and waiting calls. */
function reset() {
  popups = [];
  pending = [];
  referrer = '';
  installed = false;
}

module.exports = { AGREE_BUTTON_ID, install, attach, detach, agree, disagree, isPending, reset };
