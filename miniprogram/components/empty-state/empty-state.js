/** "Nothing here" / "failed to load" with an optional retry button (emits `action`). */
Component({
  properties: {
    text: { type: String, value: '' },
    action: { type: String, value: '' },
  },
  methods: {
    onAction() {
      this.triggerEvent('action');
    },
  },
});
