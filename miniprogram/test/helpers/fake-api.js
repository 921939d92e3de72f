/**
 * A stand-in for utils/api.js in page tests: replies per `function.action`, every call recorded.
 * A handler is a value, a function of data, or an Error to throw.
 */
const { ApiError, setApi } = require('../../utils/api');
const { resetCatalogCache } = require('../../utils/catalog');
const { createTracker, setTracker } = require('../../utils/track');

function fakeApi(handlers, user) {
  const calls = [];
  let currentUser = user === undefined ? { openid: 'o-user', role: 'user' } : user;
  const api = {
    calls,
    call: jest.fn(async (name, data) => {
      const action = (data && data.action) || { login: 'login', createOrder: 'create', gatedContent: 'get', ugcUpload: 'create' }[name];
      calls.push({ name, action, data });
      const h = handlers[`${name}.${action}`];
      if (h === undefined) throw new ApiError('NOT_MOCKED', `${name}.${action} not mocked`);
      const v = typeof h === 'function' ? await h(data) : h;
      if (v instanceof Error) throw v;
      return v;
    }),
    ensureSession: jest.fn(async () => ({ token: 't', expiresAt: 9e9, user: currentUser })),
    login: jest.fn(async () => ({ token: 't', expiresAt: 9e9, user: currentUser })),
    refreshUser: jest.fn(async () => currentUser),
    currentUser: () => currentUser,
    replaceToken: jest.fn(),
    uploadFile: jest.fn(async (filePath, cloudPath) => `cloud://env/${cloudPath}`),
    setUser(u) {
      currentUser = u;
    },
    of(name, action) {
      return calls.filter((c) => c.name === name && c.action === action);
    },
  };
  resetCatalogCache();
  setApi(api);
  // A fresh tracker per test (no timer: it sends on page hide/unload and at its batch size),
  // so no event of one test reaches the next one's api.
  setTracker(createTracker({ intervalMs: 0 }));
  return api;
}

module.exports = { fakeApi, ApiError };
