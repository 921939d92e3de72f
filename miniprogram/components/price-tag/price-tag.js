/**
 * A price from integer fen, or — for virtual goods on a client that cannot take a virtual
 * payment (old WeChat on iOS) — the "update WeChat" hint and no price at all.
 */
const { formatFen } = require('../../utils/money');
const { canSell } = require('../../utils/platform');
const { UPDATE_WECHAT_HINT } = require('../../utils/labels');

Component({
  properties: {
    priceFen: { type: Number, value: 0 },
    kind: { type: String, value: '' },
    channel: { type: String, value: '' },
  },
  data: { text: '', sellable: true, hint: UPDATE_WECHAT_HINT },
  observers: {
    'priceFen, kind, channel': function refreshOnChange() {
      this.refresh();
    },
  },
  lifetimes: {
    attached() {
      this.refresh();
    },
  },
  methods: {
    refresh() {
      const sellable = canSell({ kind: this.data.kind, channel: this.data.channel });
      let text = '';
      try {
        text = formatFen(this.data.priceFen);
      } catch (e) {
        text = '';
      }
      this.setData({ sellable, text });
    },
  },
});
