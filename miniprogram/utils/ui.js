/** Small wrappers over wx UI calls so pages stay short. */
const { errorMessage } = require('./labels');

function toast(title, icon) {
  if (typeof wx === 'undefined' || !wx.showToast) return;
  wx.showToast({ title, icon: icon || 'none' });
}

function showError(err) {
  toast(errorMessage(err));
}

/** Resolves true when the user confirms. */
function confirm(title, content) {
  return new Promise((resolve) => {
    if (typeof wx === 'undefined' || !wx.showModal) {
      resolve(false);
      return;
    }
    wx.showModal({ title, content: content || '', success: (r) => resolve(!!r.confirm), fail: () => resolve(false) });
  });
}

/** Resolves the text typed into an editable modal, or null when cancelled. */
function prompt(title, placeholder) {
  return new Promise((resolve) => {
    if (typeof wx === 'undefined' || !wx.showModal) {
      resolve(null);
      return;
    }
    wx.showModal({
      title,
      editable: true,
      placeholderText: placeholder || '',
      success: (r) => resolve(r.confirm ? r.content || '' : null),
      fail: () => resolve(null),
    });
  });
}

function go(url) {
  if (typeof wx !== 'undefined' && wx.navigateTo) wx.navigateTo({ url });
}

module.exports = { toast, showError, confirm, prompt, go };
