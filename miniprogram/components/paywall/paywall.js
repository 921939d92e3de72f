/**
 * The offers that unlock a piece of content (gatedContent `paywall.offers`). Each row shows
 * its price (or the update hint); a buy button only where the offer can be sold here.
 * Emits `buy` with the chosen offer.
 */
const { canSell } = require('../../utils/platform');

const CTA = { membership: '开通会员', content_unlock: '单独购买', tenant_plan: '团队开通', coins: '购买' };

Component({
  properties: {
    offers: { type: Array, value: [] },
    busy: { type: Boolean, value: false },
  },
  data: { rows: [] },
  observers: {
    offers(offers) {
      const rows = (offers || []).map((o) => Object.assign({}, o, { sellable: canSell(o), cta: CTA[o.kind] || '购买' }));
      this.setData({ rows });
    },
  },
  methods: {
    onBuy(e) {
      const sku = e.currentTarget.dataset.sku;
      const offer = this.data.rows.find((r) => r.sku === sku);
      if (offer) this.triggerEvent('buy', { offer });
    },
  },
});
