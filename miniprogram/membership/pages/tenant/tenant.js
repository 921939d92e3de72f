/**
 * The team (tenant) for the SaaS case: create one (the caller becomes owner and gets a new
 * token), list members, invite (owners and admins), buy the team's plan or start its free
 * trial (owners and admins, only before the team has ever had a plan subscription).
 */
const { getApi } = require('../../../utils/api');
const { loadCatalog } = require('../../../utils/catalog');
const { checkout } = require('../../../utils/checkout');
const { newRequestId } = require('../../../utils/ids');
const { TENANT_ROLE, errorMessage, formatTime } = require('../../../utils/labels');
const { canSell } = require('../../../utils/platform');
const { getRealtime } = require('../../../utils/realtime');
const { canManageTenant } = require('../../../utils/roles');
const config = require('../../../config');
const track = require('../../../utils/track');

Component({
  behaviors: [track.pageView('membership/pages/tenant/tenant')],
  data: {
    tenant: null,
    roleText: '',
    canManage: false,
    members: [],
    plans: [],
    loading: true,
    busy: false,
    newName: '',
    inviteOpenid: '',
    inviteRole: 'member',
    statusText: '',
    errorText: '',
    notes: { text: '', version: 0 },
    notesDraft: '',
    notesConflict: false,
  },
  methods: {
    onLoad() {
      this.requestIds = {};
      return this.load();
    },
    onUnload() {
      this.stopLive();
    },
    /** Members and notes of the team arrive on the socket (`tenant:<id>`). */
    live(tenantId) {
      const rt = getRealtime(getApi(), typeof wx !== 'undefined' ? wx : undefined);
      if (!rt || this.liveTopic === `tenant:${tenantId}`) return;
      this.stopLive();
      this.liveTopic = `tenant:${tenantId}`;
      rt.subscribe([this.liveTopic]);
      rt.start();
      this.unlisten = rt.listen((e) => this.onLive(e));
      this.rt = rt;
    },
    stopLive() {
      if (this.unlisten) this.unlisten();
      if (this.rt && this.liveTopic) this.rt.unsubscribe([this.liveTopic]);
      this.unlisten = null;
      this.liveTopic = null;
    },
    onLive(e) {
      if (!this.data.tenant || e.tenant !== this.data.tenant.id) return;
      if (e.type === 'tenant.notes_changed') this.showNotes(e.data || {});
      else if (e.type === 'tenant.member_added' || e.type === 'tenant.member_removed') this.load();
    },
    /** Shows `notes`; the draft follows unless the user has unsaved changes. */
    showNotes(notes) {
      if (typeof notes.version !== 'number' || notes.version < this.data.notes.version) return;
      const editing = this.data.notesDraft !== this.data.notes.text;
      this.setData({ notes: { text: notes.text || '', version: notes.version }, notesDraft: editing ? this.data.notesDraft : notes.text || '' });
    },
    onNotesInput(e) {
      this.setData({ notesDraft: e.detail.value, notesConflict: false });
    },
    async onSaveNotes() {
      if (this.data.busy) return;
      this.setData({ busy: true, errorText: '' });
      try {
        const res = await getApi().call('login', { action: 'editNotes', version: this.data.notes.version, text: this.data.notesDraft });
        const n = res.notes || {};
        // On a conflict the current notes replace the draft: the user merges and saves again.
        this.setData({ notes: { text: n.text || '', version: n.version || 0 }, notesDraft: n.text || '', notesConflict: !res.saved });
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
    async load() {
      try {
        const api = getApi();
        await api.ensureSession();
        const user = await api.refreshUser();
        const tenant = (user && user.tenant) || null;
        if (!tenant) {
          this.setData({ tenant: null, loading: false });
          return;
        }
        const manage = canManageTenant(user);
        const [membersData, products, ent] = await Promise.all([
          api.call('login', { action: 'members' }),
          manage ? loadCatalog(api) : Promise.resolve([]),
          // Only to know whether the team ever subscribed (trials come before that). If it cannot
          // be told, no trial is offered and the rest of the page still works.
          manage ? api.call('gatedContent', { action: 'entitlements' }).catch(() => null) : Promise.resolve(null),
        ]);
        const members = (membersData.members || []).map((m) => Object.assign({}, m, { roleText: TENANT_ROLE[m.role] || m.role }));
        const trialOpen = !!ent && !ent.tenantSubscription;
        const plans = products
          .filter((p) => p.kind === 'tenant_plan' && p.active !== false)
          .map((p) => {
            const days = p.plan && p.plan.trialDays;
            return Object.assign({}, p, {
              sellable: canSell(p),
              seatsText: p.plan && p.plan.seats ? `${p.plan.seats} 席` : '',
              // A trial is not a sale: shown without canSell.
              trialText: trialOpen && typeof days === 'number' && days > 0 ? `免费试用 ${days} 天` : '',
            });
          });
        this.setData({ tenant, roleText: TENANT_ROLE[tenant.role] || tenant.role, canManage: manage, members, plans, loading: false, errorText: '' });
        // The notes are an extra: the page works without them.
        const notes = await api.call('login', { action: 'notes' }).catch(() => null);
        if (notes && notes.notes) this.showNotes(notes.notes);
        this.live(tenant.id);
      } catch (err) {
        this.setData({ loading: false, errorText: errorMessage(err) });
      }
    },
    onNameInput(e) {
      this.setData({ newName: e.detail.value });
    },
    onInviteInput(e) {
      this.setData({ inviteOpenid: e.detail.value });
    },
    onRoleChange(e) {
      this.setData({ inviteRole: e.detail.value });
    },
    async onCreate() {
      const name = this.data.newName.trim();
      if (!name) {
        this.setData({ errorText: '请输入团队名称' });
        return;
      }
      this.setData({ busy: true, errorText: '' });
      try {
        const api = getApi();
        const data = await api.call('login', { action: 'createTenant', name });
        // The new token carries the tenant; adopt it before anything else is called.
        api.replaceToken(data.token);
        this.setData({ newName: '' });
        await this.load();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
    async onInvite() {
      const openid = this.data.inviteOpenid.trim();
      if (!openid) {
        this.setData({ errorText: '请输入成员 openid' });
        return;
      }
      this.setData({ busy: true, errorText: '', statusText: '' });
      try {
        await getApi().call('login', { action: 'invite', openid, role: this.data.inviteRole });
        this.setData({ inviteOpenid: '', statusText: '已邀请' });
        await this.load();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
    /** The team's free trial of a plan (seats included): no order, no payment. */
    async onTrialPlan(e) {
      const sku = e.currentTarget.dataset.sku;
      const product = (this.data.plans || []).find((p) => p.sku === sku);
      if (this.data.busy || !product || !product.plan) return;
      this.setData({ busy: true, errorText: '', statusText: '' });
      try {
        const res = await getApi().call('gatedContent', { action: 'startTrial', plan: product.plan.id, scope: 'tenant' });
        const end = formatTime(res && res.subscription && res.subscription.periodEndAt);
        this.setData({ statusText: end ? `试用已开始，至 ${end}` : '试用已开始' });
        await this.load();
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
    async onBuyPlan(e) {
      const sku = e.currentTarget.dataset.sku;
      if (this.data.busy) return;
      if (!this.requestIds[sku]) this.requestIds[sku] = newRequestId('ck');
      this.setData({ busy: true, errorText: '', statusText: '' });
      try {
        const result = await checkout({ api: getApi(), wx, items: [{ sku, quantity: 1 }], clientRequestId: this.requestIds[sku], poll: config.poll });
        if (result.outcome === 'paid') {
          delete this.requestIds[sku];
          this.setData({ statusText: '团队套餐已生效' });
          await this.load();
        } else {
          this.setData({ statusText: result.outcome === 'pending' ? '支付结果确认中，请稍后刷新' : '未完成支付' });
        }
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
      this.setData({ busy: false });
    },
  },
});
