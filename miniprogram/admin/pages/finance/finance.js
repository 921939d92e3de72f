const { guardAdmin } = require('../../utils/guard');
/**
 * Admin finance: the last 30 days of revenue as a bar chart (gross per day, WeChat Pay and
 * virtual payment stacked; net, refunds and fees in the totals), the open discrepancies found
 * by the daily bill reconciliation with what to do about each, "mark resolved" with a note,
 * and a manual run for one day (reconcile `revenueReport`, `discrepancies`,
 * `resolveDiscrepancy`, `billsRun`). The chart is plain views: no canvas, no library.
 */
const { getApi } = require('../../../utils/api');
const { errorMessage } = require('../../../utils/labels');
const { prompt } = require('../../../utils/ui');
const { chartModel, discrepancyRow } = require('../../utils/finance');

Component({
  data: { denied: false, loading: true, chart: { bars: [], totals: {}, best: '' }, items: [], runDate: '', statusText: '', errorText: '' },
  methods: {
    onLoad() {
      return this.guard();
    },
    async guard() {
      await guardAdmin(this, () => this.refresh());
      this.setData({ loading: false });
    },
    async refresh() {
      try {
        const report = await getApi().call('reconcile', { action: 'revenueReport' });
        const open = await getApi().call('reconcile', { action: 'discrepancies', status: 'open' });
        this.setData({
          chart: chartModel(report.days),
          items: (open.discrepancies || []).map(discrepancyRow),
          errorText: '',
        });
      } catch (err) {
        this.setData({ denied: !!err && err.code === 'FORBIDDEN', errorText: errorMessage(err) });
      }
    },
    onRunDate(e) {
      this.setData({ runDate: e.detail.value });
    },
    async onRun() {
      const date = this.data.runDate.trim();
      this.setData({ statusText: '', errorText: '' });
      try {
        const req = { action: 'billsRun' };
        if (date) req.date = date;
        const r = await getApi().call('reconcile', req);
        const text = r.status === 'notReady'
          ? `${r.date} 的账单尚未生成，请 10:00 后再试`
          : `${r.date} 对账完成：${r.rows} 笔，差异 ${r.discrepancies.length} 条，补单 ${r.repaired} 笔`;
        this.setData({ statusText: text });
        await this.refresh();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
    },
    async onResolve(e) {
      const id = e.currentTarget.dataset.id;
      const note = await prompt('标记已处理', '处理说明');
      if (note === null) return;
      try {
        await getApi().call('reconcile', { action: 'resolveDiscrepancy', id, note });
        this.setData({ items: this.data.items.filter((i) => i.id !== id), statusText: '已标记为已处理' });
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
    },
  },
});
