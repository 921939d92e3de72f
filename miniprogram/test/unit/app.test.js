/**
 * App launch: wx.login → login, session kept in globalData (memory) only.
 * @jest-environment node
 */
const { fakeWx, loginReply } = require('../helpers/fake-wx');

test('onLaunch logs in and keeps the session in globalData, never in storage', async () => {
  const w = fakeWx([loginReply('tok-launch', 4102444800, { openid: 'o-1', role: 'user' })]);
  w.setStorage = jest.fn();
  w.setStorageSync = jest.fn();
  global.wx = w;
  let app = null;
  global.App = (def) => {
    app = def;
  };
  global.getApp = () => app;
  // A fresh module registry: app.js gets its own utils/api client built on this wx.
  jest.isolateModules(() => {
    require('../../app'); // eslint-disable-line global-require
  });
  app.onLaunch();
  await app.loginPromise;
  expect(app.globalData.session).toEqual({ token: 'tok-launch', expiresAt: 4102444800, user: { openid: 'o-1', role: 'user' } });
  expect(w.calls[0].opts.data).toEqual({ name: 'login', data: { action: 'login', code: 'code-1' } });
  expect(w.setStorage).not.toHaveBeenCalled();
  expect(w.setStorageSync).not.toHaveBeenCalled();
  delete global.App;
  delete global.getApp;
  delete global.wx;
});

test('a failed launch login is remembered by code, and pages can retry', async () => {
  const w = fakeWx([{ statusCode: 400, data: { ok: false, error: { code: 'INVALID_CODE', message: 'bad' } } }]);
  global.wx = w;
  let app = null;
  global.App = (def) => {
    app = def;
  };
  global.getApp = () => app;
  jest.isolateModules(() => {
    require('../../app'); // eslint-disable-line global-require
  });
  app.onLaunch();
  await expect(app.loginPromise).resolves.toBeNull();
  expect(app.globalData.loginError).toEqual({ code: 'INVALID_CODE' });
  expect(app.globalData.session).toBeNull();
  delete global.App;
  delete global.getApp;
  delete global.wx;
});

test('onLaunch registers the one privacy-consent listener', async () => {
  const w = fakeWx([loginReply('tok-privacy', 4102444800)]);
  w.onNeedPrivacyAuthorization = jest.fn();
  global.wx = w;
  let app = null;
  global.App = (def) => {
    app = def;
  };
  global.getApp = () => app;
  jest.isolateModules(() => {
    require('../../app'); // eslint-disable-line global-require
  });
  app.onLaunch();
  await app.loginPromise;
  expect(w.onNeedPrivacyAuthorization).toHaveBeenCalledTimes(1);
  expect(typeof w.onNeedPrivacyAuthorization.mock.calls[0][0]).toBe('function');
  delete global.App;
  delete global.getApp;
  delete global.wx;
});

test('a launch from an Official Account template message is reported once after login', async () => {
  const w = fakeWx([
    loginReply('tok-oa', 4102444800, { openid: 'o-2', role: 'user' }),
    { statusCode: 200, data: { ok: true, data: { touch: true, new: true, kind: 'refund_settled' } } },
  ]);
  global.wx = w;
  let app = null;
  global.App = (def) => {
    app = def;
  };
  global.getApp = () => app;
  jest.isolateModules(() => {
    require('../../app'); // eslint-disable-line global-require
  });
  const options = { path: 'pages/orders/orders', query: { id: 'O1', from: 'oa_tpl', tpl: 'refund_settled', m: 'n_abc' } };
  app.onLaunch(options);
  await expect(app.reportLaunch(options)).resolves.toEqual({ touch: true, new: true, kind: 'refund_settled' });
  app.onShow(options); // the same open is not reported twice
  expect(w.calls).toHaveLength(2);
  expect(w.calls[1].opts.data).toEqual({
    name: 'login',
    data: { action: 'launch', query: { from: 'oa_tpl', tpl: 'refund_settled', m: 'n_abc' } },
  });
  expect(app.reportLaunch({ query: { id: 'O1' } })).toBeNull();
  delete global.App;
  delete global.getApp;
  delete global.wx;
});
