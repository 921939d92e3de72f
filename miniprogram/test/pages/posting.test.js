const { load, mount, text, flush } = require('../helpers/sim');
const { fakeApi, ApiError } = require('../helpers/fake-api');

const POSTS = {
  posts: [
    { id: 'p1', author: 'o-other', text: '大家好', media: [], status: 'approved', createdAt: 1800000000 },
    { id: 'p2', author: 'o-user', text: '我的新帖', media: [], status: 'pending', createdAt: 1800000100 },
    { id: 'p3', author: 'o-user', text: '等人工审核', media: [], status: 'in_review', createdAt: 1800000200 },
    { id: 'p4', author: 'o-user', text: '被拒了', media: [], status: 'rejected', reason: '含广告', createdAt: 1800000300 },
  ],
};

describe('feed', () => {
  let id;
  beforeAll(() => {
    id = load('posting/pages/feed/feed');
  });

  test('moderation state labels on the caller\'s own posts; approved posts carry none', async () => {
    fakeApi({ 'ugcUpload.list': POSTS });
    const page = mount(id);
    await page.instance.onShow();
    await flush();
    const posts = page.querySelectorAll('.post');
    expect(posts).toHaveLength(4);
    // approved posts carry no badge: three badges, in the order of the caller's posts
    expect(page.querySelectorAll('.post-badge').map((b) => text(b))).toEqual(['检测中', '人工审核中', '未通过 ：含广告']);
    expect(text(posts[0])).toBe(`${page.data.posts[0].timeText} 大家好`);
    // delete only on own posts
    expect(page.querySelectorAll('.post-actions')).toHaveLength(3);
    expect(page.data.posts.map((p) => p.mine)).toEqual([false, true, true, true]);
  });
});

describe('compose', () => {
  let id;
  beforeAll(() => {
    id = load('posting/pages/compose/compose');
  });

  test('chooseMedia → upload under ugc/<openid>/ → create → shows the moderation state', async () => {
    const api = fakeApi({
      'ugcUpload.create': (data) => ({ post: { id: 'p9', author: 'o-user', text: data.text, media: data.media, status: 'pending', createdAt: 1 } }),
    });
    wx.chooseMedia = jest.fn((o) => o.success({ tempFiles: [{ tempFilePath: 'wxfile://tmp/a.png', size: 10 }, { tempFilePath: 'wxfile://tmp/b.jpg', size: 20 }] }));
    const page = mount(id);
    page.instance.onText({ detail: { value: '  第一条  ' } });
    page.instance.onChoose();
    expect(wx.chooseMedia).toHaveBeenCalledWith(expect.objectContaining({ count: 9, mediaType: ['image'] }));
    await page.instance.onSubmit();
    await flush();
    expect(api.uploadFile).toHaveBeenCalledTimes(2);
    const [[path0, cloud0], [, cloud1]] = api.uploadFile.mock.calls;
    expect(path0).toBe('wxfile://tmp/a.png');
    expect(cloud0).toMatch(/^ugc\/o-user\/\d+-0\.png$/);
    expect(cloud1).toMatch(/^ugc\/o-user\/\d+-1\.jpg$/);
    const create = api.of('ugcUpload', 'create')[0].data;
    expect(create.text).toBe('第一条');
    expect(create.media).toEqual([
      { fileId: `cloud://env/${cloud0}`, type: 'image' },
      { fileId: `cloud://env/${cloud1}`, type: 'image' },
    ]);
    expect(text(page.querySelector('.result'))).toBe('已提交 检测中');
  });

  test('TEXT_RISKY is explained and nothing is cleared', async () => {
    fakeApi({ 'ugcUpload.create': new ApiError('TEXT_RISKY', 'risky') });
    const page = mount(id);
    page.instance.onText({ detail: { value: '不良内容' } });
    await page.instance.onSubmit();
    await flush();
    expect(text(page.querySelector('.error'))).toBe('内容包含不当信息，请修改后再发');
    expect(page.data.text).toBe('不良内容');
  });
});
