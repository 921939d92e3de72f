const { guardAdmin } = require('../../utils/guard');
/**
 * Admin shipping: the orders waiting to ship (createOrder `shipments`, deadline first, overdue
 * marked), tracking entered per order, and one `ship` call for every selected order. Express
 * takes a carrier code (e.g. SF, ZTO) and one or more waybill numbers (separated by commas or
 * spaces: one package each); self-pickup and same-city delivery need nothing more. Each order's
 * result is shown on its own: one refusal does not stop the others.
 */
const { getApi } = require('../../../utils/api');
const { errorMessage, formatTime } = require('../../../utils/labels');

const METHODS = ['express', 'self_pickup', 'same_city'];
const TABS = ['awaiting', 'overdue', 'upload_failed'];

function addressText(a) {
  if (!a) return '';
  return `${a.name || ''} ${a.phone || ''} ${a.province || ''}${a.city || ''}${a.district || ''}${a.detail || ''}`.trim();
}

function row(o, previous) {
  const s = o.shipping || {};
  const upload = s.upload || {};
  return {
    id: o.id,
    outTradeNo: o.outTradeNo,
    summary: (o.items || []).map((i) => `${i.title} × ${i.quantity}`).join('，'),
    addressText: addressText(o.address),
    deadlineText: s.deadlineAt ? formatTime(s.deadlineAt) : '',
    overdue: !!o.overdue,
    uploadError: upload.state === 'failed' || upload.state === 'rejected' ? `上报失败 ${upload.errcode || ''}`.trim() : '',
    selected: !!(previous && previous.selected),
    company: (previous && previous.company) || '',
    tracking: (previous && previous.tracking) || '',
    errorText: '',
  };
}

/** The waybills typed for one order: split on commas, spaces and Chinese commas. */
function waybills(text) {
  return (text || '').split(/[\s,，]+/).filter(Boolean);
}

Component({
  data: { denied: false, tab: 'awaiting', method: 'express', orders: [], loaded: false, busy: false, statusText: '', errorText: '' },
  methods: {
    onLoad() {
      return this.guard();
    },
    async guard() {
      await guardAdmin(this, () => this.refresh());
    },
    async refresh() {
      try {
        const data = await getApi().call('createOrder', { action: 'shipments', state: this.data.tab, limit: 50 });
        const before = {};
        this.data.orders.forEach((o) => {
          before[o.id] = o;
        });
        this.setData({ orders: (data.orders || []).map((o) => row(o, before[o.id])), loaded: true });
      } catch (err) {
        this.setData({ loaded: true, orders: [], denied: !!err && err.code === 'FORBIDDEN', errorText: errorMessage(err) });
      }
    },
    onTab(e) {
      const tab = e.currentTarget.dataset.tab;
      if (TABS.indexOf(tab) < 0) return undefined;
      this.setData({ tab, orders: [], statusText: '', errorText: '' });
      return this.refresh();
    },
    onMethod(e) {
      const method = e.currentTarget.dataset.method;
      if (METHODS.indexOf(method) >= 0) this.setData({ method });
    },
    update(id, change) {
      this.setData({ orders: this.data.orders.map((o) => (o.id === id ? Object.assign({}, o, change) : o)) });
    },
    onSelect(e) {
      const id = e.currentTarget.dataset.id;
      const order = this.data.orders.find((o) => o.id === id);
      if (order) this.update(id, { selected: !order.selected });
    },
    onCompany(e) {
      this.update(e.currentTarget.dataset.id, { company: e.detail.value.trim().toUpperCase() });
    },
    onTracking(e) {
      this.update(e.currentTarget.dataset.id, { tracking: e.detail.value });
    },
    async onShip() {
      if (this.data.busy) return;
      const selected = this.data.orders.filter((o) => o.selected);
      if (!selected.length) {
        this.setData({ errorText: '请先勾选要发货的订单' });
        return;
      }
      const { method } = this.data;
      const shipments = [];
      for (let i = 0; i < selected.length; i += 1) {
        const o = selected[i];
        const entry = { orderId: o.id, logisticsType: method };
        if (method === 'express') {
          const numbers = waybills(o.tracking);
          if (!o.company || !numbers.length) {
            this.setData({ errorText: `订单 ${o.outTradeNo} 需要填写快递公司和运单号` });
            return;
          }
          entry.packages = numbers.map((n) => ({ expressCompany: o.company, trackingNo: n }));
        }
        shipments.push(entry);
      }
      this.setData({ busy: true, errorText: '', statusText: '' });
      try {
        // Not retried automatically; a repeat is refused per order (ORDER_ALREADY_SHIPPED).
        const data = await getApi().call('createOrder', { action: 'ship', shipments });
        const failed = {};
        (data.results || []).forEach((r) => {
          if (!r.ok) failed[r.orderId] = errorMessage(r.error);
        });
        await this.refresh();
        this.setData({
          statusText: `已发货 ${data.shipped || 0} 单`,
          orders: this.data.orders.map((o) => (failed[o.id] ? Object.assign({}, o, { errorText: failed[o.id] }) : o)),
        });
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
  },
});
