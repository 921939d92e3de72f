/** The caller's orders, filtered by status, paged with the `before` cursor. */
const { getApi } = require('../../../utils/api');
const { errorMessage, orderStatusLabel, formatTime } = require('../../../utils/labels');
const { formatFen } = require('../../../utils/money');
const { go } = require('../../../utils/ui');
const track = require('../../../utils/track');

const PAGE = 20;
const TABS = [
  { value: '', label: '全部' },
  { value: 'created', label: '待支付' },
  { value: 'paid', label: '已支付' },
  { value: 'refunded', label: '已退款' },
  { value: 'closed', label: '已关闭' },
];

/** What a list row shows of an order. */
function row(o) {
  const titles = (o.items || []).map((i) => `${i.title} × ${i.quantity}`);
  return {
    id: o.id,
    outTradeNo: o.outTradeNo,
    statusText: orderStatusLabel(o.status),
    totalText: formatFen(o.totalFen),
    createdText: formatTime(o.createdAt),
    summary: titles.join('，'),
  };
}

Component({
  behaviors: [track.pageView('shop/pages/orders/orders')],
  data: { tabs: TABS, status: '', orders: [], next: null, loading: true, loadingMore: false, errorText: '' },
  methods: {
    onShow() {
      return this.load();
    },
    async onPullDownRefresh() {
      await this.load();
      if (wx.stopPullDownRefresh) wx.stopPullDownRefresh();
    },
    async fetch(before) {
      const data = { action: 'list', limit: PAGE };
      if (this.data.status) data.status = this.data.status;
      if (before) data.before = before;
      return getApi().call('createOrder', data);
    },
    async load() {
      this.setData({ loading: true, errorText: '' });
      try {
        const data = await this.fetch(null);
        this.setData({ orders: (data.orders || []).map(row), next: data.next || null, loading: false });
      } catch (err) {
        this.setData({ orders: [], loading: false, errorText: errorMessage(err) });
      }
    },
    async onMore() {
      if (!this.data.next || this.data.loadingMore) return;
      this.setData({ loadingMore: true });
      try {
        const data = await this.fetch(this.data.next);
        this.setData({ orders: this.data.orders.concat((data.orders || []).map(row)), next: data.next || null });
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ loadingMore: false });
    },
    onTab(e) {
      this.setData({ status: e.currentTarget.dataset.status });
      return this.load();
    },
    onOpen(e) {
      go(`/shop/pages/order/order?id=${encodeURIComponent(e.currentTarget.dataset.id)}`);
    },
  },
});
