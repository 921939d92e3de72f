/** Home: entry tiles to each part; the admin tile only for admins. */
const { getApi } = require('../../utils/api');
const { errorMessage } = require('../../utils/labels');
const { isAdmin } = require('../../utils/roles');
const { go } = require('../../utils/ui');
const track = require('../../utils/track');

Component({
  behaviors: [track.pageView('pages/index/index')],
  data: { user: null, isAdmin: false, loginFailed: false, errorText: '' },
  methods: {
    onLoad() {
      return this.load();
    },
    async load() {
      try {
        const s = await getApi().ensureSession();
        this.setData({ user: s.user, isAdmin: isAdmin(s.user), loginFailed: false, errorText: '' });
      } catch (err) {
        this.setData({ loginFailed: true, errorText: errorMessage(err) });
      }
    },
    onNav(e) {
      go(e.currentTarget.dataset.url);
    },
  },
});
