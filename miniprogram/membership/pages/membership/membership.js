/**
 * The caller's membership (gatedContent `entitlements` → `subscription`) and the plans on sale
 * (catalog products of kind `membership`): renew the current plan, upgrade to a higher tier,
 * or subscribe. Paying goes through the shared checkout; the server extends the period.
 */
const { getApi } = require('../../../utils/api');
const { loadCatalog } = require('../../../utils/catalog');
const { checkout } = require('../../../utils/checkout');
const { newRequestId } = require('../../../utils/ids');
const { SUBSCRIPTION_STATE, errorMessage, formatTime } = require('../../../utils/labels');
const { canSell } = require('../../../utils/platform');
const config = require('../../../config');

const ACTION_TEXT = { renew: '续费', upgrade: '升级', subscribe: '开通' };

/** What the user can do with a plan given the current subscription. */
function planAction(product, sub, currentTier) {
  const plan = product.plan || {};
  if (!sub || sub.state === 'expired') return 'subscribe';
  if (plan.id === sub.plan) return 'renew';
  if (typeof plan.tier === 'number' && typeof currentTier === 'number' && plan.tier > currentTier) return 'upgrade';
  return null;
}

Component({
  data: { sub: null, plans: [], loading: true, busySku: '', statusText: '', errorText: '' },
  methods: {
    onLoad() {
      this.requestIds = {};
      return this.load();
    },
    async load() {
      try {
        const api = getApi();
        const [products, ent] = await Promise.all([
          loadCatalog(api, { force: true }),
          api.call('gatedContent', { action: 'entitlements' }),
        ]);
        const memberships = products.filter((p) => p.kind === 'membership' && p.active !== false);
        const s = ent && ent.subscription;
        const current = s ? memberships.find((p) => p.plan && p.plan.id === s.plan) : null;
        const renewTo = s ? memberships.find((p) => p.plan && p.plan.id === s.renewPlan) : null;
        const currentTier = current && current.plan ? current.plan.tier : undefined;
        const sub = s
          ? {
              plan: s.plan,
              planTitle: (current && current.plan && current.plan.title) || (current && current.title) || s.plan,
              state: s.state,
              stateText: SUBSCRIPTION_STATE[s.state] || s.state,
              periodEndText: formatTime(s.periodEndAt),
              renewPlanTitle: renewTo && s.renewPlan !== s.plan ? (renewTo.plan && renewTo.plan.title) || renewTo.title : '',
            }
          : null;
        const plans = memberships.map((p) => {
          const action = planAction(p, s, currentTier);
          return Object.assign({}, p, {
            action,
            actionText: action ? ACTION_TEXT[action] : '',
            sellable: canSell(p),
            periodText: p.plan && p.plan.periodDays ? `${p.plan.periodDays} 天` : '',
          });
        });
        this.setData({ sub, plans, loading: false, errorText: '' });
      } catch (err) {
        this.setData({ loading: false, errorText: errorMessage(err) });
      }
    },
    async onBuy(e) {
      const sku = e.currentTarget.dataset.sku;
      if (this.data.busySku) return;
      if (!this.requestIds[sku]) this.requestIds[sku] = newRequestId('ck');
      this.setData({ busySku: sku, statusText: '', errorText: '' });
      try {
        const result = await checkout({
          api: getApi(),
          wx,
          items: [{ sku, quantity: 1 }],
          clientRequestId: this.requestIds[sku],
          poll: config.poll,
        });
        if (result.outcome === 'paid') {
          delete this.requestIds[sku];
          this.setData({ statusText: '支付成功，会员已生效' });
          await this.load();
        } else if (result.outcome === 'pending') {
          this.setData({ statusText: '支付结果确认中，请稍后刷新' });
        } else if (result.outcome === 'cancelled') {
          this.setData({ statusText: '已取消支付' });
        } else {
          delete this.requestIds[sku];
          this.setData({ statusText: '订单已关闭，请重新购买' });
        }
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busySku: '' });
    },
  },
});
