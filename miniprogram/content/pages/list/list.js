/** Contents with the caller's access state (gatedContent `list`). */
const { getApi } = require('../../../utils/api');
const { ACCESS, CONTENT_KIND, errorMessage } = require('../../../utils/labels');
const { go } = require('../../../utils/ui');
const track = require('../../../utils/track');

const KINDS = [
  { value: '', label: '全部' },
  { value: 'article', label: '文章' },
  { value: 'course', label: '课程' },
  { value: 'audio', label: '音频' },
  { value: 'video', label: '视频' },
];

Component({
  behaviors: [track.pageView('content/pages/list/list')],
  data: { kinds: KINDS, kind: '', items: [], loading: true, errorText: '' },
  methods: {
    onLoad() {
      return this.load();
    },
    onShow() {
      // Coming back from a purchase: access may have changed.
      if (this.loadedOnce) return this.load();
      return undefined;
    },
    async onPullDownRefresh() {
      await this.load();
      if (wx.stopPullDownRefresh) wx.stopPullDownRefresh();
    },
    async load() {
      this.setData({ loading: true, errorText: '' });
      try {
        const req = { action: 'list', limit: 50 };
        if (this.data.kind) req.kind = this.data.kind;
        const data = await getApi().call('gatedContent', req);
        const items = (data.contents || []).map((c) =>
          Object.assign({}, c, { accessText: ACCESS[c.access] || c.access, kindText: CONTENT_KIND[c.kind] || c.kind }),
        );
        this.loadedOnce = true;
        this.setData({ items, loading: false });
      } catch (err) {
        this.setData({ items: [], loading: false, errorText: errorMessage(err) });
      }
    },
    onKind(e) {
      this.setData({ kind: e.currentTarget.dataset.kind });
      return this.load();
    },
    onOpen(e) {
      go(`/content/pages/reader/reader?id=${encodeURIComponent(e.currentTarget.dataset.id)}`);
    },
  },
});
