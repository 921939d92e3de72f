/**
 * Every user-facing word the pages derive from data, in one place (pages precompute labels
 * into setData because WXML cannot call functions).
 */

const ORDER_STATUS = Object.freeze({
  created: '待支付',
  paid: '已支付',
  fulfilled: '已完成',
  closed: '已关闭',
  refunding: '退款中',
  refunded: '已退款',
  partially_refunded: '部分退款',
  review: '审核中',
});

/** Post moderation states (ugcUpload `post.status`). */
const POST_STATUS = Object.freeze({
  pending: '检测中',
  in_review: '人工审核中',
  approved: '已发布',
  rejected: '未通过',
});

const ACCESS = Object.freeze({ granted: '已解锁', locked: '未解锁' });

/** Where the goods are (`order.shipping.state`). */
const SHIPPING_STATE = Object.freeze({
  awaiting: '待发货',
  shipped: '已发货',
  received: '已签收',
  settled: '已完成',
});

/** How they travel (`order.shipping.logisticsType`). */
const LOGISTICS_TYPE = Object.freeze({
  express: '快递',
  same_city: '同城配送',
  self_pickup: '到店自提',
  virtual: '虚拟发货',
});

const SUBSCRIPTION_STATE = Object.freeze({
  trial: '试用中',
  active: '生效中',
  past_due: '待续费',
  grace: '宽限期',
  expired: '已过期',
  canceled: '已取消（到期前可用）',
});

const CONTENT_KIND = Object.freeze({ article: '文章', course: '课程', audio: '音频', video: '视频' });

const TENANT_ROLE = Object.freeze({ owner: '所有者', admin: '管理员', member: '成员' });

/** Shown instead of a price for virtual goods where virtual payment is unavailable. */
const UPDATE_WECHAT_HINT = '请升级微信到最新版本后购买';

/** Messages for the stable error codes a user can meet. */
const ERRORS = Object.freeze({
  NETWORK_ERROR: '网络不太顺畅，请稍后再试',
  HTTP_ERROR: '服务暂时不可用，请稍后再试',
  BAD_REPLY: '服务返回异常，请稍后再试',
  WX_LOGIN_FAILED: '微信登录失败，请重试',
  RATE_LIMITED: '操作太频繁，请稍后再试',
  WECHAT_BUSY: '微信繁忙，请稍后再试',
  UNAUTHENTICATED: '登录已过期，请重试',
  FORBIDDEN: '没有权限',
  INVALID_CODE: '登录失败，请重试',
  CODE_USED: '登录失败，请重试',
  WECHAT_RISKY_USER: '账号存在风险，暂不可用',
  SEAT_LIMIT_REACHED: '团队席位已满，请升级套餐',
  PRODUCT_NOT_FOUND: '商品不存在',
  PRODUCT_INACTIVE: '商品已下架',
  OUT_OF_STOCK: '库存不足',
  TOO_MANY_OPEN_ORDERS: '未支付的订单太多，请先支付或取消一些订单',
  MIXED_CHANNELS: '实物商品与虚拟商品需分开下单',
  INVALID_QUANTITY: '数量不正确',
  ORDER_NOT_FOUND: '订单不存在',
  ORDER_NOT_CANCELABLE: '订单已无法取消',
  REFUND_EXCEEDS_PAID: '退款金额超过实付金额',
  SESSION_KEY_MISSING: '请重新登录后购买',
  PAYMENT_PROVIDER_ERROR: '支付服务繁忙，请稍后再试',
  PAYMENT_UI_FAILED: '支付未完成',
  VIRTUAL_PAYMENT_UNSUPPORTED: UPDATE_WECHAT_HINT,
  CONTENT_NOT_FOUND: '内容不存在',
  TEXT_RISKY: '内容包含不当信息，请修改后再发',
  TEXT_TOO_LONG: '文字太长了',
  TOO_MANY_MEDIA: '最多 9 张图片',
  MEDIA_NOT_OWNED: '图片上传异常，请重新选择',
  MEDIA_TYPE_UNSUPPORTED: '暂只支持图片',
  DAILY_QUOTA_EXCEEDED: '今天发布次数已用完',
  POST_NOT_FOUND: '帖子不存在',
  SUBSCRIPTION_NOT_FOUND: '还没有开通会员',
  SUBSCRIPTION_EXPIRED: '会员已过期，请重新开通',
  PLAN_NOT_FOUND: '会员方案不存在',
  PLAN_NOT_FOR_SALE: '该方案暂未开放购买',
  PLAN_CHANGE_INVALID: '当前会员状态无法切换到该方案',
  // A trial comes once, before any subscription: the plan has none, or the user subscribed before.
  TRIAL_UNAVAILABLE: '该方案不提供试用，或你已开通过会员',
  // Virtual payment takes only some amounts; buying the plan itself starts at the period end.
  UPGRADE_PRICE_UNSUPPORTED: '补差价金额暂时无法支付，可选择在当前会员到期后切换到该方案',
  INVALID_SHIPMENT: '发货信息不完整或格式不对',
  ORDER_NOT_SHIPPABLE: '订单当前不能发货',
  ORDER_ALREADY_SHIPPED: '订单已发货',
  SHIPPING_PLATFORM_ERROR: '微信发货服务繁忙，请稍后再试',
  CONFIRM_RECEIPT_UNSUPPORTED: '当前微信版本不支持确认收货，请升级微信',
  // Finance (bill reconciliation, admin).
  BILL_HASH_MISMATCH: '账单校验失败（哈希不符），已拒收，请重试',
  BILL_CORRUPT: '账单文件损坏或不完整，已拒收，请重试',
  BILL_FORMAT: '账单格式无法识别',
  BILL_DATE_INVALID: '只能对账三个月内已结束的日期（yyyy-MM-dd）',
  BILLS_UNAVAILABLE: '未配置微信支付，无法下载账单',
  DISCREPANCY_NOT_FOUND: '该差异已处理或不存在',
});

function orderStatusLabel(status) {
  return ORDER_STATUS[status] || status || '';
}

function shippingStateLabel(state) {
  return SHIPPING_STATE[state] || state || '';
}

function logisticsLabel(type) {
  return LOGISTICS_TYPE[type] || type || '';
}

function postStatusLabel(status) {
  return POST_STATUS[status] || status || '';
}

function errorMessage(err) {
  const code = err && err.code;
  return (code && ERRORS[code]) || '出错了，请稍后再试';
}

/** Unix seconds → "2026-11-23 22:05" in the device's time zone. */
function formatTime(secs) {
  if (typeof secs !== 'number' || !Number.isFinite(secs)) return '';
  const d = new Date(secs * 1000);
  const p = (n) => (n < 10 ? `0${n}` : `${n}`);
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

module.exports = {
  ORDER_STATUS,
  POST_STATUS,
  ACCESS,
  SUBSCRIPTION_STATE,
  CONTENT_KIND,
  TENANT_ROLE,
  UPDATE_WECHAT_HINT,
  ERRORS,
  orderStatusLabel,
  shippingStateLabel,
  logisticsLabel,
  postStatusLabel,
  errorMessage,
  formatTime,
};
