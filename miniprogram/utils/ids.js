/**
 * Client request ids: an idempotency key for one checkout (createOrder dedupes on it) and
 * refund numbers. Not secrets, only unique: time plus randomness is enough.
 */
function randomPart(random, len) {
  const r = random || Math.random;
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  let out = '';
  for (let i = 0; i < len; i += 1) out += alphabet[Math.floor(r() * alphabet.length) % alphabet.length];
  return out;
}

/** "ck" + base36 ms + 12 random chars; 8–32 chars of [0-9a-z], safe for any order-number field. */
function newRequestId(prefix, now, random) {
  const t = (now ? now() : Date.now()).toString(36);
  return `${prefix || 'ck'}${t}${randomPart(random, 12)}`.slice(0, 32);
}

module.exports = { newRequestId };
