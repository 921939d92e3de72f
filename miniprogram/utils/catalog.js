/** The product catalog (createOrder `catalog`), cached in memory for a minute. */
const TTL_MS = 60000;
let cache = null;

async function loadCatalog(api, opts) {
  const o = opts || {};
  const now = o.now ? o.now() : Date.now();
  if (!o.force && cache && cache.api === api && now - cache.at < TTL_MS) return cache.products;
  const data = await api.call('createOrder', { action: 'catalog' });
  const products = (data && data.products) || [];
  cache = { api, at: now, products };
  return products;
}

async function findProduct(api, sku) {
  const products = await loadCatalog(api);
  return products.find((p) => p.sku === sku) || null;
}

function resetCatalogCache() {
  cache = null;
}

module.exports = { loadCatalog, findProduct, resetCatalogCache };
