/** One catalog entry in a list; tapping it emits `select` with the sku. */
Component({
  properties: {
    product: { type: Object, value: {} },
  },
  data: { soldOut: false },
  observers: {
    product(p) {
      this.setData({ soldOut: !!p && typeof p.stock === 'number' && p.stock <= 0 });
    },
  },
  methods: {
    onTap() {
      this.triggerEvent('select', { sku: this.data.product.sku });
    },
  },
});
