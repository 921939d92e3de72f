/**
 * One product: price, quantity, add to cart (physical goods) or buy now. Virtual goods on a
 * client without virtual payment show the update hint instead of a buy button.
 */
const { getApi } = require('../../../utils/api');
const { findProduct } = require('../../../utils/catalog');
const { errorMessage, UPDATE_WECHAT_HINT } = require('../../../utils/labels');
const { canSell } = require('../../../utils/platform');
const cart = require('../../../utils/cart');
const { go, toast } = require('../../../utils/ui');
const track = require('../../../utils/track');

Component({
  behaviors: [track.pageView('shop/pages/product/product')],
  data: {
    product: null,
    loading: true,
    errorText: '',
    quantity: 1,
    sellable: true,
    soldOut: false,
    isPhysical: false,
    stockText: '',
    hint: UPDATE_WECHAT_HINT,
  },
  methods: {
    onLoad(query) {
      this.sku = decodeURIComponent((query && query.sku) || '');
      return this.load();
    },
    async load() {
      try {
        const product = await findProduct(getApi(), this.sku);
        if (!product) {
          this.setData({ loading: false, errorText: errorMessage({ code: 'PRODUCT_NOT_FOUND' }) });
          return;
        }
        track.productView(product.sku);
        const counted = typeof product.stock === 'number';
        this.setData({
          product,
          loading: false,
          sellable: canSell(product),
          isPhysical: product.kind === 'physical',
          soldOut: counted && product.stock <= 0,
          stockText: counted ? (product.stock > 0 ? `库存 ${product.stock}` : '已售罄') : '',
        });
      } catch (err) {
        this.setData({ loading: false, errorText: errorMessage(err) });
      }
    },
    onMinus() {
      if (this.data.quantity > 1) this.setData({ quantity: this.data.quantity - 1 });
    },
    onPlus() {
      const p = this.data.product;
      const max = p && typeof p.stock === 'number' ? p.stock : 99;
      if (this.data.quantity < max) this.setData({ quantity: this.data.quantity + 1 });
    },
    onAddToCart() {
      cart.add(this.data.product, this.data.quantity);
      track.addToCart(this.data.product.sku, this.data.quantity);
      toast('已加入购物车', 'success');
    },
    onShareAppMessage() {
      const p = this.data.product;
      track.share('shop/pages/product/product');
      return p ? { title: p.title, path: `/shop/pages/product/product?sku=${encodeURIComponent(p.sku)}` } : {};
    },
    onBuyNow() {
      const { product, quantity } = this.data;
      go(`/shop/pages/checkout/checkout?sku=${encodeURIComponent(product.sku)}&quantity=${quantity}`);
    },
  },
});
