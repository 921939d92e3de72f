/**
 * Money is integer fen everywhere; these helpers only format and parse it for people.
 * No floating point touches an amount.
 */

function assertFen(fen) {
  if (typeof fen !== 'number' || !Number.isSafeInteger(fen)) {
    throw new TypeError(`amount must be an integer number of fen, got ${String(fen)}`);
  }
}

/** 1999 → "19.99", 5 → "0.05", -120 → "-1.20". */
function fenToYuanString(fen) {
  assertFen(fen);
  const sign = fen < 0 ? '-' : '';
  const abs = Math.abs(fen);
  const yuan = Math.floor(abs / 100);
  const cents = abs % 100;
  return `${sign}${yuan}.${cents < 10 ? '0' : ''}${cents}`;
}

/** 1999 → "¥19.99". */
function formatFen(fen) {
  const s = fenToYuanString(fen);
  return s[0] === '-' ? `-¥${s.slice(1)}` : `¥${s}`;
}

/**
 * Parses what a person typed in yuan ("12", "12.3", "12.30") into fen without floats.
 * Returns null for anything that is not a non-negative amount with at most two decimals.
 */
function parseYuanToFen(text) {
  if (typeof text !== 'string') return null;
  const m = /^\s*(\d{1,9})(?:\.(\d{0,2}))?\s*$/.exec(text);
  if (!m) return null;
  const cents = (m[2] || '').padEnd(2, '0');
  return Number(m[1]) * 100 + Number(cents);
}

/** Sum of quantity × unit price over lines `{quantity, priceFen}`. */
function lineTotalFen(lines) {
  return lines.reduce((sum, line) => {
    assertFen(line.priceFen);
    if (!Number.isSafeInteger(line.quantity) || line.quantity < 1) {
      throw new TypeError('quantity must be a positive integer');
    }
    return sum + line.priceFen * line.quantity;
  }, 0);
}

module.exports = { fenToYuanString, formatFen, parseYuanToFen, lineTotalFen };
