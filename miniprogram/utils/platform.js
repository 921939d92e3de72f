/**
 * Whether this WeChat client can take a virtual payment (`wx.requestVirtualPayment`).
 *
 * iOS needs iOS >= 15 and WeChat >= 8.0.68 (Apple's Mini Apps Partner Program); older iOS
 * clients must not show a price or a buy button for virtual goods, only a hint to update.
 * Every platform needs base library >= 2.19.2 for the API itself.
 * This is the one place these numbers live.
 */

const RULES = Object.freeze({
  iosMinWechat: '8.0.68',
  iosMinSystem: '15',
  minBaseLibrary: '2.19.2',
});

/** Compares dotted versions numerically: "8.0.9" < "8.0.68"; missing parts count as 0. */
function compareVersion(a, b) {
  const pa = String(a || '0').split('.');
  const pb = String(b || '0').split('.');
  const n = Math.max(pa.length, pb.length);
  for (let i = 0; i < n; i += 1) {
    const x = parseInt(pa[i] || '0', 10) || 0;
    const y = parseInt(pb[i] || '0', 10) || 0;
    if (x !== y) return x > y ? 1 : -1;
  }
  return 0;
}

/** "iOS 16.4.1" → "16.4.1"; "" when there is no version in the string. */
function systemVersion(system) {
  const m = /(\d+(?:\.\d+)*)/.exec(String(system || ''));
  return m ? m[1] : '';
}

/**
 * Decides from client info `{platform, system, version, SDKVersion}`.
 * Returns `{supported, reason}` where reason is null or one of
 * `ios_wechat_too_old`, `ios_system_too_old`, `base_library_too_old`.
 */
function virtualPaymentSupport(info) {
  const platform = String((info && info.platform) || '').toLowerCase();
  const sdk = info && info.SDKVersion;
  if (sdk && compareVersion(sdk, RULES.minBaseLibrary) < 0) {
    return { supported: false, reason: 'base_library_too_old' };
  }
  if (platform === 'ios') {
    if (compareVersion(info.version, RULES.iosMinWechat) < 0) {
      return { supported: false, reason: 'ios_wechat_too_old' };
    }
    const sys = systemVersion(info.system);
    if (sys && compareVersion(sys, RULES.iosMinSystem) < 0) {
      return { supported: false, reason: 'ios_system_too_old' };
    }
  }
  return { supported: true, reason: null };
}

/** Reads client info from the newer split APIs, falling back to getSystemInfoSync. */
function clientInfo(wxApi) {
  const w = wxApi || (typeof wx !== 'undefined' ? wx : null);
  if (!w) return {};
  try {
    if (typeof w.getDeviceInfo === 'function' && typeof w.getAppBaseInfo === 'function') {
      const device = w.getDeviceInfo() || {};
      const base = w.getAppBaseInfo() || {};
      return {
        platform: device.platform,
        system: device.system,
        version: base.version,
        SDKVersion: base.SDKVersion,
      };
    }
    if (typeof w.getSystemInfoSync === 'function') {
      const s = w.getSystemInfoSync() || {};
      return { platform: s.platform, system: s.system, version: s.version, SDKVersion: s.SDKVersion };
    }
  } catch (e) {
    // Unknown client: decide on what we have (nothing → supported, the server still decides).
  }
  return {};
}

/**
 * Whether an item `{kind, channel}` is a virtual good (anything not shipped). Without a kind,
 * the channel decides: xpay only carries virtual goods.
 */
function isVirtual(item) {
  if (!item) return false;
  if (item.kind) return item.kind !== 'physical';
  return item.channel === 'xpay';
}

/**
 * Whether to show a price and a buy button for an item `{kind, channel}` on this client:
 * physical goods always; virtual goods only where virtual payment works.
 */
function canSell(item, info) {
  if (!isVirtual(item)) return true;
  return virtualPaymentSupport(info === undefined ? clientInfo() : info).supported;
}

module.exports = { RULES, compareVersion, systemVersion, virtualPaymentSupport, clientInfo, isVirtual, canSell };
