/**
 * Loading components and pages (pages are built with Component(), so the same loader works)
 * under miniprogram-simulate, plus helpers to set the client's platform and version.
 */
const fs = require('fs');
const path = require('path');
const simulate = require('miniprogram-simulate');

const ROOT = path.resolve(__dirname, '../..');

// simulate runs each component's JS with `require` and then deletes it from require.cache so a
// second load re-runs it; jest's module registry ignores that delete, so a component used by two
// pages in one test file would register only once. Run the file's source afresh instead, while
// its own requires (utils/*) still come from jest's registry and stay shared with the test.
const simUtils = require('miniprogram-simulate/src/utils');
simUtils.runJs = (filePath) => {
  const file = filePath.endsWith('.js') ? filePath : `${filePath}.js`;
  const src = fs.readFileSync(file, 'utf8');
  const dir = path.dirname(file);
  const localRequire = (rel) => require(rel.startsWith('.') ? path.resolve(dir, rel) : rel); // eslint-disable-line import/no-dynamic-require, global-require
  const mod = { exports: {} };
  // eslint-disable-next-line no-new-func
  new Function('require', 'module', 'exports', '__filename', '__dirname', src)(localRequire, mod, mod.exports, file, dir);
  return mod.exports;
};

/** Registers a component or page by its path from the project root, e.g. 'components/paywall/paywall'. */
function load(rel) {
  return simulate.load(path.join(ROOT, rel), { rootPath: ROOT, compiler: 'simulate' });
}

/** Renders and attaches to a fresh parent node, as the page would. */
function mount(id, props) {
  const comp = simulate.render(id, props);
  const parent = document.createElement('parent-wrapper');
  comp.attach(parent);
  return comp;
}

/** Makes wx report this client (platform, system, WeChat version, base library). */
function setClient(info) {
  global.wx.getDeviceInfo = () => ({ platform: info.platform, system: info.system });
  global.wx.getAppBaseInfo = () => ({ version: info.version, SDKVersion: info.SDKVersion || '3.6.0' });
}

const CLIENTS = {
  oldIos: { platform: 'ios', system: 'iOS 17.2', version: '8.0.50' },
  newIos: { platform: 'ios', system: 'iOS 17.2', version: '8.0.68' },
  android: { platform: 'android', system: 'Android 14', version: '8.0.50' },
};

/** The visible text of a rendered node: its text pieces, trimmed, joined by one space. */
function text(node) {
  const dom = node && node.dom ? node.dom : node;
  if (!dom) return '';
  const parts = [];
  const walk = (n) => {
    if (n.nodeType === 3) {
      const t = n.textContent.replace(/\s+/g, ' ').trim();
      if (t) parts.push(t);
    } else {
      n.childNodes.forEach(walk);
    }
  };
  walk(dom);
  return parts.join(' ');
}

/** Lets pending promise callbacks and setData flush. */
function flush() {
  return new Promise((r) => setTimeout(r, 0));
}

module.exports = { simulate, ROOT, load, mount, setClient, CLIENTS, text, flush };
