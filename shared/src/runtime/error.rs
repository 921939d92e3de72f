//! The public error every entry point answers with: a stable code, a message safe to show the
//! caller, an HTTP status hint and an optional retry delay.
//!
//! Functions map their own `thiserror` enums into [`ApiError`] (`impl From<MyError> for ApiError`)
//! and may add codes of their own with [`ApiError::new`]. The list of codes is documented in
//! `docs/errors.md`; codes never change once published.

use std::fmt;

use http::StatusCode;
use serde_json::{Value, json};

/// Stable error codes the runtime itself produces or that every function shares.
pub mod codes {
    /// The request data is malformed or fails validation.
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    /// The `action` is missing or names no operation of this function.
    pub const UNKNOWN_ACTION: &str = "UNKNOWN_ACTION";
    /// No valid identity (platform claim or session token) came with the request.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// The caller is known but may not do this.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// The addressed object (or HTTP path) does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The HTTP method is not accepted at this path.
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    /// The request body is larger than the platform limit (6 MB).
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    /// Too many requests; `retryAfterSecs` says when to try again.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The request conflicts with the current state (duplicate, already done, version mismatch).
    pub const CONFLICT: &str = "CONFLICT";
    /// Something failed on the server side; details are in the logs, never in the reply.
    pub const INTERNAL: &str = "INTERNAL";
    /// The invocation ran out of time before the handler finished.
    pub const TIMEOUT: &str = "TIMEOUT";
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error as the caller sees it, plus an optional internal cause that is only logged.
pub struct ApiError {
    code: &'static str,
    message: String,
    status: StatusCode,
    retry_after_secs: Option<u64>,
    source: Option<Source>,
}

impl ApiError {
    /// An error with a function-specific code (SCREAMING_SNAKE, e.g. `ORDER_NOT_FOUND`).
    ///
    /// The message is shown to the caller: never put secrets or internal details in it.
    pub fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        debug_assert!(
            !code.is_empty()
                && code
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "error codes are SCREAMING_SNAKE: {code}"
        );
        Self {
            code,
            message: message.into(),
            status,
            retry_after_secs: None,
            source: None,
        }
    }

    /// `BAD_REQUEST` (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(codes::BAD_REQUEST, StatusCode::BAD_REQUEST, message)
    }

    /// `UNKNOWN_ACTION` (404).
    pub fn unknown_action(message: impl Into<String>) -> Self {
        Self::new(codes::UNKNOWN_ACTION, StatusCode::NOT_FOUND, message)
    }

    /// `UNAUTHENTICATED` (401).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(codes::UNAUTHENTICATED, StatusCode::UNAUTHORIZED, message)
    }

    /// `FORBIDDEN` (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(codes::FORBIDDEN, StatusCode::FORBIDDEN, message)
    }

    /// `NOT_FOUND` (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(codes::NOT_FOUND, StatusCode::NOT_FOUND, message)
    }

    /// `RATE_LIMITED` (429) with the number of seconds after which a retry may succeed.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(codes::RATE_LIMITED, StatusCode::TOO_MANY_REQUESTS, message)
            .with_retry_after(retry_after_secs)
    }

    /// `CONFLICT` (409).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(codes::CONFLICT, StatusCode::CONFLICT, message)
    }

    /// `INTERNAL` (500): the cause is logged, the caller only sees "internal error".
    pub fn internal(cause: impl Into<Source>) -> Self {
        Self::new(
            codes::INTERNAL,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        )
        .with_source(cause)
    }

    /// `TIMEOUT` (504).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(codes::TIMEOUT, StatusCode::GATEWAY_TIMEOUT, message)
    }

    /// Attaches an internal cause: logged with the error, never sent to the caller.
    pub fn with_source(mut self, cause: impl Into<Source>) -> Self {
        self.source = Some(cause.into());
        self
    }

    /// Sets the retry hint (sent as `retryAfterSecs` and, over HTTP, as a `Retry-After` header).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status to answer with when the transport is HTTP.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Seconds after which a retry may succeed, if known.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    /// The reply envelope: `{"ok":false,"error":{"code":…,"message":…}}`.
    pub fn to_envelope(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(secs) = self.retry_after_secs {
            error["retryAfterSecs"] = json!(secs);
        }
        json!({ "ok": false, "error": error })
    }

    /// The internal cause chain as one line, for logs.
    pub(crate) fn cause_chain(&self) -> Option<String> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as _);
        let mut out: Option<String> = None;
        while let Some(e) = cause {
            let s = out.get_or_insert_with(String::new);
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&e.to_string());
            cause = e.source();
        }
        out
    }
}

/// The success envelope: `{"ok":true,"data":…}`.
pub fn ok_envelope(data: Value) -> Value {
    json!({ "ok": true, "data": data })
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("status", &self.status.as_u16())
            .field("retry_after_secs", &self.retry_after_secs)
            .field("cause", &self.cause_chain())
            .finish()
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_code_and_message_only_unless_retry() {
        let e = ApiError::not_found("order 42 not found");
        assert_eq!(
            e.to_envelope(),
            json!({"ok":false,"error":{"code":"NOT_FOUND","message":"order 42 not found"}})
        );
        let e = ApiError::rate_limited("slow down", 30);
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.to_envelope()["error"]["retryAfterSecs"], json!(30));
    }

    #[test]
    fn internal_hides_the_cause_from_the_caller_but_keeps_it_for_logs() {
        let io = std::io::Error::other("disk on fire at /secret/path");
        let e = ApiError::internal(io);
        assert_eq!(e.message(), "internal error");
        assert!(!e.to_envelope().to_string().contains("disk"));
        assert_eq!(
            e.cause_chain().as_deref(),
            Some("disk on fire at /secret/path")
        );
    }

    #[test]
    fn custom_codes_keep_their_status() {
        let e = ApiError::new("ORDER_NOT_FOUND", StatusCode::NOT_FOUND, "no such order");
        assert_eq!(e.code(), "ORDER_NOT_FOUND");
        assert_eq!(e.to_string(), "ORDER_NOT_FOUND: no such order");
    }
}
