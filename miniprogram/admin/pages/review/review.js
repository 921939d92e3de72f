/** Admin review queue (ugcUpload `queue`, `approve`, `reject`). Non-admins see "no permission". */
const { getApi } = require('../../../utils/api');
const { errorMessage } = require('../../../utils/labels');
const { isAdmin } = require('../../../utils/roles');
const { prompt, showError } = require('../../../utils/ui');

Component({
  data: { denied: false, posts: [], loading: true, busyId: '', errorText: '' },
  methods: {
    onLoad() {
      return this.load();
    },
    async onPullDownRefresh() {
      await this.load();
      if (wx.stopPullDownRefresh) wx.stopPullDownRefresh();
    },
    async load() {
      try {
        const session = await getApi().ensureSession();
        if (!isAdmin(session.user)) {
          this.setData({ denied: true, loading: false });
          return;
        }
        const data = await getApi().call('ugcUpload', { action: 'queue' });
        this.setData({ posts: data.posts || [], loading: false, errorText: '' });
      } catch (err) {
        this.setData({ loading: false, denied: !!err && err.code === 'FORBIDDEN', errorText: errorMessage(err) });
      }
    },
    async decide(postId, action, reason) {
      this.setData({ busyId: postId });
      try {
        const data = { action, postId };
        if (reason) data.reason = reason;
        await getApi().call('ugcUpload', data);
        this.setData({ posts: this.data.posts.filter((p) => p.id !== postId) });
      } catch (err) {
        showError(err);
      }
      this.setData({ busyId: '' });
    },
    onApprove(e) {
      return this.decide(e.currentTarget.dataset.id, 'approve');
    },
    async onReject(e) {
      const postId = e.currentTarget.dataset.id;
      const reason = await prompt('拒绝原因', '将展示给作者');
      if (reason === null) return undefined;
      return this.decide(postId, 'reject', reason.trim() || '内容不符合社区规范');
    },
  },
});
