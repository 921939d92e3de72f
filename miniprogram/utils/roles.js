/** Who may see what. The server enforces all of it again; this only hides what would fail. */

/** Project admins (review queue, refunds): `user.role === 'admin'` from login. */
function isAdmin(user) {
  return !!user && user.role === 'admin';
}

/** Owners and admins of the active tenant may invite and buy the tenant's plan. */
function canManageTenant(user) {
  const t = user && user.tenant;
  return !!t && (t.role === 'owner' || t.role === 'admin');
}

module.exports = { isAdmin, canManageTenant };
