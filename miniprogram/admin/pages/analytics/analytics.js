const { guardAdmin } = require('../../utils/guard');
/**
 * Admin analytics (analytics `dashboard`): the conversion funnel (product view → cart →
 * checkout → paid), revenue per day per channel, D1/D7/D30 retention per cohort, top products
 * and content, paywall conversion and dropped events, over 7, 30 or 90 days. Charts are
 * uCharts on `<canvas type="2d">` (admin/vendor/u-charts.js, from npm, shipped only in this
 * subpackage); every figure is also written out as text, so nothing depends on the canvas.
 */
const { getApi } = require('../../../utils/api');
const { errorMessage } = require('../../../utils/labels');
const { dashboardModel, funnelChart, revenueChart, retentionChart } = require('../../utils/analytics');
const UCharts = require('../../vendor/u-charts');

const CHARTS = { funnel: funnelChart, revenue: revenueChart, retention: retentionChart };
const RANGES = [7, 30, 90];

function pixelRatio() {
  try {
    const info = typeof wx.getWindowInfo === 'function' ? wx.getWindowInfo() : wx.getSystemInfoSync();
    return (info && info.pixelRatio) || 2;
  } catch (e) {
    return 2;
  }
}

/** Resolves the canvas node and its CSS size, or null when the page has none to give. */
function canvasOf(page, id) {
  return new Promise((resolve) => {
    try {
      wx.createSelectorQuery()
        .in(page)
        .select(`#${id}`)
        .fields({ node: true, size: true })
        .exec((res) => resolve(res && res[0] && res[0].node ? res[0] : null));
    } catch (e) {
      resolve(null);
    }
  });
}

Component({
  data: { denied: false, loading: true, days: 30, ranges: RANGES, model: null, errorText: '' },
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
        const reply = await getApi().call('analytics', { action: 'dashboard', days: this.data.days });
        const model = dashboardModel(reply);
        // the canvases exist once this setData is rendered
        await new Promise((rendered) => this.setData({ model, errorText: '' }, rendered));
        await this.drawAll(model);
      } catch (err) {
        this.setData({ denied: !!err && err.code === 'FORBIDDEN', errorText: errorMessage(err) });
      }
    },
    async onRange(e) {
      const days = Number(e.currentTarget.dataset.days);
      if (RANGES.indexOf(days) < 0 || days === this.data.days) return;
      this.setData({ days });
      await this.refresh();
    },
    /** Draws each chart that has data; a chart that cannot be drawn leaves its text only. */
    async drawAll(model) {
      const pr = pixelRatio();
      this.charts = {};
      for (const id of Object.keys(CHARTS)) {
        const opts = CHARTS[id](model);
        if (!opts) continue;
        const c = await canvasOf(this, id);
        if (!c) continue;
        try {
          const width = Math.round(c.width * pr);
          const height = Math.round(c.height * pr);
          c.node.width = width;
          c.node.height = height;
          this.charts[id] = new UCharts(Object.assign(opts, { context: c.node.getContext('2d'), width, height, pixelRatio: pr }));
        } catch (err) {
          this.charts[id] = null;
        }
      }
    },
    onChartTap(e) {
      const chart = this.charts && this.charts[e.currentTarget.id];
      if (chart) chart.showToolTip(e);
    },
  },
});
