/**
 * A stand-in for a `<canvas type="2d">` node and its 2D context: every drawing call is recorded,
 * `measureText` answers a width, properties can be set. Enough for uCharts to draw a chart.
 */
function fakeContext() {
  const calls = [];
  const target = { calls };
  return new Proxy(target, {
    get(t, p) {
      if (p in t) return t[p];
      if (typeof p === 'symbol' || p === 'then') return undefined;
      if (p === 'measureText') return (s) => ({ width: String(s).length * 6 });
      return (...args) => {
        calls.push([p, ...args]);
      };
    },
    set(t, p, v) {
      // eslint-disable-next-line no-param-reassign
      t[p] = v;
      return true;
    },
  });
}

/** The texts drawn on a context, in order. */
function drawnTexts(ctx) {
  return ctx.calls.filter((c) => c[0] === 'fillText').map((c) => String(c[1]));
}

function fakeCanvas() {
  const ctx = fakeContext();
  return { width: 0, height: 0, ctx, getContext: () => ctx };
}

/**
 * Installs `wx.createSelectorQuery` answering `#id` with a fake canvas of the given CSS size;
 * returns the canvases by id (created on first query).
 */
function installCanvasQuery(size) {
  const canvases = {};
  global.wx.createSelectorQuery = () => {
    const q = {
      in: () => q,
      select: (sel) => {
        q.id = sel.replace(/^#/, '');
        return q;
      },
      fields: () => q,
      exec: (cb) => {
        canvases[q.id] = canvases[q.id] || fakeCanvas();
        cb([{ node: canvases[q.id], width: (size && size.width) || 320, height: (size && size.height) || 210 }]);
      },
    };
    return q;
  };
  return canvases;
}

module.exports = { fakeContext, drawnTexts, fakeCanvas, installCanvasQuery };
