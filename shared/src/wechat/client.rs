//! The HTTP core every WeChat API call goes through: base URL, the shared outbound client,
//! bounded retries on busy / 429 / 5xx, errcode decoding, and redaction of secrets.
//!
//! Secrets travel in URLs (`secret=` for code2Session, `access_token=` for everything else),
//! so transport errors are stripped of their URL before they are turned into text, and no
//! URL is ever logged.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::outbound::{self, Retry};
use crate::wechat::error::WechatError;

/// The real API host; `WECHAT_API_BASE` overrides it (emulator, tests).
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

/// Unix time in milliseconds; injectable so token expiry and leases are exact in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// Mini Program credentials and where to reach WeChat.
#[derive(Clone)]
pub struct WechatConfig {
    /// `WECHAT_APPID`.
    pub appid: String,
    secret: String,
    /// `WECHAT_API_BASE` without a trailing `/`.
    pub api_base: String,
}

impl fmt::Debug for WechatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatConfig")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .field("api_base", &self.api_base)
            .finish()
    }
}

impl WechatConfig {
    /// Builds a configuration; `api_base` `None` or empty means [`DEFAULT_API_BASE`].
    pub fn new(
        appid: impl Into<String>,
        secret: impl Into<String>,
        api_base: Option<&str>,
    ) -> Self {
        let base = api_base
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .unwrap_or(DEFAULT_API_BASE)
            .trim_end_matches('/')
            .to_owned();
        WechatConfig {
            appid: appid.into(),
            secret: secret.into(),
            api_base: base,
        }
    }

    /// Reads `WECHAT_APPID`, `WECHAT_APPSECRET` and `WECHAT_API_BASE`.
    ///
    /// # Errors
    /// [`WechatError::InvalidRequest`] naming the missing variable.
    pub fn from_env() -> Result<Self, WechatError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| WechatError::InvalidRequest(format!("{name} is not set")))
        };
        Ok(Self::new(
            var("WECHAT_APPID")?,
            var("WECHAT_APPSECRET")?,
            std::env::var("WECHAT_API_BASE").ok().as_deref(),
        ))
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

/// An access token. No `Display`, and `Debug` is redacted: it must never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub(crate) fn new(token: String) -> Self {
        AccessToken(token)
    }

    /// The token text, for building a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// A raw (non-JSON) reply, e.g. a Mini Program code image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// The reply's `Content-Type`.
    pub content_type: String,
    /// The body bytes.
    pub bytes: Vec<u8>,
}

/// Whether a request may be repeated after a timeout (it may have been processed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotent {
    Yes,
    No,
}

/// The HTTP side: base URL, shared client, retry policy.
#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) config: WechatConfig,
    client: reqwest::Client,
    retry: Retry,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("config", &self.config)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What a request body is.
enum Body<'a> {
    None,
    Json(&'a Value),
}

fn transport(err: reqwest::Error) -> WechatError {
    // The URL carries the secret or the access token: drop it before formatting.
    let err = err.without_url();
    if err.is_timeout() {
        WechatError::Timeout(err.to_string())
    } else {
        WechatError::Transport(err.to_string())
    }
}

/// The typed error of a reply with a non-zero `errcode`.
fn errcode_error(value: &Value) -> Option<WechatError> {
    let code = value.get("errcode").and_then(Value::as_i64)?;
    if code == 0 {
        return None;
    }
    let errmsg = value
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(WechatError::api(code, errmsg))
}

/// Turns a JSON reply into `T`, or the typed errcode error when `errcode` is non-zero.
/// Successful replies may omit `errcode` entirely.
pub(crate) fn decode<T: DeserializeOwned>(value: Value) -> Result<T, WechatError> {
    if let Some(err) = errcode_error(&value) {
        return Err(err);
    }
    serde_json::from_value(value).map_err(|e| WechatError::Decode(e.to_string()))
}

impl Http {
    pub(crate) fn new(config: WechatConfig, retry: Retry) -> Result<Self, WechatError> {
        let client = outbound::client().map_err(|e| WechatError::Transport(e.to_string()))?;
        Ok(Http {
            config,
            client,
            retry,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base)
    }

    /// One exchange, retried while busy / 429 / 5xx / connect failure (and timeouts when
    /// idempotent). Returns the content type and body of a 2xx reply.
    async fn exchange(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body<'_>,
        idempotent: Idempotent,
    ) -> Result<(String, Vec<u8>), WechatError> {
        let url = self.url(path);
        let attempt = |_n: u32| {
            let mut req = self.client.request(method.clone(), &url).query(query);
            if let Body::Json(v) = &body {
                req = req.json(v);
            }
            async move {
                let resp = req.send().await.map_err(transport)?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(WechatError::Status(status.as_u16()));
                }
                let content_type = resp
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = resp.bytes().await.map_err(transport)?;
                // `-1 system busy` arrives as HTTP 200: surface it here so it is retried.
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                    && let Some(err) = errcode_error(&v).filter(WechatError::is_retryable)
                {
                    return Err(err);
                }
                Ok((content_type, bytes.to_vec()))
            }
        };
        self.retry
            .run(attempt, |e: &WechatError| match e {
                WechatError::Timeout(_) => idempotent == Idempotent::Yes,
                other => other.is_retryable(),
            })
            .await
    }

    fn json_body(bytes: &[u8]) -> Result<Value, WechatError> {
        serde_json::from_slice(bytes).map_err(|e| WechatError::Decode(e.to_string()))
    }

    /// `GET path?query` returning JSON.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, WechatError> {
        let (_, bytes) = self
            .exchange(http::Method::GET, path, query, Body::None, Idempotent::Yes)
            .await?;
        decode(Self::json_body(&bytes)?)
    }

    /// `POST path?query` with a JSON body, returning JSON.
    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &Value,
        idempotent: Idempotent,
    ) -> Result<T, WechatError> {
        let (_, bytes) = self
            .exchange(
                http::Method::POST,
                path,
                query,
                Body::Json(body),
                idempotent,
            )
            .await?;
        decode(Self::json_body(&bytes)?)
    }

    /// `POST` whose success reply is binary and whose error reply is JSON: the content type
    /// decides (a JSON-looking body under an image type is still treated as an error).
    pub(crate) async fn post_binary(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<Binary, WechatError> {
        let (content_type, bytes) = self
            .exchange(
                http::Method::POST,
                path,
                query,
                Body::Json(body),
                Idempotent::Yes,
            )
            .await?;
        let looks_json = content_type.contains("json")
            || content_type.starts_with("text/")
            || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if looks_json {
            let value = Self::json_body(&bytes)?;
            decode::<Value>(value)?;
            return Err(WechatError::Decode(
                "expected an image, got a JSON reply without errcode".into(),
            ));
        }
        if bytes.is_empty() {
            return Err(WechatError::Decode("empty image reply".into()));
        }
        Ok(Binary {
            content_type,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_success_without_errcode_and_typed_errors() {
        let v: Value = decode(json!({"openid":"o"})).unwrap();
        assert_eq!(v["openid"], "o");
        let v: Value = decode(json!({"errcode":0,"errmsg":"ok","x":1})).unwrap();
        assert_eq!(v["x"], 1);
        let e = decode::<Value>(json!({"errcode":40029,"errmsg":"invalid code"})).unwrap_err();
        assert_eq!(e.errcode(), Some(crate::wechat::ErrCode::InvalidCode));
    }

    #[test]
    fn secrets_are_redacted() {
        let c = WechatConfig::new("wxapp", "very-secret-value", Some("http://127.0.0.1:1/"));
        assert_eq!(c.api_base, "http://127.0.0.1:1");
        assert!(!format!("{c:?}").contains("very-secret-value"));
        let t = AccessToken::new("ACCESS-TOKEN-TEXT".into());
        assert!(!format!("{t:?}").contains("ACCESS-TOKEN-TEXT"));
        assert_eq!(WechatConfig::new("a", "b", None).api_base, DEFAULT_API_BASE);
    }
}
