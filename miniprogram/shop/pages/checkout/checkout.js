/**
 * Checkout: address for physical goods (wx.chooseAddress, declared in app.json
 * requiredPrivateInfos; <privacy-popup> collects consent), consent to shipping notices,
 * createOrder, the payment UI, then the server's verdict by polling. One clientRequestId per checkout, kept while the user retries, so the
 * server returns the same order instead of a second one.
 */
const { getApi } = require('../../../utils/api');
const { loadCatalog } = require('../../../utils/catalog');
const cart = require('../../../utils/cart');
const { checkout } = require('../../../utils/checkout');
const { newRequestId } = require('../../../utils/ids');
const { errorMessage, UPDATE_WECHAT_HINT } = require('../../../utils/labels');
const { formatFen, lineTotalFen } = require('../../../utils/money');
const { canSell } = require('../../../utils/platform');
const { askConsent } = require('../../../utils/subscribe');
const config = require('../../../config');
const track = require('../../../utils/track');

const OUTCOME_TEXT = {
  paid: '支付成功',
  pending: '支付结果确认中，请稍后在订单中查看',
  cancelled: '已取消支付，可重新支付',
  closed: '订单已关闭',
};

const PRIVACY_DECLINED = '同意隐私保护指引后才能选择收货地址';

Component({
  behaviors: [track.pageView('shop/pages/checkout/checkout')],
  data: {
    items: [],
    loading: true,
    needsAddress: false,
    address: null,
    totalText: '',
    sellable: true,
    hint: UPDATE_WECHAT_HINT,
    busy: false,
    done: false,
    payLabel: '支付',
    statusText: '',
    errorText: '',
    orderId: '',
  },
  methods: {
    onLoad(query) {
      this.query = query || {};
      this.clientRequestId = newRequestId('ck');
      return this.load();
    },
    async load() {
      try {
        let items;
        if (this.query.from === 'cart') {
          items = cart.lines();
        } else {
          const sku = decodeURIComponent(this.query.sku || '');
          const quantity = Math.max(1, parseInt(this.query.quantity, 10) || 1);
          const products = await loadCatalog(getApi());
          const p = products.find((x) => x.sku === sku);
          items = p ? [{ sku: p.sku, title: p.title, priceFen: p.priceFen, kind: p.kind, channel: p.channel, quantity }] : [];
        }
        this.setData({
          items,
          loading: false,
          needsAddress: items.some((i) => i.kind === 'physical'),
          totalText: formatFen(lineTotalFen(items)),
          sellable: items.every((i) => canSell(i)),
        });
      } catch (err) {
        this.setData({ loading: false, errorText: errorMessage(err) });
      }
    },
    onChooseAddress() {
      wx.chooseAddress({
        success: (a) => {
          this.setData({
            address: {
              name: a.userName,
              phone: a.telNumber,
              province: a.provinceName,
              city: a.cityName,
              district: a.countyName,
              detail: a.detailInfo,
              postalCode: a.postalCode,
            },
            errorText: '',
          });
        },
        fail: (err) => {
          if (/cancel/.test((err && err.errMsg) || '')) return;
          // 104: the user declined the privacy guide in <privacy-popup>.
          this.setData({ errorText: err && err.errno === 104 ? PRIVACY_DECLINED : '暂时无法选择收货地址，请稍后再试' });
        },
      });
    },
    async onPay() {
      if (this.data.busy) return;
      if (this.data.needsAddress && !this.data.address) {
        this.setData({ errorText: '请选择收货地址' });
        return;
      }
      // Shipping notices: asked once per checkout, synchronously in this tap (WeChat shows the
      // popup only there), and before the payment sheet so the two do not overlap. Whatever the
      // answer, or if the popup fails, the checkout goes on.
      const consent = this.data.needsAddress && !this.shippingAsked ? askConsent(['shipping']) : null;
      if (consent) this.shippingAsked = true;
      this.setData({ busy: true, errorText: '', statusText: '' });
      const channel = (this.data.items[0] || {}).channel;
      track.checkoutStart(this.data.items.map((i) => i.sku), channel);
      try {
        if (consent) await consent;
        const result = await checkout({
          api: getApi(),
          wx,
          items: this.data.items,
          address: this.data.needsAddress ? this.data.address : undefined,
          clientRequestId: this.clientRequestId,
          poll: config.poll,
          onStage: (stage, extra) => {
            if (extra && extra.order) this.setData({ orderId: extra.order.id });
            if (stage === 'confirming') this.setData({ statusText: '正在确认支付结果…' });
          },
        });
        const paid = result.outcome === 'paid';
        track.paymentResult(result.order.id, paid, result.order.channel);
        if (paid && this.query.from === 'cart') cart.remove(this.data.items.map((i) => i.sku));
        this.setData({
          busy: false,
          done: paid || result.outcome === 'closed',
          orderId: result.order.id,
          statusText: OUTCOME_TEXT[result.outcome] || result.outcome,
          payLabel: result.outcome === 'cancelled' ? '重新支付' : '支付',
        });
        if (result.outcome === 'closed') this.clientRequestId = newRequestId('ck');
      } catch (err) {
        // the payment sheet itself failed: a payment attempt that did not go through
        if (err && err.code === 'PAYMENT_UI_FAILED' && this.data.orderId) track.paymentResult(this.data.orderId, false, channel);
        this.setData({ busy: false, errorText: errorMessage(err), payLabel: '重新支付' });
      }
    },
    onViewOrder() {
      wx.redirectTo({ url: `/shop/pages/order/order?id=${encodeURIComponent(this.data.orderId)}` });
    },
  },
});
