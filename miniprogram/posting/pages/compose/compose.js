/**
 * New post: wx.chooseMedia (a privacy API: <privacy-popup> collects consent) → consent to the
 * moderation-result notice → wx.cloud.uploadFile (under ugc/<openid>/) → ugcUpload `create`.
 * The post comes back in moderation (`pending` / `in_review`) and its state is shown; it appears
 * in the feed for others once approved.
 */
const { getApi } = require('../../../utils/api');
const { errorMessage } = require('../../../utils/labels');
const { askConsent } = require('../../../utils/subscribe');
const track = require('../../../utils/track');

const MAX_IMAGES = 9;
const MAX_LENGTH = 2000;

/** Where a user's upload goes: the server only accepts files under the caller's own folder. */
function cloudPathFor(openid, filePath, index, now) {
  const m = /\.([a-zA-Z0-9]{1,5})$/.exec(filePath || '');
  const ext = m ? m[1].toLowerCase() : 'jpg';
  return `ugc/${openid}/${now}-${index}.${ext}`;
}

Component({
  behaviors: [track.pageView('posting/pages/compose/compose')],
  data: { text: '', images: [], maxImages: MAX_IMAGES, maxLength: MAX_LENGTH, busy: false, progressText: '', errorText: '', post: null },
  methods: {
    onText(e) {
      this.setData({ text: e.detail.value });
    },
    onChoose() {
      const left = MAX_IMAGES - this.data.images.length;
      if (left <= 0) return;
      wx.chooseMedia({
        count: left,
        mediaType: ['image'],
        sizeType: ['compressed'],
        sourceType: ['album', 'camera'],
        success: (res) => {
          const picked = (res.tempFiles || []).map((f) => ({ path: f.tempFilePath, size: f.size }));
          this.setData({ images: this.data.images.concat(picked).slice(0, MAX_IMAGES) });
        },
      });
    },
    onRemove(e) {
      const i = Number(e.currentTarget.dataset.index);
      this.setData({ images: this.data.images.filter((_, j) => j !== i) });
    },
    async onSubmit() {
      if (this.data.busy) return;
      const text = this.data.text.trim();
      if (!text && !this.data.images.length) return;
      // The moderation result: asked in this tap, before any await (WeChat shows the popup only
      // there). Publishing goes on whatever the answer.
      const consent = askConsent(['postNotice']);
      this.setData({ busy: true, errorText: '', post: null });
      try {
        await consent;
        const api = getApi();
        const session = await api.ensureSession();
        const openid = session.user && session.user.openid;
        const now = Date.now();
        const media = [];
        for (let i = 0; i < this.data.images.length; i += 1) {
          this.setData({ progressText: `上传图片 ${i + 1}/${this.data.images.length}` });
          const img = this.data.images[i];
          const fileId = await api.uploadFile(img.path, cloudPathFor(openid, img.path, i, now));
          media.push({ fileId, type: 'image' });
        }
        this.setData({ progressText: '发布中…' });
        // Not retried automatically: a resend could post twice.
        const data = await api.call('ugcUpload', { action: 'create', text, media });
        track.postPublish(data.post && data.post.id);
        this.setData({ post: data.post, text: '', images: [], progressText: '' });
      } catch (err) {
        this.setData({ errorText: errorMessage(err), progressText: '' });
      }
      this.setData({ busy: false });
    },
  },
});
