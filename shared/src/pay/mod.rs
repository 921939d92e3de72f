//! WeChat Pay: API v3 (JSAPI, notifications, refunds, certificates / public key), virtual payment (xpay), API v2.
