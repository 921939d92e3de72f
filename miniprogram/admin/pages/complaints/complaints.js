const { guardAdmin } = require('../../utils/guard');
/**
 * Admin complaints: WeChat Pay and virtual payment consumer complaints (createOrder
 * `complaintList`, `complaintGet`, `complaintRespond`, `complaintComplete`). The first reply
 * is due within 24 h of the complaint: unanswered ones show how long is left, overdue first.
 * A reply is never resent automatically (each call posts a message to the buyer).
 */
const { getApi } = require('../../../utils/api');
const { errorMessage } = require('../../../utils/labels');
const { confirm } = require('../../../utils/ui');

const STATE = Object.freeze({ PENDING: '待回复', PROCESSING: '处理中', PROCESSED: '已处理' });
const FILTERS = [
  { key: 'PENDING', text: '待回复' },
  { key: 'PROCESSING', text: '处理中' },
  { key: 'PROCESSED', text: '已处理' },
];
const MAX_REPLY = 200;

/** "剩余 3 小时 20 分" / "已超时 1 小时 5 分" for a reply deadline `secs` away. */
function dueText(c) {
  if (!c.awaitingReply || typeof c.dueInSecs !== 'number') return '';
  const abs = Math.abs(c.dueInSecs);
  const h = Math.floor(abs / 3600);
  const m = Math.floor((abs % 3600) / 60);
  return `${c.dueInSecs < 0 ? '已超时' : '剩余'} ${h} 小时 ${m} 分`;
}

function row(c) {
  return {
    id: c.complaintId,
    channelText: c.channel === 'xpay' ? '虚拟支付' : '微信支付',
    stateText: STATE[c.state] || c.state,
    detail: c.detail,
    problem: c.problemType === 'REFUND' ? '要求退款' : c.problemDescription || '',
    orderNo: (c.orderRefs && c.orderRefs[0] && c.orderRefs[0].outTradeNo) || '',
    dueText: dueText(c),
    overdue: !!c.overdue,
    closed: c.state === 'PROCESSED',
  };
}

function historyRow(h) {
  return { id: h.log_id, who: h.operator, what: h.operate_details, when: h.operate_time, type: h.operate_type };
}

Component({
  data: { denied: false, filter: 'PENDING', filters: FILTERS, complaints: [], loaded: false, selected: null, history: [], reply: '', busy: false, statusText: '', errorText: '' },
  methods: {
    onLoad() {
      return this.guard();
    },
    async guard() {
      await guardAdmin(this, () => this.list());
    },
    async list() {
      try {
        const data = await getApi().call('createOrder', { action: 'complaintList', state: this.data.filter, limit: 50 });
        this.setData({ complaints: (data.complaints || []).map(row), loaded: true });
      } catch (err) {
        this.setData({ loaded: true, complaints: [], denied: !!err && err.code === 'FORBIDDEN', errorText: errorMessage(err) });
      }
    },
    onFilter(e) {
      this.setData({ filter: e.currentTarget.dataset.key, selected: null, history: [] });
      return this.list();
    },
    async onOpen(e) {
      const complaintId = e.currentTarget.dataset.id;
      this.setData({ errorText: '', statusText: '', reply: '' });
      try {
        const data = await getApi().call('createOrder', { action: 'complaintGet', complaintId });
        this.setData({ selected: row(data.complaint), history: (data.history || []).map(historyRow) });
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
    },
    onClose() {
      this.setData({ selected: null, history: [] });
      return this.list();
    },
    onReply(e) {
      this.setData({ reply: e.detail.value });
    },
    async onRespond() {
      const selected = this.data.selected;
      const content = (this.data.reply || '').trim();
      if (!selected || this.data.busy) return;
      if (!content || content.length > MAX_REPLY) {
        this.setData({ errorText: `回复需为 1 到 ${MAX_REPLY} 个字` });
        return;
      }
      this.setData({ busy: true, errorText: '', statusText: '' });
      try {
        await getApi().call('createOrder', { action: 'complaintRespond', complaintId: selected.id, content });
        this.setData({ reply: '', statusText: '已回复用户' });
        await this.onOpen({ currentTarget: { dataset: { id: selected.id } } });
        this.setData({ statusText: '已回复用户' });
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
    async onComplete() {
      const selected = this.data.selected;
      if (!selected || this.data.busy) return;
      if (!(await confirm('标记处理完成', '用户将收到满意度评价，请确认问题已解决（如退款已到账）'))) return;
      this.setData({ busy: true, errorText: '', statusText: '' });
      try {
        const data = await getApi().call('createOrder', { action: 'complaintComplete', complaintId: selected.id });
        this.setData({ selected: row(data.complaint), statusText: '已标记处理完成' });
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
  },
});
