/** @jest-environment node */
const { compareVersion, virtualPaymentSupport, canSell, clientInfo, RULES } = require('../../utils/platform');

describe('compareVersion', () => {
  test.each([
    ['8.0.68', '8.0.68', 0],
    ['8.0.9', '8.0.68', -1],
    ['8.0.68', '8.0.9', 1],
    ['8.1', '8.0.68', 1],
    ['8', '8.0.0', 0],
    ['10.0.0', '9.9.9', 1],
    ['', '0', 0],
    ['2.19.2', '2.19.10', -1],
  ])('%s vs %s → %i', (a, b, r) => {
    expect(compareVersion(a, b)).toBe(r);
  });
});

describe('virtualPaymentSupport', () => {
  const ios = (version, system, SDKVersion) => ({ platform: 'ios', version, system, SDKVersion: SDKVersion || '3.6.0' });

  test('the rule numbers', () => {
    expect(RULES).toEqual({ iosMinWechat: '8.0.68', iosMinSystem: '15', minBaseLibrary: '2.19.2' });
  });

  test.each([
    [ios('8.0.67', 'iOS 17.1'), false, 'ios_wechat_too_old'],
    [ios('8.0.9', 'iOS 17.1'), false, 'ios_wechat_too_old'],
    [ios('8.0.68', 'iOS 17.1'), true, null],
    [ios('8.0.70', 'iOS 15.0'), true, null],
    [ios('8.0.70', 'iOS 14.8.1'), false, 'ios_system_too_old'],
    [ios('8.0.70', 'iPadOS 16.2'), true, null],
    [{ platform: 'android', version: '8.0.1', system: 'Android 10', SDKVersion: '3.0.0' }, true, null],
    [{ platform: 'android', version: '8.0.1', system: 'Android 10', SDKVersion: '2.19.1' }, false, 'base_library_too_old'],
    [{ platform: 'windows', version: '3.9.0', SDKVersion: '3.3.0' }, true, null],
    [{}, true, null],
  ])('%j → %s', (info, supported, reason) => {
    expect(virtualPaymentSupport(info)).toEqual({ supported, reason });
  });
});

describe('canSell', () => {
  const oldIos = { platform: 'ios', version: '8.0.50', system: 'iOS 17', SDKVersion: '3.0.0' };
  test('physical goods always show a price', () => {
    expect(canSell({ kind: 'physical', channel: 'wxpay' }, oldIos)).toBe(true);
  });
  test('virtual goods hide the price on an old iOS client', () => {
    expect(canSell({ kind: 'membership', channel: 'xpay' }, oldIos)).toBe(false);
    expect(canSell({ kind: 'content_unlock', channel: 'wxpay' }, oldIos)).toBe(false);
    expect(canSell({ channel: 'xpay' }, oldIos)).toBe(false);
    expect(canSell({ kind: 'membership', channel: 'xpay' }, { ...oldIos, version: '8.0.68' })).toBe(true);
  });
});

describe('clientInfo', () => {
  test('prefers getDeviceInfo + getAppBaseInfo', () => {
    const w = {
      getDeviceInfo: () => ({ platform: 'ios', system: 'iOS 16.0' }),
      getAppBaseInfo: () => ({ version: '8.0.40', SDKVersion: '3.1.0' }),
      getSystemInfoSync: () => ({ platform: 'android' }),
    };
    expect(clientInfo(w)).toEqual({ platform: 'ios', system: 'iOS 16.0', version: '8.0.40', SDKVersion: '3.1.0' });
  });
  test('falls back to getSystemInfoSync', () => {
    const w = { getSystemInfoSync: () => ({ platform: 'android', system: 'Android 12', version: '8.0.5', SDKVersion: '3.0.1' }) };
    expect(clientInfo(w)).toEqual({ platform: 'android', system: 'Android 12', version: '8.0.5', SDKVersion: '3.0.1' });
  });
});
