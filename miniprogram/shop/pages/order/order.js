/** One order with its server status; an unpaid order can be cancelled (after a confirm). */
const { getApi } = require('../../../utils/api');
const { errorMessage, orderStatusLabel, formatTime } = require('../../../utils/labels');
const { formatFen } = require('../../../utils/money');
const { confirm } = require('../../../utils/ui');

Component({
  data: { order: null, loading: true, busy: false, errorText: '', statusText: '', createdText: '', paidText: '', totalText: '', refundedText: '', lines: [], cancelable: false },
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
