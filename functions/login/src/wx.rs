//! The two WeChat calls login makes, behind a trait so the handlers can be tested without a
//! network, and the mapping of WeChat's errcodes to this function's public codes.

use async_trait::async_trait;
use http::StatusCode;
use wemint::runtime::ApiError;
use wemint::secret::Secret;
use wemint::wechat::{ErrCode, WechatClient, WechatError};

/// Public code: the `wx.login` (or phone-number) code is invalid or expired.
pub const INVALID_CODE: &str = "INVALID_CODE";
/// Public code: the code was already used.
pub const CODE_USED: &str = "CODE_USED";
/// Public code: WeChat refuses this user's login as high risk.
pub const WECHAT_RISKY_USER: &str = "WECHAT_RISKY_USER";
/// Public code: WeChat is busy or unreachable; retry later.
pub const WECHAT_BUSY: &str = "WECHAT_BUSY";

/// How long to wait after WeChat's own per-user limit (45011: 100 calls a minute).
const WECHAT_LIMIT_RETRY_SECS: u64 = 60;

/// What `code2Session` gave for a code.
pub struct WxSession {
    /// The user's openid.
    pub openid: String,
    /// The current session_key (base64), secret.
    pub session_key: Secret<String>,
    /// The unionid, when the app is bound to an Open Platform account.
    pub unionid: Option<String>,
}

/// The WeChat calls `login` needs.
#[async_trait]
pub trait WechatLogin: Send + Sync {
    /// Our appid (goes into session tokens and user documents).
    fn appid(&self) -> &str;
    /// `code2Session` for a `wx.login` code.
    async fn code2session(&self, code: &str) -> Result<WxSession, WechatError>;
    /// The phone number (with country code) for a phone-number button code of `openid`.
    async fn phone_number(&self, code: &str, openid: &str) -> Result<String, WechatError>;
}

#[async_trait]
impl WechatLogin for WechatClient {
    fn appid(&self) -> &str {
        WechatClient::appid(self)
    }

    async fn code2session(&self, code: &str) -> Result<WxSession, WechatError> {
        let s = WechatClient::code2session(self, code).await?;
        Ok(WxSession {
            openid: s.openid,
            session_key: Secret::new(s.session_key.expose().to_owned()),
            unionid: s.unionid,
        })
    }

    async fn phone_number(&self, code: &str, openid: &str) -> Result<String, WechatError> {
        let info = WechatClient::phone_number(self, code, Some(openid)).await?;
        Ok(info.phone_number)
    }
}

/// Which code failed: the messages say which one to renew.
#[derive(Clone, Copy)]
pub(crate) enum CodeKind {
    /// The `wx.login` code.
    Login,
    /// The phone-number button code.
    Phone,
}

/// Maps a failed WeChat call to the public error.
pub(crate) fn api_error(err: WechatError, kind: CodeKind) -> ApiError {
    let what = match kind {
        CodeKind::Login => "login code",
        CodeKind::Phone => "phone number code",
    };
    let code = err.errcode();
    match code {
        Some(ErrCode::InvalidCode) => ApiError::new(
            INVALID_CODE,
            StatusCode::BAD_REQUEST,
            format!("the {what} is invalid or expired; get a new one"),
        ),
        Some(ErrCode::CodeUsed) => ApiError::new(
            CODE_USED,
            StatusCode::BAD_REQUEST,
            format!("the {what} was already used; get a new one"),
        ),
        Some(ErrCode::RiskyUser) => ApiError::new(
            WECHAT_RISKY_USER,
            StatusCode::FORBIDDEN,
            "WeChat blocked this login as high risk",
        ),
        Some(ErrCode::RateLimited | ErrCode::QuotaReached) => ApiError::rate_limited(
            "WeChat limits logins for this user; try again later",
            WECHAT_LIMIT_RETRY_SECS,
        ),
        _ if matches!(err, WechatError::InvalidRequest(_)) => ApiError::new(
            INVALID_CODE,
            StatusCode::BAD_REQUEST,
            format!("the {what} is malformed"),
        ),
        _ if err.is_retryable() => ApiError::new(
            WECHAT_BUSY,
            StatusCode::SERVICE_UNAVAILABLE,
            "WeChat is busy; try again shortly",
        )
        .with_source(err),
        _ => ApiError::internal(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_map_to_stable_codes() {
        let cases = [
            (40029, INVALID_CODE, 400),
            (40163, CODE_USED, 400),
            (40226, WECHAT_RISKY_USER, 403),
            (45011, "RATE_LIMITED", 429),
            (-1, WECHAT_BUSY, 503),
            (40125, "INTERNAL", 500),
        ];
        for (errcode, code, status) in cases {
            let e = api_error(WechatError::api(errcode, "x"), CodeKind::Login);
            assert_eq!((e.code(), e.status().as_u16()), (code, status), "{errcode}");
        }
        let e = api_error(WechatError::api(45011, "x"), CodeKind::Login);
        assert_eq!(e.retry_after_secs(), Some(60));
        assert_eq!(
            api_error(WechatError::Transport("down".into()), CodeKind::Login).code(),
            WECHAT_BUSY
        );
        let e = api_error(WechatError::api(40029, "x"), CodeKind::Phone);
        assert!(e.message().contains("phone"), "{}", e.message());
        assert_eq!(
            api_error(WechatError::InvalidRequest("long".into()), CodeKind::Login).code(),
            INVALID_CODE
        );
    }
}
