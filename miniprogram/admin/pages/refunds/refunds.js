/**
 * Admin refunds: find paid orders (createOrder `search`), refund all or part (`refund`).
 * A refund is never resent automatically. Each attempt has a refundNo; after a failure the
 * "retry" button resends the SAME refundNo, so the server applies it at most once.
 */
const { getApi } = require('../../../utils/api');
const { newRequestId } = require('../../../utils/ids');
const { errorMessage, orderStatusLabel } = require('../../../utils/labels');
const { formatFen, parseYuanToFen } = require('../../../utils/money');
const { isAdmin } = require('../../../utils/roles');
const { confirm } = require('../../../utils/ui');

const REFUNDABLE = ['paid', 'fulfilled', 'partially_refunded'];

function row(o, pending) {
  const refundable = REFUNDABLE.indexOf(o.status) >= 0 ? o.totalFen - (o.refundedFen || 0) : 0;
  return {
    id: o.id,
    outTradeNo: o.outTradeNo,
    statusText: orderStatusLabel(o.status),
    totalText: formatFen(o.totalFen),
    refundedText: o.refundedFen ? formatFen(o.refundedFen) : '',
    refundableFen: refundable,
    refundableText: refundable > 0 ? formatFen(refundable) : '',
    summary: (o.items || []).map((i) => `${i.title} × ${i.quantity}`).join('，'),
    retry: !!pending[o.id],
  };
}

Component({
  data: { denied: false, outTradeNo: '', orders: [], searched: false, busyId: '', statusText: '', errorText: '' },
  methods: {
    onLoad() {
      this.pending = {}; // orderId → {refundNo, amountFen} of an attempt whose outcome is unknown
      this.inputs = {};
      return this.guard();
    },
    async guard() {
      try {
        const session = await getApi().ensureSession();
        const admin = isAdmin(session.user);
        this.setData({ denied: !admin });
        if (admin) await this.search();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
    },
    onTradeNo(e) {
      this.setData({ outTradeNo: e.detail.value });
    },
    onAmount(e) {
      const id = e.currentTarget.dataset.id;
      this.inputs[id] = Object.assign({}, this.inputs[id], { amount: e.detail.value });
    },
    onReason(e) {
      const id = e.currentTarget.dataset.id;
      this.inputs[id] = Object.assign({}, this.inputs[id], { reason: e.detail.value });
    },
    async search() {
      this.setData({ errorText: '', statusText: '' });
      try {
        const req = { action: 'search', limit: 50 };
        const no = this.data.outTradeNo.trim();
        if (no) req.outTradeNo = no;
        else req.status = 'paid';
        const data = await getApi().call('createOrder', req);
        this.setData({ orders: (data.orders || []).map((o) => row(o, this.pending)), searched: true });
      } catch (err) {
        this.setData({ searched: true, orders: [], denied: !!err && err.code === 'FORBIDDEN', errorText: errorMessage(err) });
      }
    },
    async onRefund(e) {
      const orderId = e.currentTarget.dataset.id;
      const order = this.data.orders.find((o) => o.id === orderId);
      if (!order || this.data.busyId) return;
      const input = this.inputs[orderId] || {};
      let attempt = this.pending[orderId];
      if (!attempt) {
        const typed = (input.amount || '').trim();
        const amountFen = typed ? parseYuanToFen(typed) : order.refundableFen;
        if (amountFen === null || amountFen <= 0 || amountFen > order.refundableFen) {
          this.setData({ errorText: `退款金额需在 0.01 到 ${order.refundableText} 之间` });
          return;
        }
        if (!(await confirm('确认退款', `退款 ${formatFen(amountFen)}`))) return;
        attempt = { refundNo: newRequestId('rf'), amountFen, reason: (input.reason || '').trim() };
        this.pending[orderId] = attempt;
      }
      this.setData({ busyId: orderId, errorText: '', statusText: '' });
      try {
        const req = { action: 'refund', orderId, refundNo: attempt.refundNo, amountFen: attempt.amountFen };
        if (attempt.reason) req.reason = attempt.reason;
        await getApi().call('createOrder', req);
        delete this.pending[orderId];
        this.setData({ statusText: `已提交退款 ${formatFen(attempt.amountFen)}` });
        await this.search();
      } catch (err) {
        // A business refusal ends this attempt; a transport failure keeps it for a retry.
        const unknownOutcome = ['NETWORK_ERROR', 'HTTP_ERROR', 'BAD_REPLY', 'INTERNAL', 'UNAVAILABLE', 'PAYMENT_PROVIDER_ERROR'].indexOf(err && err.code) >= 0;
        if (!unknownOutcome) delete this.pending[orderId];
        this.setData({
          errorText: errorMessage(err),
          orders: this.data.orders.map((o) => (o.id === orderId ? Object.assign({}, o, { retry: unknownOutcome }) : o)),
        });
      }
      this.setData({ busyId: '' });
    },
  },
});
