/**
 * The caller's membership (gatedContent `entitlements` → `subscription`) and the plans on sale
 * (catalog products of kind `membership`): renew the current plan, upgrade to a higher tier
 * (gatedContent `changePlan` quotes the prorated difference, createOrder buys it), switch to a
 * lower tier at the next renewal, subscribe, start a plan's free trial (only before any
 * subscription), cancel, or resume a cancelled one before it ends. Paying goes through the
 * shared checkout. The taps that leave a renewal ahead (plan buttons, trial, resume) first ask
 * for the renewal-reminder subscribe message (utils/subscribe.js).
 */
const { getApi } = require('../../../utils/api');
const { loadCatalog } = require('../../../utils/catalog');
const { checkout } = require('../../../utils/checkout');
const { newRequestId } = require('../../../utils/ids');
const { SUBSCRIPTION_STATE, errorMessage, formatTime } = require('../../../utils/labels');
const { formatFen } = require('../../../utils/money');
const { canSell } = require('../../../utils/platform');
const { askConsent } = require('../../../utils/subscribe');
const { confirm } = require('../../../utils/ui');
const config = require('../../../config');
const track = require('../../../utils/track');

const ACTION_TEXT = { renew: '续费', upgrade: '升级', subscribe: '开通', downgrade: '到期后切换' };

/** States with a renewal still ahead, so cancelling or changing the next plan means something. */
const RENEWING = ['trial', 'active', 'past_due', 'grace'];

function titleOf(product) {
  return (product && product.plan && product.plan.title) || (product && product.title) || '';
}

/**
 * "免费试用 N 天" for a plan with a trial while the user has never subscribed: the server allows a
 * trial only before any subscription (an expired one counts). Not a sale, so no canSell gate.
 */
function trialText(product, sub) {
  const days = product.plan && product.plan.trialDays;
  return !sub && typeof days === 'number' && days > 0 ? `免费试用 ${days} 天` : '';
}

/** What the user can do with a plan given the current subscription. */
function planAction(product, sub, currentTier) {
  const plan = product.plan || {};
  if (!sub || sub.state === 'expired') return 'subscribe';
  if (plan.id === sub.plan) return 'renew';
  if (typeof plan.tier !== 'number' || typeof currentTier !== 'number') return null;
  if (plan.tier > currentTier) return 'upgrade';
  // Already scheduled: the row says so instead of offering the same switch again.
  if (plan.tier < currentTier && RENEWING.indexOf(sub.state) >= 0 && plan.id !== sub.renewPlan) return 'downgrade';
  return null;
}

Component({
  behaviors: [track.pageView('membership/pages/membership/membership')],
  data: { sub: null, plans: [], loading: true, busySku: '', statusText: '', errorText: '' },
  methods: {
    onLoad() {
      // One clientRequestId per sku (items) or `up:<plan>` (upgrade) until paid or closed.
      this.requestIds = {};
      // The amount of an unpaid upgrade order: a retry returns that order, not a fresh quote.
      this.upgradeFen = {};
      this.products = [];
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
        const renewing = !!s && RENEWING.indexOf(s.state) >= 0;
        const switching = !!s && !!s.renewPlan && s.renewPlan !== s.plan;
        const sub = s
          ? {
              plan: s.plan,
              planTitle: titleOf(current) || s.plan,
              state: s.state,
              stateText: SUBSCRIPTION_STATE[s.state] || s.state,
              periodEndAt: s.periodEndAt,
              periodEndText: formatTime(s.periodEndAt),
              renewPlanTitle: switching ? titleOf(renewTo) || s.renewPlan : '',
              canCancel: renewing,
              // Cancelled but paid time left: resuming brings back renewal reminders (xpay has no auto-debit).
              canResume: s.state === 'canceled',
              // A scheduled switch can be undone by choosing the current plan again ("kept").
              canKeep: renewing && switching,
            }
          : null;
        const plans = memberships.map((p) => {
          const action = planAction(p, s, currentTier);
          return Object.assign({}, p, {
            action,
            actionText: action ? ACTION_TEXT[action] : '',
            sellable: canSell(p),
            trialText: trialText(p, s),
            periodText: p.plan && p.plan.periodDays ? `${p.plan.periodDays} 天` : '',
            noteText: switching && renewing && p.plan && p.plan.id === s.renewPlan ? '到期后生效' : '',
          });
        });
        this.products = memberships;
        this.setData({ sub, plans, loading: false, errorText: '' });
      } catch (err) {
        this.setData({ loading: false, errorText: errorMessage(err) });
      }
    },
    product(sku) {
      return (this.products || []).find((p) => p.sku === sku) || null;
    },
    /**
     * The plan row's button: paying now, quoting an upgrade, or scheduling a lower plan. Each
     * leaves a renewal ahead, so the renewal reminder is asked first, in this tap (WeChat shows
     * the popup only there); the action goes on whatever the answer.
     */
    onPlanTap(e) {
      if (this.data.busySku) return Promise.resolve();
      const consent = askConsent(['renewal']);
      const action = e.currentTarget.dataset.action;
      return consent.then(() => {
        if (action === 'upgrade') return this.onUpgrade(e);
        if (action === 'downgrade') return this.onDowngrade(e);
        return this.onBuy(e);
      });
    },
    /** Starts the plan's free trial: no order, no payment; the reply's period end is the trial end. */
    async onTrial(e) {
      const sku = e.currentTarget.dataset.sku;
      const product = this.product(sku);
      if (this.data.busySku || !product || !product.plan) return;
      const consent = askConsent(['renewal']);
      this.setData({ busySku: `trial:${sku}`, statusText: '', errorText: '' });
      try {
        await consent;
        const res = await getApi().call('gatedContent', { action: 'startTrial', plan: product.plan.id });
        const end = formatTime(res && res.subscription && res.subscription.periodEndAt);
        this.setData({ statusText: end ? `试用已开始，至 ${end}` : '试用已开始' });
        await this.load();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busySku: '' });
    },
    /** Runs checkout for `order` (`{items}` or `{upgrade}`) and reports the outcome. */
    async pay(key, order, paidText) {
      if (!this.requestIds[key]) this.requestIds[key] = newRequestId('ck');
      const done = () => {
        delete this.requestIds[key];
        delete this.upgradeFen[key];
      };
      const channel = order.items ? (this.product(order.items[0].sku) || {}).channel : undefined;
      if (order.items) track.checkoutStart(order.items.map((i) => i.sku), channel);
      const result = await checkout(
        Object.assign({}, order, {
          api: getApi(),
          wx,
          clientRequestId: this.requestIds[key],
          poll: config.poll,
          onStage: (stage, extra) => {
            const o = extra && extra.order;
            if (stage === 'paying' && o && o.upgrade && typeof o.totalFen === 'number') this.upgradeFen[key] = o.totalFen;
          },
        }),
      );
      track.paymentResult(result.order.id, result.outcome === 'paid', result.order.channel || channel);
      if (result.outcome === 'paid') {
        done();
        this.setData({ statusText: paidText });
        await this.load();
      } else if (result.outcome === 'pending') {
        this.setData({ statusText: '支付结果确认中，请稍后刷新' });
      } else if (result.outcome === 'cancelled') {
        this.setData({ statusText: '已取消支付' });
      } else {
        done();
        this.setData({ statusText: '订单已关闭，请重新购买' });
      }
    },
    /** Subscribe, renew, or buy a plan that starts at the current period end. */
    async onBuy(e) {
      const sku = e.currentTarget.dataset.sku;
      if (this.data.busySku) return;
      this.setData({ busySku: sku, statusText: '', errorText: '' });
      try {
        await this.pay(sku, { items: [{ sku, quantity: 1 }] }, '支付成功，会员已生效');
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busySku: '' });
    },
    /** changePlan quotes the prorated difference; nothing changes until it is paid. */
    async onUpgrade(e) {
      const sku = e.currentTarget.dataset.sku;
      const product = this.product(sku);
      if (this.data.busySku || !product || !product.plan) return;
      const title = titleOf(product);
      const key = `up:${product.plan.id}`;
      this.setData({ busySku: sku, statusText: '', errorText: '' });
      try {
        const res = await getApi().call('gatedContent', { action: 'changePlan', plan: product.plan.id });
        if (res && res.applied) {
          // Only free trial time was left: the server switched at no cost.
          this.setData({ statusText: `已升级到${title}` });
          await this.load();
        } else if (res && res.quote) {
          const q = res.quote;
          const fen = this.upgradeFen[key] !== undefined ? this.upgradeFen[key] : q.amountFen;
          const ok = await confirm('升级会员', `升级到${title}，补差价 ${formatFen(fen)}，有效期至 ${formatTime(q.periodEndAt)}`);
          if (ok) {
            const upgrade = (res.checkout && res.checkout.upgrade) || { plan: q.plan };
            await this.pay(key, { upgrade }, `支付成功，已升级到${title}`);
          }
        } else {
          await this.load();
        }
      } catch (err) {
        this.setData({ errorText: errorMessage(err), busySku: '' });
        if (err && err.code === 'UPGRADE_PRICE_UNSUPPORTED') await this.offerSwitchAtRenewal(product, key);
      }
      this.setData({ busySku: '' });
    },
    /** The difference cannot be charged: buying the plan itself starts it at the period end. */
    async offerSwitchAtRenewal(product, key) {
      delete this.requestIds[key];
      delete this.upgradeFen[key];
      const end = this.data.sub ? this.data.sub.periodEndText : '';
      const ok = await confirm('到期后切换', `购买${titleOf(product)}（${formatFen(product.priceFen)}），当前会员到期后（${end}）生效`);
      if (ok) await this.onBuy({ currentTarget: { dataset: { sku: product.sku } } });
    },
    /** The next renewal buys the lower plan; the paid time keeps the current one. */
    async onDowngrade(e) {
      const sku = e.currentTarget.dataset.sku;
      const product = this.product(sku);
      if (this.data.busySku || !product || !product.plan) return;
      this.setData({ busySku: sku, statusText: '', errorText: '' });
      try {
        const res = await getApi().call('gatedContent', { action: 'changePlan', plan: product.plan.id });
        const at = formatTime(res && res.effectiveAt);
        this.setData({ statusText: at ? `将于 ${at} 切换为${titleOf(product)}` : `到期后切换为${titleOf(product)}` });
        await this.load();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busySku: '' });
    },
    /** Undoes a scheduled switch: the current plan again is `kept`. */
    async onKeep() {
      const sub = this.data.sub;
      if (this.data.busySku || !sub) return;
      this.setData({ busySku: ':keep', statusText: '', errorText: '' });
      try {
        await getApi().call('gatedContent', { action: 'changePlan', plan: sub.plan });
        this.setData({ statusText: `已保留${sub.planTitle}` });
        await this.load();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busySku: '' });
    },
    /** Cancels renewal; access lasts until the period end. */
    async onCancelSub() {
      const sub = this.data.sub;
      if (this.data.busySku || !sub) return;
      const ok = await confirm('取消会员', `取消后会员可使用至 ${sub.periodEndText}，到期不再续费`);
      if (!ok) return;
      this.setData({ busySku: ':cancel', statusText: '', errorText: '' });
      try {
        const res = await getApi().call('gatedContent', { action: 'cancelSubscription' });
        const s = (res && res.subscription) || {};
        this.setData({ statusText: `已取消，可使用至 ${formatTime(typeof s.periodEndAt === 'number' ? s.periodEndAt : sub.periodEndAt)}` });
        await this.load();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busySku: '' });
    },
    /** Undoes a cancellation while the paid time runs; once it has ended the plan must be bought again. */
    async onResumeSub() {
      if (this.data.busySku || !this.data.sub) return;
      const consent = askConsent(['renewal']);
      this.setData({ busySku: ':resume', statusText: '', errorText: '' });
      try {
        await consent;
        await getApi().call('gatedContent', { action: 'resumeSubscription' });
        this.setData({ statusText: '已恢复订阅' });
        await this.load();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busySku: '' });
    },
  },
});
