/**
 * A piece of content: the full text and media when entitled; otherwise the preview and the
 * paywall, whose offers check out right here and reload the content once the server says paid.
 * Media URLs are short-lived: an expired one is fetched again before use. Content in a series
 * has a follow toggle: followers hear about new content in it (Official Account template
 * messages, when they follow the account).
 */
const { getApi } = require('../../../utils/api');
const { checkout } = require('../../../utils/checkout');
const { newRequestId } = require('../../../utils/ids');
const { CONTENT_KIND, errorMessage } = require('../../../utils/labels');
const config = require('../../../config');
const track = require('../../../utils/track');

/** Seconds of validity a media URL must still have to be used as is. */
const MEDIA_MARGIN_SECS = 30;

Component({
  behaviors: [track.pageView('content/pages/reader/reader')],
  data: { content: null, access: '', offers: [], kindText: '', series: null, loading: true, busy: false, statusText: '', errorText: '' },
  methods: {
    onLoad(query) {
      this.contentId = decodeURIComponent((query && query.id) || '');
      this.requestIds = {};
      return this.load();
    },
    onShow() {
      const m = this.data.content && this.data.content.media;
      if (m && typeof m.expiresAt === 'number' && m.expiresAt - MEDIA_MARGIN_SECS <= Date.now() / 1000) {
        return this.load();
      }
      return undefined;
    },
    async load() {
      try {
        const data = await getApi().call('gatedContent', { action: 'get', contentId: this.contentId });
        const content = data.content || null;
        this.setData({
          content,
          access: data.access,
          offers: data.access === 'locked' && data.paywall ? data.paywall.offers || [] : [],
          kindText: content ? CONTENT_KIND[content.kind] || content.kind : '',
          series: data.series || null,
          loading: false,
          errorText: '',
        });
        if (this.data.offers.length && !this.paywallSeen) this.paywallSeen = track.paywallView(this.contentId);
      } catch (err) {
        this.setData({ loading: false, errorText: errorMessage(err) });
      }
    },
    async onToggleSeries() {
      const series = this.data.series;
      if (!series || this.data.busy) return;
      this.setData({ busy: true, errorText: '' });
      try {
        const data = await getApi().call('gatedContent', { action: 'followSeries', series: series.id, follow: !series.following });
        this.setData({ series: { id: series.id, following: data.following } });
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
    onShareAppMessage() {
      const c = this.data.content;
      track.share('content/pages/reader/reader');
      return c ? { title: c.title, path: `/content/pages/reader/reader?id=${encodeURIComponent(this.contentId)}` } : {};
    },
    onMediaError() {
      // Most likely the temp URL expired while the page was open.
      return this.load();
    },
    async onBuy(e) {
      const offer = e.detail.offer;
      if (this.data.busy || !offer) return;
      // One id per offer while this page lives: a retry after a failure returns the same order.
      if (!this.requestIds[offer.sku]) this.requestIds[offer.sku] = newRequestId('ck');
      this.setData({ busy: true, statusText: '', errorText: '' });
      track.checkoutStart([offer.sku], offer.channel);
      try {
        const result = await checkout({
          api: getApi(),
          wx,
          items: [{ sku: offer.sku, quantity: 1 }],
          clientRequestId: this.requestIds[offer.sku],
          poll: config.poll,
        });
        track.paymentResult(result.order.id, result.outcome === 'paid', result.order.channel);
        if (result.outcome === 'paid') {
          track.paywallUnlock(this.contentId);
          delete this.requestIds[offer.sku];
          this.setData({ statusText: '' });
          await this.load();
        } else if (result.outcome === 'pending') {
          this.setData({ statusText: '支付结果确认中，稍后刷新即可阅读' });
        } else if (result.outcome === 'cancelled') {
          this.setData({ statusText: '已取消支付' });
        } else {
          delete this.requestIds[offer.sku];
          this.setData({ statusText: '订单已关闭，请重新购买' });
        }
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
  },
});
