/**
 * Approved posts, plus the caller's own in any moderation state with its label (ugcUpload
 * `list`). Images that are still being checked or were blocked are not shown.
 */
const { getApi } = require('../../../utils/api');
const { errorMessage, formatTime } = require('../../../utils/labels');
const { getRealtime } = require('../../../utils/realtime');
const { confirm, go, showError } = require('../../../utils/ui');
const track = require('../../../utils/track');

const PAGE = 20;

function view(post, me) {
  return {
    id: post.id,
    text: post.text,
    status: post.status,
    reason: post.reason || '',
    mine: !!me && post.author === me,
    timeText: formatTime(post.createdAt),
    images: (post.media || []).filter((m) => m.type === 'image' && (!m.state || m.state === 'approved')),
    createdAt: post.createdAt,
  };
}

Component({
  behaviors: [track.pageView('posting/pages/feed/feed')],
  data: { posts: [], loading: true, loadingMore: false, errorText: '', next: null },
  methods: {
    onShow() {
      this.live();
      return this.load();
    },
    onHide() {
      if (this.stopLive) this.stopLive();
      this.stopLive = null;
    },
    /** Moderation results of the caller's posts arrive on the socket (`posts` topic). */
    live() {
      const rt = getRealtime(getApi(), typeof wx !== 'undefined' ? wx : undefined);
      if (!rt || this.stopLive) return;
      rt.subscribe(['posts']);
      rt.start();
      this.stopLive = rt.listen((e) => this.onLive(e));
    },
    onLive(e) {
      if (e.type !== 'post.approved' && e.type !== 'post.rejected') return;
      const d = e.data || {};
      const posts = this.data.posts.map((p) => (p.id === d.postId ? Object.assign({}, p, { status: d.status, reason: d.reason || '' }) : p));
      this.setData({ posts });
    },
    async onPullDownRefresh() {
      await this.load();
      if (wx.stopPullDownRefresh) wx.stopPullDownRefresh();
    },
    me() {
      const u = getApi().currentUser();
      return u && u.openid;
    },
    async load() {
      this.setData({ loading: true, errorText: '' });
      try {
        await getApi().ensureSession();
        const data = await getApi().call('ugcUpload', { action: 'list', limit: PAGE });
        const posts = (data.posts || []).map((p) => view(p, this.me()));
        this.setData({ posts, loading: false, next: posts.length === PAGE ? posts[posts.length - 1].createdAt : null });
      } catch (err) {
        this.setData({ posts: [], loading: false, errorText: errorMessage(err) });
      }
    },
    async onMore() {
      if (!this.data.next || this.data.loadingMore) return;
      this.setData({ loadingMore: true });
      try {
        const data = await getApi().call('ugcUpload', { action: 'list', limit: PAGE, before: this.data.next });
        const more = (data.posts || []).map((p) => view(p, this.me()));
        this.setData({ posts: this.data.posts.concat(more), next: more.length === PAGE ? more[more.length - 1].createdAt : null });
      } catch (err) {
        showError(err);
      }
      this.setData({ loadingMore: false });
    },
    async onDelete(e) {
      const postId = e.currentTarget.dataset.id;
      if (!(await confirm('删除帖子', '删除后不可恢复'))) return;
      try {
        await getApi().call('ugcUpload', { action: 'delete', postId });
        this.setData({ posts: this.data.posts.filter((p) => p.id !== postId) });
      } catch (err) {
        showError(err);
      }
    },
    onCompose() {
      go('/posting/pages/compose/compose');
    },
  },
});
