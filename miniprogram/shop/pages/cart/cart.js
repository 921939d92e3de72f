/** Cart lines with quantities and the display total; checkout goes to the checkout page. */
const cart = require('../../../utils/cart');
const { formatFen, lineTotalFen } = require('../../../utils/money');
const { go } = require('../../../utils/ui');
const track = require('../../../utils/track');

Component({
  behaviors: [track.pageView('shop/pages/cart/cart')],
  data: { lines: [], totalText: '' },
  methods: {
    onShow() {
      this.refresh();
    },
    refresh() {
      const lines = cart.lines();
      this.setData({ lines, totalText: formatFen(lineTotalFen(lines)) });
    },
    onStep(e) {
      const { sku, delta } = e.currentTarget.dataset;
      const line = this.data.lines.find((l) => l.sku === sku);
      if (!line) return;
      cart.setQuantity(sku, line.quantity + Number(delta));
      this.refresh();
    },
    onCheckout() {
      go('/shop/pages/checkout/checkout?from=cart');
    },
    onShop() {
      go('/shop/pages/list/list');
    },
  },
});
