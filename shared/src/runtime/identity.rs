//! Raw identity inputs handed to callables. The runtime never decides who is calling: it only
//! collects what arrived and through which channel. The login/identity module turns these into a
//! `Caller`, trusting platform claims only where `WEMINT_TRUST_PLATFORM_IDENTITY` names the channel.

use std::fmt;
use std::str::FromStr;

use crate::config::Secret;

/// The gateway that injected a platform identity claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlatformChannel {
    /// `userInfo {appId, openId}` inside a CloudBase `callFunction` event.
    CloudbaseEvent,
    /// `X-WX-OPENID` / `X-WX-APPID` / `X-WX-UNIONID` headers (CloudBase Run, `callContainer`).
    CloudbaseRun,
}

impl PlatformChannel {
    /// The name used in `WEMINT_TRUST_PLATFORM_IDENTITY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudbaseEvent => "cloudbase-event",
            Self::CloudbaseRun => "cloudbase-run",
        }
    }
}

impl fmt::Display for PlatformChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown channel name.
#[derive(Debug, thiserror::Error)]
#[error("unknown platform identity channel (expected `cloudbase-event` or `cloudbase-run`)")]
pub struct UnknownChannel;

impl FromStr for PlatformChannel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cloudbase-event" => Ok(Self::CloudbaseEvent),
            "cloudbase-run" => Ok(Self::CloudbaseRun),
            _ => Err(UnknownChannel),
        }
    }
}

/// Identity fields a platform gateway claims to have injected. Untrusted until the identity
/// module checks `channel` against the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformClaims {
    /// Where the claim came from.
    pub channel: PlatformChannel,
    /// The user's openid in the Mini Program.
    pub openid: Option<String>,
    /// The Mini Program's appid.
    pub appid: Option<String>,
    /// The user's unionid, when the platform knows it.
    pub unionid: Option<String>,
}

/// Everything identity-related that came with a callable request.
#[derive(Clone, Debug, Default)]
pub struct IdentityInputs {
    /// Claims injected by a platform gateway, if any.
    pub platform: Option<PlatformClaims>,
    /// A session token issued by `login`: `Authorization: Bearer …`, else the top-level `token`
    /// field of the request data.
    pub session_token: Option<Secret<String>>,
}

/// Reads a bearer token from an `Authorization` header value.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        for c in [
            PlatformChannel::CloudbaseEvent,
            PlatformChannel::CloudbaseRun,
        ] {
            assert_eq!(c.as_str().parse::<PlatformChannel>().unwrap(), c);
        }
        assert!("cloudbase".parse::<PlatformChannel>().is_err());
    }

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
    }
}
