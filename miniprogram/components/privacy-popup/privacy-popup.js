/**
 * The privacy consent popup. Put `<privacy-popup />` on every page that uses a privacy API;
 * utils/privacy.js opens it when WeChat holds such a call for consent. Agree
 * (`open-type="agreePrivacyAuthorization"`) lets the call go on, disagree makes it fail, and the
 * link opens the privacy guide (`wx.openPrivacyContract`).
 */
const privacy = require('../../utils/privacy');

/** What the held call is for, by WeChat's `referrer`. */
const PURPOSE = {
  chooseAddress: '选择收货地址',
  chooseMedia: '选择图片',
  chooseImage: '选择图片',
  'button.getPhoneNumber': '绑定手机号',
  getPhoneNumber: '绑定手机号',
};
const DEFAULT_CONTRACT = '《用户隐私保护指引》';

Component({
  data: { show: false, purpose: '', contractName: DEFAULT_CONTRACT, agreeId: privacy.AGREE_BUTTON_ID, errorText: '' },
  lifetimes: {
    attached() {
      privacy.attach(this);
    },
    detached() {
      privacy.detach(this);
    },
  },
  pageLifetimes: {
    show() {
      privacy.attach(this);
    },
    hide() {
      privacy.detach(this);
    },
  },
  methods: {
    /** Called by utils/privacy.js: a privacy call waits for the user. */
    open(referrer) {
      this.setData({ show: true, purpose: PURPOSE[referrer] || '', errorText: '' });
      if (typeof wx !== 'undefined' && typeof wx.getPrivacySetting === 'function') {
        wx.getPrivacySetting({
          success: (res) => {
            if (res && res.privacyContractName) this.setData({ contractName: res.privacyContractName });
          },
        });
      }
    },
    close() {
      if (this.data.show) this.setData({ show: false });
    },
    /** bindagreeprivacyauthorization of the agree button: WeChat records the consent. */
    onAgree() {
      privacy.agree(this.data.agreeId);
    },
    onDisagree() {
      privacy.disagree();
    },
    /** Keeps the page under the mask from scrolling. */
    noop() {},
    onOpenContract() {
      wx.openPrivacyContract({
        fail: () => this.setData({ errorText: '隐私保护指引暂时无法打开，请稍后再试' }),
      });
    },
  },
});
