/**
 * Logs in on launch (wx.login → login) and installs the privacy-consent listener
 * (utils/privacy.js). The session token stays in globalData.session only;
 * utils/api.js refreshes it before expiry and on UNAUTHENTICATED.
 */
const config = require('./config');
const { getApi } = require('./utils/api');
const privacy = require('./utils/privacy');
const track = require('./utils/track');

App({
  globalData: {
    session: null,
    cart: [],
  },

  onLaunch(options) {
    // The one wx.onNeedPrivacyAuthorization listener; pages show it with <privacy-popup>.
    privacy.install();
    if (config.mode !== 'dev' && wx.cloud) {
      wx.cloud.init({ env: config.env || undefined, traceUser: false });
    }
    // Pages call getApi().ensureSession(), which joins this login while it is in flight.
    this.loginPromise = getApi()
      .login()
      .catch((err) => {
        this.globalData.loginError = { code: err && err.code };
        return null;
      });
    this.reportLaunch(options);
  },

  onShow(options) {
    this.reportLaunch(options);
  },

  // Analytics waiting in memory go out before the app may be suspended (utils/track.js).
  onHide() {
    track.flush();
  },

  /**
   * A page opened from an Official Account template message carries
   * `from=oa_tpl&tpl=…&m=…`: report it once logged in (login `launch`), so the open counts as
   * a touch for attribution. Best effort: a failure changes nothing for the user.
   */
  reportLaunch(options) {
    const query = (options && options.query) || {};
    if (query.from !== 'oa_tpl' || !query.m) return null;
    const key = String(query.m);
    this.reported = this.reported || {};
    if (this.reported[key]) return this.reported[key];
    const { from, tpl, m } = query;
    this.reported[key] = Promise.resolve(this.loginPromise)
      .then((session) => (session ? getApi().call('login', { action: 'launch', query: { from, tpl, m } }) : null))
      .catch(() => null);
    return this.reported[key];
  },
});
