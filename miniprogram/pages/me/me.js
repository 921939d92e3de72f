/** The signed-in user, links to their things, and the admin links for admins only. */
const { getApi } = require('../../utils/api');
const { errorMessage, TENANT_ROLE } = require('../../utils/labels');
const { isAdmin } = require('../../utils/roles');
const { go, showError, toast } = require('../../utils/ui');
const track = require('../../utils/track');

Component({
  behaviors: [track.pageView('pages/me/me')],
  data: { user: null, isAdmin: false, tenantRole: '', errorText: '' },
  methods: {
    onShow() {
      return this.load();
    },
    async load() {
      try {
        const api = getApi();
        await api.ensureSession();
        const user = await api.refreshUser();
        this.show(user || api.currentUser());
      } catch (err) {
        this.setData({ errorText: errorMessage(err) });
      }
    },
    show(user) {
      const tenantRole = user && user.tenant ? TENANT_ROLE[user.tenant.role] || user.tenant.role : '';
      this.setData({ user, isAdmin: isAdmin(user), tenantRole, errorText: '' });
    },
    async onPhone(e) {
      const code = e.detail && e.detail.code;
      if (!code) return;
      try {
        // login with phoneCode: the server exchanges the code for the number.
        const session = await getApi().login({ phoneCode: code });
        this.show(session.user);
        toast('已绑定');
      } catch (err) {
        showError(err);
      }
    },
    onNav(e) {
      go(e.currentTarget.dataset.url);
    },
  },
});
