/**
 * One order with its server status; an unpaid order can be cancelled (after a confirm). A
 * shipped order shows how it travels and its waybills, with a confirm-receipt button that opens
 * WeChat's own confirm page (`wx.openBusinessView`, `weappOrderConfirm`). Its result is not
 * trusted: when the buyer comes back, the page asks the server (`syncShipping`, which asks
 * WeChat's `get_order`) and shows what it says.
 */
const { getApi } = require('../../../utils/api');
const { errorMessage, orderStatusLabel, shippingStateLabel, logisticsLabel, formatTime } = require('../../../utils/labels');
const { formatFen } = require('../../../utils/money');
const { confirm } = require('../../../utils/ui');
const track = require('../../../utils/track');

/** What the page shows of `order.shipping` (null when the order has none). */
function shippingView(s) {
  if (!s) return null;
  return {
    stateText: shippingStateLabel(s.state),
    logisticsText: s.logisticsType ? logisticsLabel(s.logisticsType) : '',
    packages: (s.packages || []).map((p, i) => ({ key: `${i}`, text: `${p.expressCompany || ''} ${p.trackingNo || ''}`.trim() })),
    shippedText: s.shippedAt ? formatTime(s.shippedAt) : '',
    receivedText: s.receivedAt ? formatTime(s.receivedAt) : '',
    settledText: s.settledAt ? formatTime(s.settledAt) : '',
    deadlineText: s.state === 'awaiting' ? formatTime(s.deadlineAt) : '',
    canConfirm: s.state === 'shipped' && !!s.transactionId && s.logisticsType !== 'virtual',
  };
}

Component({
  behaviors: [track.pageView('shop/pages/order/order')],
  data: { order: null, loading: true, busy: false, errorText: '', statusText: '', createdText: '', paidText: '', totalText: '', refundedText: '', lines: [], cancelable: false, shipping: null },
  methods: {
    onLoad(query) {
      this.orderId = decodeURIComponent((query && query.id) || '');
      return this.load();
    },
    show(order) {
      this.setData({
        order,
        loading: false,
        errorText: '',
        statusText: orderStatusLabel(order.status),
        createdText: formatTime(order.createdAt),
        paidText: order.paidAt ? formatTime(order.paidAt) : '',
        totalText: formatFen(order.totalFen),
        refundedText: order.refundedFen ? formatFen(order.refundedFen) : '',
        lines: (order.items || []).map((i) => Object.assign({}, i, { priceText: formatFen(i.unitPriceFen) })),
        cancelable: order.status === 'created',
        shipping: shippingView(order.shipping),
      });
    },
    async load() {
      try {
        const data = await getApi().call('createOrder', { action: 'get', orderId: this.orderId });
        this.show(data.order);
      } catch (err) {
        this.setData({ loading: false, errorText: errorMessage(err) });
      }
    },
    onConfirmReceipt() {
      const shipping = this.data.order && this.data.order.shipping;
      if (!shipping || !shipping.transactionId) return;
      if (typeof wx.openBusinessView !== 'function') {
        this.setData({ errorText: errorMessage({ code: 'CONFIRM_RECEIPT_UNSUPPORTED' }) });
        return;
      }
      this.confirming = true;
      wx.openBusinessView({
        businessType: 'weappOrderConfirm',
        extraData: { transaction_id: shipping.transactionId },
        fail: () => {
          this.confirming = false;
          this.setData({ errorText: errorMessage({ code: 'CONFIRM_RECEIPT_UNSUPPORTED' }) });
        },
      });
    },
    /** Back from WeChat's confirm page (whatever it says): the server asks WeChat. */
    onShow() {
      if (!this.confirming) return undefined;
      this.confirming = false;
      return this.sync();
    },
    async sync() {
      this.setData({ busy: true });
      try {
        const data = await getApi().call('createOrder', { action: 'syncShipping', orderId: this.orderId });
        this.show(data.order);
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
    async onCancel() {
      if (!(await confirm('取消订单', '确定取消这个订单吗？'))) return;
      this.setData({ busy: true });
      try {
        // Not retried automatically: a cancel is a state change.
        const data = await getApi().call('createOrder', { action: 'cancel', orderId: this.orderId });
        this.show(data.order);
      } catch (err) {
        // The order moved on (paid or closed meanwhile): show its real state, then why.
        if (err && err.code === 'ORDER_NOT_CANCELABLE') await this.load();
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
  },
});
