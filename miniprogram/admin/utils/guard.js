const { getApi } = require('../../utils/api');
const { errorMessage } = require('../../utils/labels');
const { isAdmin } = require('../../utils/roles');

/**
 * The admin pages' entry check: hides the page for non-admins (the server refuses them
 * anyway) and loads it for admins. A failure shows its message instead of throwing.
 */
async function guardAdmin(page, load) {
  try {
    const session = await getApi().ensureSession();
    const admin = isAdmin(session.user);
    page.setData({ denied: !admin });
    if (admin) await load();
  } catch (err) {
    page.setData({ errorText: errorMessage(err) });
  }
}

module.exports = { guardAdmin };
