const { load, mount, text } = require('../helpers/sim');

let id;
beforeAll(() => {
  id = load('components/moderation-badge/moderation-badge');
});

test.each([
  ['pending', '检测中'],
  ['in_review', '人工审核中'],
  ['approved', '已发布'],
  ['rejected', '未通过'],
])('%s → %s', (status, label) => {
  const comp = mount(id, { status });
  expect(text(comp)).toBe(label);
  expect(comp.querySelector(`.badge-${status}`)).toBeTruthy();
});

test('a rejected post shows its reason', () => {
  const comp = mount(id, { status: 'rejected', reason: '含广告' });
  expect(text(comp)).toBe('未通过 ：含广告');
});

test('no status → nothing rendered', () => {
  const comp = mount(id, { status: '' });
  expect(comp.querySelector('.badge')).toBeUndefined();
});
