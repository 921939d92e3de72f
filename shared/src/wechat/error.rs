//! Typed WeChat errcodes and the module's error type.
//!
//! WeChat answers most failures with HTTP 200 and a JSON `{"errcode":N,"errmsg":"…"}`. Callers
//! must react to a handful of codes differently (retry on `-1`, refresh the token on 40001,
//! tell the user to log in again on 40029, stop sending on 43101), so each documented code is
//! a variant of [`ErrCode`] instead of a bare number.

use std::fmt;

/// A WeChat `errcode`, with every code our calls document given a name.
///
/// Codes not listed here keep their number in [`ErrCode::Other`]; [`ErrCode::code`] always
/// returns the original number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrCode {
    /// -1: system busy; retry later.
    SystemBusy,
    /// 40001: access_token invalid or not the latest (or AppSecret wrong when fetching one).
    InvalidCredential,
    /// 40002: invalid grant_type, or (URL Scheme) no permission for this API.
    InvalidGrantType,
    /// 40003: the openid is invalid or belongs to another appid.
    InvalidOpenid,
    /// 40013: invalid appid (or the Mini Program is banned).
    InvalidAppid,
    /// 40014: invalid access_token.
    InvalidAccessToken,
    /// 40029: js_code / phone code invalid or expired (single use, about 5 minutes).
    InvalidCode,
    /// 40037: invalid template_id.
    InvalidTemplateId,
    /// 40125: invalid AppSecret.
    InvalidAppSecret,
    /// 40129: invalid content-security scene.
    InvalidScene,
    /// 40163: the code has already been used.
    CodeUsed,
    /// 40164: the caller's IP is not in the API allow-list.
    IpNotAllowed,
    /// 40165: invalid page path (URL Scheme).
    InvalidPath,
    /// 40226: high-risk user, login blocked.
    RiskyUser,
    /// 40243: AppSecret frozen.
    AppSecretFrozen,
    /// 41030: the page does not exist or the Mini Program is not published.
    InvalidPage,
    /// 42001: access_token expired.
    AccessTokenExpired,
    /// 43101: the user has no remaining subscribe-message grant (refused or used up).
    UserRefused,
    /// 43104: appid and openid do not match.
    AppidOpenidMismatch,
    /// 43302: the API requires POST.
    RequirePost,
    /// 44002: empty POST body.
    EmptyPostData,
    /// 45009: API quota reached (daily quota, or minute quota for Mini Program codes).
    QuotaReached,
    /// 45011: API minute quota reached for this user (code2Session: 100/min per user).
    RateLimited,
    /// 47001: malformed JSON/XML body.
    BadFormat,
    /// 47003: an argument is invalid; errmsg names the field.
    InvalidArgument,
    /// 85079: the Mini Program has no published version.
    NotPublished,
    /// 85400: long-term URL Scheme quota reached.
    LongTermQuota,
    /// 87009: invalid signature.
    InvalidSignature,
    /// Any other non-zero errcode.
    Other(i64),
}

/// Known codes in one table so `from_code` and `code` cannot drift apart.
const KNOWN: &[(i64, ErrCode)] = &[
    (-1, ErrCode::SystemBusy),
    (40001, ErrCode::InvalidCredential),
    (40002, ErrCode::InvalidGrantType),
    (40003, ErrCode::InvalidOpenid),
    (40013, ErrCode::InvalidAppid),
    (40014, ErrCode::InvalidAccessToken),
    (40029, ErrCode::InvalidCode),
    (40037, ErrCode::InvalidTemplateId),
    (40125, ErrCode::InvalidAppSecret),
    (40129, ErrCode::InvalidScene),
    (40163, ErrCode::CodeUsed),
    (40164, ErrCode::IpNotAllowed),
    (40165, ErrCode::InvalidPath),
    (40226, ErrCode::RiskyUser),
    (40243, ErrCode::AppSecretFrozen),
    (41030, ErrCode::InvalidPage),
    (42001, ErrCode::AccessTokenExpired),
    (43101, ErrCode::UserRefused),
    (43104, ErrCode::AppidOpenidMismatch),
    (43302, ErrCode::RequirePost),
    (44002, ErrCode::EmptyPostData),
    (45009, ErrCode::QuotaReached),
    (45011, ErrCode::RateLimited),
    (47001, ErrCode::BadFormat),
    (47003, ErrCode::InvalidArgument),
    (85079, ErrCode::NotPublished),
    (85400, ErrCode::LongTermQuota),
    (87009, ErrCode::InvalidSignature),
];

impl ErrCode {
    /// The typed code for a raw errcode (never called with 0, which means success).
    pub fn from_code(code: i64) -> Self {
        KNOWN
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(ErrCode::Other(code), |(_, e)| *e)
    }

    /// The raw errcode number.
    pub fn code(self) -> i64 {
        match self {
            ErrCode::Other(code) => code,
            known => KNOWN
                .iter()
                .find(|(_, e)| *e == known)
                .map_or(0, |(c, _)| *c),
        }
    }

    /// The access token used for the call is no longer valid: refresh it and retry once.
    pub fn is_token_invalid(self) -> bool {
        matches!(
            self,
            ErrCode::InvalidCredential | ErrCode::InvalidAccessToken | ErrCode::AccessTokenExpired
        )
    }

    /// WeChat asks to try again later (`-1` system busy).
    pub fn is_busy(self) -> bool {
        self == ErrCode::SystemBusy
    }
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Everything a WeChat platform call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WechatError {
    /// WeChat answered with a non-zero errcode.
    #[error("wechat errcode {code} ({code:?}): {errmsg}")]
    Api {
        /// Typed errcode.
        code: ErrCode,
        /// WeChat's message, kept for support tickets.
        errmsg: String,
        /// The `rid` WeChat embeds in errmsg (`… rid: 6543…`), for `/cgi-bin/openapi/rid/get`.
        rid: Option<String>,
    },
    /// The HTTP exchange itself failed (connect, timeout, TLS).
    #[error("wechat request failed: {0}")]
    Transport(String),
    /// No reply in time; the request may or may not have been processed.
    #[error("wechat request timed out: {0}")]
    Timeout(String),
    /// WeChat answered with an unexpected HTTP status.
    #[error("wechat answered HTTP {0}")]
    Status(u16),
    /// The reply could not be understood.
    #[error("wechat reply could not be decoded: {0}")]
    Decode(String),
    /// The request was refused before sending (bad argument on our side).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The shared token store failed.
    #[error("token store: {0}")]
    Store(String),
    /// Another instance holds the refresh lease and no token appeared in time.
    #[error("access token not available: refresh by another instance did not finish in time")]
    TokenLeaseTimeout,
}

impl WechatError {
    /// Builds the typed API error, extracting WeChat's `rid` from the message.
    pub fn api(code: i64, errmsg: impl Into<String>) -> Self {
        let errmsg = errmsg.into();
        let rid = extract_rid(&errmsg);
        WechatError::Api {
            code: ErrCode::from_code(code),
            errmsg,
            rid,
        }
    }

    /// The typed errcode if WeChat answered with one.
    pub fn errcode(&self) -> Option<ErrCode> {
        match self {
            WechatError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Worth another attempt: WeChat busy, a transport failure, or a 429/5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            WechatError::Api { code, .. } => code.is_busy(),
            WechatError::Transport(_) => true,
            WechatError::Status(s) => *s == 429 || (500..600).contains(s),
            _ => false,
        }
    }

    /// The call failed because its access token is no longer valid.
    pub fn is_token_invalid(&self) -> bool {
        self.errcode().is_some_and(ErrCode::is_token_invalid)
    }
}

/// WeChat appends `rid: <hex>` (sometimes `, rid: …`) to errmsg.
fn extract_rid(errmsg: &str) -> Option<String> {
    let start = errmsg.find("rid:")? + 4;
    let rid: String = errmsg[start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!rid.is_empty()).then_some(rid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips() {
        for (code, typed) in KNOWN {
            assert_eq!(ErrCode::from_code(*code), *typed);
            assert_eq!(typed.code(), *code);
        }
        assert_eq!(ErrCode::from_code(12345), ErrCode::Other(12345));
        assert_eq!(ErrCode::Other(12345).code(), 12345);
    }

    #[test]
    fn token_invalid_and_busy_classes() {
        for c in [40001, 40014, 42001] {
            assert!(ErrCode::from_code(c).is_token_invalid());
        }
        assert!(!ErrCode::InvalidCode.is_token_invalid());
        assert!(WechatError::api(-1, "system error").is_retryable());
        assert!(!WechatError::api(40029, "invalid code").is_retryable());
        assert!(WechatError::Status(502).is_retryable());
        assert!(!WechatError::Status(404).is_retryable());
    }

    #[test]
    fn rid_is_extracted() {
        let e = WechatError::api(40029, "invalid code, rid: 6541a2b3-1c2d3e4f-5a6b7c8d");
        match e {
            WechatError::Api { rid, code, .. } => {
                assert_eq!(rid.as_deref(), Some("6541a2b3-1c2d3e4f-5a6b7c8d"));
                assert_eq!(code, ErrCode::InvalidCode);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(extract_rid("invalid code"), None);
    }
}
