/**
 * The privacy popup and the app's one wx.onNeedPrivacyAuthorization listener (utils/privacy.js):
 * a held privacy call opens the popup of the page on screen; agree resolves
 * {event:'agree', buttonId}, disagree {event:'disagree'}; the link opens the privacy guide.
 */
const fs = require('fs');
const path = require('path');
const { load, mount, text, flush, ROOT } = require('../helpers/sim');
const { fakeApi } = require('../helpers/fake-api');
const privacy = require('../../utils/privacy');

/** Installs the listener on a fake wx; returns a function that fires it like WeChat does. */
function installed() {
  let listener = null;
  wx.onNeedPrivacyAuthorization = jest.fn((fn) => {
    listener = fn;
  });
  expect(privacy.install(wx)).toBe(true);
  return (referrer) => {
    const resolve = jest.fn();
    listener(resolve, { referrer });
    return resolve;
  };
}

beforeEach(() => {
  privacy.reset();
  delete wx.getPrivacySetting;
  wx.openPrivacyContract = jest.fn();
});

describe('privacy popup', () => {
  let id;
  beforeAll(() => {
    id = load('components/privacy-popup/privacy-popup');
  });

  test('hidden until WeChat holds a privacy call; agree resolves {event:"agree", buttonId} of the agree button', async () => {
    const need = installed();
    const popup = mount(id);
    expect(popup.querySelector('.privacy-mask')).toBeUndefined();
    const resolve = need('chooseAddress');
    expect(resolve).toHaveBeenCalledWith({ event: 'exposureAuthorization' });
    expect(text(popup.querySelector('.privacy-body'))).toBe('在选择收货地址前，请阅读并同意 《用户隐私保护指引》 。不同意将无法使用该功能，其他功能不受影响。');
    const agree = popup.querySelector('.privacy-agree');
    // The rendered button carries the id WeChat checks; its open-type is in the template (the
    // simulator does not reflect button attributes).
    expect(agree._exparserNode.id).toBe(privacy.AGREE_BUTTON_ID);
    const wxml = fs.readFileSync(path.join(ROOT, 'components/privacy-popup/privacy-popup.wxml'), 'utf8');
    const button = /<button[^>]*class="privacy-agree"[^>]*>/.exec(wxml)[0];
    expect(button).toContain('open-type="agreePrivacyAuthorization"');
    expect(button).toContain('bindagreeprivacyauthorization="onAgree"');
    expect(button).toContain('id="{{agreeId}}"');
    agree.dispatchEvent('agreeprivacyauthorization');
    await flush();
    expect(resolve).toHaveBeenLastCalledWith({ event: 'agree', buttonId: 'privacy-agree' });
    expect(resolve).toHaveBeenCalledTimes(2);
    expect(popup.querySelector('.privacy-mask')).toBeUndefined();
    expect(privacy.isPending()).toBe(false);
  });

  test('disagree resolves {event:"disagree"} and closes; two held calls are answered together', async () => {
    const need = installed();
    const popup = mount(id);
    const first = need('chooseMedia');
    const second = need('chooseMedia');
    expect(text(popup.querySelector('.privacy-body'))).toContain('在选择图片前');
    popup.querySelector('.privacy-disagree').dispatchEvent('tap');
    await flush();
    for (const r of [first, second]) expect(r).toHaveBeenLastCalledWith({ event: 'disagree' });
    expect(popup.querySelector('.privacy-mask')).toBeUndefined();
  });

  test('the guide name is a link to wx.openPrivacyContract, with the name from getPrivacySetting', async () => {
    wx.getPrivacySetting = jest.fn((o) => o.success({ needAuthorization: true, privacyContractName: '《wemint小程序隐私保护指引》' }));
    const need = installed();
    const popup = mount(id);
    const resolve = need('button.getPhoneNumber');
    await flush();
    const link = popup.querySelector('.privacy-link');
    expect(text(link)).toBe('《wemint小程序隐私保护指引》');
    expect(text(popup.querySelector('.privacy-body'))).toContain('在绑定手机号前');
    link.dispatchEvent('tap');
    await flush();
    expect(wx.openPrivacyContract).toHaveBeenCalledTimes(1);
    // Reading the guide answers nothing: the call still waits for agree or disagree.
    expect(resolve).toHaveBeenCalledTimes(1);
    expect(privacy.isPending()).toBe(true);
  });

  test('the guide failing to open says so and keeps the popup', async () => {
    wx.openPrivacyContract = jest.fn((o) => o.fail({ errMsg: 'openPrivacyContract:fail' }));
    const need = installed();
    const popup = mount(id);
    need('chooseAddress');
    popup.querySelector('.privacy-link').dispatchEvent('tap');
    await flush();
    expect(text(popup.querySelector('.privacy-error'))).toBe('隐私保护指引暂时无法打开，请稍后再试');
    expect(popup.querySelector('.privacy-mask')).toBeTruthy();
  });

  test('only the popup on screen opens; a hidden page\'s popup reopens when its page shows again', async () => {
    const need = installed();
    const below = mount(id);
    const onTop = mount(id);
    need('chooseAddress');
    expect(onTop.querySelector('.privacy-mask')).toBeTruthy();
    expect(below.querySelector('.privacy-mask')).toBeUndefined();
    onTop.triggerPageLifeTime('hide'); // e.g. the privacy guide page opened over it
    onTop.triggerPageLifeTime('show');
    expect(onTop.querySelector('.privacy-mask')).toBeTruthy();
    onTop.detach();
    below.triggerPageLifeTime('show');
    expect(below.querySelector('.privacy-mask')).toBeTruthy();
    below.querySelector('.privacy-agree').dispatchEvent('agreeprivacyauthorization');
    await flush();
    expect(privacy.isPending()).toBe(false);
  });

  test('no popup on screen: the held call is declined at once instead of waiting forever', () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {});
    const need = installed();
    const resolve = need('chooseAddress');
    expect(resolve).toHaveBeenCalledWith({ event: 'disagree' });
    expect(privacy.isPending()).toBe(false);
    expect(warn).toHaveBeenCalled();
    warn.mockRestore();
  });

  test('installed once: a second install does not register again; old base libraries have no listener', () => {
    installed();
    expect(privacy.install(wx)).toBe(true);
    expect(wx.onNeedPrivacyAuthorization).toHaveBeenCalledTimes(1);
    privacy.reset();
    expect(privacy.install({})).toBe(false);
  });
});

describe('privacy popup on the checkout page', () => {
  let id;
  beforeAll(() => {
    id = load('shop/pages/checkout/checkout');
  });

  test('wx.chooseAddress held for consent: agreeing in the page\'s popup lets it return the address', async () => {
    const need = installed();
    fakeApi({ 'createOrder.catalog': { products: [{ sku: 'tee', title: 'T恤', priceFen: 1999, channel: 'wxpay', kind: 'physical', active: true }] } });
    // WeChat's behaviour: the call waits for the listener's resolve; agree → success.
    wx.chooseAddress = jest.fn((o) => {
      const resolve = need('chooseAddress');
      resolve.mockImplementation((r) => {
        if (r.event === 'agree') o.success({ userName: '张三', telNumber: '13800000000', provinceName: '广东省', cityName: '深圳市', countyName: '南山区', detailInfo: '1 号', postalCode: '518000' });
        if (r.event === 'disagree') o.fail({ errMsg: 'chooseAddress:fail privacy permission is not authorized', errno: 104 });
      });
    });
    const page = mount(id);
    await page.instance.onLoad({ sku: 'tee', quantity: '1' });
    await flush();
    page.instance.onChooseAddress();
    const mask = page.querySelector('#privacy-popup >>> .privacy-mask');
    expect(mask).toBeTruthy();
    page.querySelector('#privacy-popup >>> .privacy-agree').dispatchEvent('agreeprivacyauthorization');
    await flush();
    expect(page.data.address).toEqual(expect.objectContaining({ name: '张三', detail: '1 号' }));
    expect(page.querySelector('#privacy-popup >>> .privacy-mask')).toBeUndefined();

    // Declining leaves the page as it was.
    page.setData({ address: null });
    page.instance.onChooseAddress();
    page.querySelector('#privacy-popup >>> .privacy-disagree').dispatchEvent('tap');
    await flush();
    expect(page.data.address).toBeNull();
    expect(text(page.querySelector('.error'))).toBe('同意隐私保护指引后才能选择收货地址');
  });
});
