/** The catalog in a scroll-view; tap a product for its page. */
const { getApi } = require('../../../utils/api');
const { loadCatalog } = require('../../../utils/catalog');
const { errorMessage } = require('../../../utils/labels');
const cart = require('../../../utils/cart');
const { go } = require('../../../utils/ui');
const track = require('../../../utils/track');

Component({
  behaviors: [track.pageView('shop/pages/list/list')],
  data: { products: [], loading: true, errorText: '', cartCount: 0 },
  methods: {
    onLoad() {
      return this.load();
    },
    onShow() {
      this.setData({ cartCount: cart.count() });
    },
    async onPullDownRefresh() {
      await this.load(true);
      if (wx.stopPullDownRefresh) wx.stopPullDownRefresh();
    },
    async load(force) {
      this.setData({ loading: true, errorText: '' });
      try {
        const products = await loadCatalog(getApi(), { force: force === true });
        this.setData({ products: products.filter((p) => p.active !== false), loading: false });
      } catch (err) {
        this.setData({ loading: false, errorText: errorMessage(err) });
      }
    },
    onSelect(e) {
      go(`/shop/pages/product/product?sku=${encodeURIComponent(e.detail.sku)}`);
    },
    onCart() {
      go('/shop/pages/cart/cart');
    },
  },
});
