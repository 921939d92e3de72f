/** @jest-environment node */
const { fenToYuanString, formatFen, parseYuanToFen, lineTotalFen } = require('../../utils/money');

describe('formatFen', () => {
  test.each([
    [0, '¥0.00'],
    [5, '¥0.05'],
    [10, '¥0.10'],
    [100, '¥1.00'],
    [1999, '¥19.99'],
    [123456789, '¥1234567.89'],
    [-120, '-¥1.20'],
  ])('%i fen → %s', (fen, text) => {
    expect(formatFen(fen)).toBe(text);
  });

  test('no float rounding: 0.1 + 0.2 style sums stay exact', () => {
    expect(fenToYuanString(10 + 20)).toBe('0.30');
    expect(fenToYuanString(Number.MAX_SAFE_INTEGER)).toBe('90071992547409.91');
  });

  test.each([[1.5], ['100'], [NaN], [null], [undefined]])('rejects %p', (bad) => {
    expect(() => formatFen(bad)).toThrow(TypeError);
  });
});

describe('parseYuanToFen', () => {
  test.each([
    ['12', 1200],
    ['12.3', 1230],
    ['12.30', 1230],
    ['0.01', 1],
    [' 8.5 ', 850],
    ['12.', 1200],
  ])('%p → %i', (text, fen) => {
    expect(parseYuanToFen(text)).toBe(fen);
  });

  test.each([['12.345'], ['-1'], ['abc'], [''], ['1e3'], [12]])('%p → null', (text) => {
    expect(parseYuanToFen(text)).toBeNull();
  });
});

describe('lineTotalFen', () => {
  test('sums quantity × price', () => {
    expect(lineTotalFen([{ priceFen: 1999, quantity: 2 }, { priceFen: 1, quantity: 3 }])).toBe(4001);
    expect(lineTotalFen([])).toBe(0);
  });
  test('rejects a zero quantity', () => {
    expect(() => lineTotalFen([{ priceFen: 100, quantity: 0 }])).toThrow(TypeError);
  });
});
