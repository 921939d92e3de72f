/**
 * Logs in on launch (wx.login → login) and installs the privacy-consent listener
 * (utils/privacy.js). The session token stays in globalData.session only;
 * utils/api.js refreshes it before expiry and on UNAUTHENTICATED.
 */
const config = require('./config');
const { getApi } = require('./utils/api');
const privacy = require('./utils/privacy');

App({
  globalData: {
    session: null,
    cart: [],
  },

  onLaunch() {
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
  },
});
