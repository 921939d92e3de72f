/** A post's moderation state as a label, with the reason when it was rejected. */
const { postStatusLabel } = require('../../utils/labels');

Component({
  properties: {
    status: { type: String, value: '' },
    reason: { type: String, value: '' },
  },
  data: { label: '' },
  observers: {
    status(s) {
      this.setData({ label: postStatusLabel(s) });
    },
  },
});
