/**
 * The cart: lines `{sku, title, priceFen, kind, channel, quantity}` kept in app memory
 * (globalData.cart). Prices here are for display only; createOrder prices on the server.
 * Only physical goods go in the cart; virtual goods are bought directly.
 */
const local = { cart: [] };

function holder() {
  if (typeof getApp === 'function') {
    const app = getApp();
    if (app && app.globalData) {
      if (!Array.isArray(app.globalData.cart)) app.globalData.cart = [];
      return app.globalData;
    }
  }
  return local;
}

function lines() {
  return holder().cart.slice();
}

function save(next) {
  holder().cart = next;
  return next.slice();
}

/** Adds `quantity` of a product, merging with an existing line. */
function add(product, quantity) {
  const q = Number.isSafeInteger(quantity) && quantity > 0 ? quantity : 1;
  const next = lines();
  const i = next.findIndex((l) => l.sku === product.sku);
  if (i >= 0) next[i] = Object.assign({}, next[i], { quantity: next[i].quantity + q });
  else {
    next.push({ sku: product.sku, title: product.title, priceFen: product.priceFen, kind: product.kind, channel: product.channel, quantity: q });
  }
  return save(next);
}

/** Sets a line's quantity; 0 removes it. */
function setQuantity(sku, quantity) {
  const next = lines()
    .map((l) => (l.sku === sku ? Object.assign({}, l, { quantity }) : l))
    .filter((l) => l.quantity > 0);
  return save(next);
}

function remove(skus) {
  const drop = new Set(skus);
  return save(lines().filter((l) => !drop.has(l.sku)));
}

function clear() {
  return save([]);
}

function count() {
  return lines().reduce((n, l) => n + l.quantity, 0);
}

module.exports = { lines, add, setQuantity, remove, clear, count };
