//! Raw identity inputs handed to callables. The runtime never decides who is calling: it only
//! collects what arrived and through which channel. [`crate::identity::resolve_caller`] turns
//! these into a `Caller`, trusting platform claims only where `WEMINT_TRUST_PLATFORM_IDENTITY`
//! names the gateway they came through.

pub use crate::config::TrustedGateway;
use crate::secret::Secret;

/// Identity a platform gateway attached to the request, with the channel it came through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformClaims {
    /// The channel: only trusted when it is the configured gateway.
    pub gateway: TrustedGateway,
    /// The user's openid under `appid`.
    pub openid: String,
    /// The Mini Program's appid.
    pub appid: String,
    /// The user's unionid, when the platform gave one.
    pub unionid: Option<String>,
}

/// Everything identity-related that came with a callable request.
#[derive(Clone, Debug, Default)]
pub struct IdentityInputs {
    /// Claims injected by a platform gateway, if any (untrusted until checked).
    pub platform: Option<PlatformClaims>,
    /// A session token issued by `login`: `Authorization: Bearer …`, else the top-level `token`
    /// field of the request data.
    pub session_token: Option<Secret<String>>,
}

impl IdentityInputs {
    /// The session token as `resolve_caller` takes it.
    pub fn token(&self) -> Option<&str> {
        self.session_token.as_ref().map(|t| t.expose().as_str())
    }
}

/// Reads a bearer token from an `Authorization` header value.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Claims from a gateway: only when an openid came with them (appid may be missing, e.g. the
/// `invokecloudfunction` HTTP API injects only `appId`, which identifies nobody).
pub(crate) fn claims(
    gateway: TrustedGateway,
    openid: Option<String>,
    appid: Option<String>,
    unionid: Option<String>,
) -> Option<PlatformClaims> {
    Some(PlatformClaims {
        gateway,
        openid: openid?,
        appid: appid.unwrap_or_default(),
        unionid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc.def"), Some("abc.def"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn session_token_is_redacted_in_debug() {
        let ids = IdentityInputs {
            platform: None,
            session_token: Some(Secret::new("tok-123".to_owned())),
        };
        assert!(!format!("{ids:?}").contains("tok-123"));
        assert_eq!(ids.token(), Some("tok-123"));
    }

    #[test]
    fn claims_need_an_openid() {
        assert!(
            claims(
                TrustedGateway::CloudbaseEvent,
                None,
                Some("wx1".into()),
                None
            )
            .is_none()
        );
        let c = claims(TrustedGateway::CloudbaseRun, Some("o".into()), None, None).unwrap();
        assert_eq!((c.openid.as_str(), c.appid.as_str()), ("o", ""));
    }
}
