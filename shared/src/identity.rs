//! Who is calling: the [`Caller`] of every callable, resolved in one place.
//!
//! Trust order (docs/identity.md): platform-injected identity, only where
//! `WEMINT_TRUST_PLATFORM_IDENTITY` names the gateway it came through; otherwise a session
//! token issued by `login`. Identity fields inside request data are never read.
//!
//! Session tokens are `v1.<claims>.<mac>`: base64url JSON claims and an HMAC-SHA256 over
//! `v1.<claims>` with a key derived from `WEMINT_SESSION_SECRET`. They are short-lived and
//! carry what authorization needs without a lookup (openid, active tenant and role, plan).
//!
//! Stored `session_key`s are sealed with AES-256-GCM under `WEMINT_DATA_KEY`, bound to the
//! user's openid so a sealed value copied to another user's document does not open.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

pub mod people;
mod user;

pub use user::{
    SessionKeyError, StoredSessionKey, USERS, User, UserRole, is_stored_admin, session_key,
};

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigError, TrustedGateway};
use crate::runtime::{ApiError, CallRequest, PlatformClaims};

/// How the caller was identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallerSource {
    /// Injected by a trusted platform gateway.
    Platform,
    /// A session token from `login`.
    Session,
}

/// The caller's membership of its active tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantMembership {
    /// Tenant id.
    pub id: String,
    /// Role in the tenant: `owner`, `admin` or `member`.
    pub role: TenantRole,
}

/// A member's role in a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantRole {
    /// Uses the tenant's plan.
    Member,
    /// Also manages members.
    Admin,
    /// Created the tenant; cannot be removed.
    Owner,
}

/// Who is calling a callable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The user's openid.
    pub openid: String,
    /// The Mini Program's appid.
    pub appid: String,
    /// The user's unionid, when known.
    pub unionid: Option<String>,
    /// The active tenant, from the session.
    pub tenant: Option<TenantMembership>,
    /// The user's plan, from the session (informational: access checks read the store).
    pub plan: Option<String>,
    /// Project administrator (review queue, refunds), from the session.
    pub admin: bool,
    /// How the caller was identified.
    pub source: CallerSource,
}

impl Caller {
    /// `FORBIDDEN` unless the caller is a project administrator per its session. The session
    /// may be older than a demotion: admin-only actions check [`is_stored_admin`] instead.
    ///
    /// # Errors
    /// `FORBIDDEN`.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("administrators only"))
        }
    }
}

/// Claims carried by a session token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// openid.
    pub sub: String,
    /// appid.
    pub app: String,
    /// unionid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Active tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ten: Option<TenantMembership>,
    /// Plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Project administrator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adm: bool,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
}

/// Why a caller could not be identified. Maps to `UNAUTHENTICATED` (or a config error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No trusted platform identity and no session token.
    #[error("sign in first: no session token")]
    Missing,
    /// The token is not one we issued, or was altered.
    #[error("session token is invalid")]
    InvalidToken,
    /// The token's lifetime is over.
    #[error("session token has expired")]
    Expired,
    /// `WEMINT_SESSION_SECRET` is too short to sign with.
    #[error("WEMINT_SESSION_SECRET must be at least 32 bytes")]
    WeakSecret,
    /// `WEMINT_DATA_KEY` is not 32 bytes of base64.
    #[error("WEMINT_DATA_KEY must be 32 bytes, base64-encoded")]
    BadDataKey,
    /// A sealed value did not open (wrong key, wrong owner, or altered).
    #[error("sealed value could not be opened")]
    Unseal,
}

impl SessionClaims {
    /// Claims for `openid` under `appid`, with nothing else; `iat`/`exp` are set on issue.
    pub fn new(openid: impl Into<String>, appid: impl Into<String>) -> Self {
        Self {
            sub: openid.into(),
            app: appid.into(),
            uid: None,
            ten: None,
            plan: None,
            adm: false,
            iat: 0,
            exp: 0,
        }
    }
}

const TOKEN_VERSION: &str = "v1";

/// Issues and checks session tokens.
pub struct SessionSigner {
    key: hmac::Key,
    ttl_secs: i64,
}

impl fmt::Debug for SessionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSigner")
            .field("key", &"[redacted]")
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl SessionSigner {
    /// Default session lifetime: two hours, like WeChat's own login state guidance.
    pub const DEFAULT_TTL_SECS: i64 = 2 * 3600;

    /// A signer keyed by `secret` (at least 32 bytes).
    pub fn new(secret: &[u8], ttl_secs: i64) -> Result<Self, IdentityError> {
        if secret.len() < 32 {
            return Err(IdentityError::WeakSecret);
        }
        // Domain-separate the token key so the same secret never signs anything else.
        let derive = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&derive, b"wemint session token v1");
        Ok(SessionSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()),
            ttl_secs,
        })
    }

    /// How long issued tokens live.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A token for `claims`; `iat`/`exp` are set from `now`.
    pub fn issue(&self, mut claims: SessionClaims, now: i64) -> String {
        claims.iat = now;
        claims.exp = now + self.ttl_secs;
        let body = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!("{TOKEN_VERSION}.{}", URL_SAFE_NO_PAD.encode(body));
        let mac = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    }

    /// The claims of a token we issued that has not expired at `now`. The MAC is checked
    /// before the claims are parsed.
    pub fn verify(&self, token: &str, now: i64) -> Result<SessionClaims, IdentityError> {
        let (signed, mac) = token.rsplit_once('.').ok_or(IdentityError::InvalidToken)?;
        let (version, body) = signed.split_once('.').ok_or(IdentityError::InvalidToken)?;
        if version != TOKEN_VERSION {
            return Err(IdentityError::InvalidToken);
        }
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| IdentityError::InvalidToken)?;
        hmac::verify(&self.key, signed.as_bytes(), &mac)
            .map_err(|_| IdentityError::InvalidToken)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| IdentityError::InvalidToken)?;
        let claims: SessionClaims =
            serde_json::from_slice(&body).map_err(|_| IdentityError::InvalidToken)?;
        if now >= claims.exp {
            return Err(IdentityError::Expired);
        }
        Ok(claims)
    }
}

/// Resolves the caller from what the runtime extracted from the request.
///
/// Platform claims count only when they came through the trusted gateway. A session token
/// then adds the active tenant and roles if it belongs to the same user; a token for another
/// user next to trusted platform identity is refused. Without trusted platform identity the
/// token alone identifies the caller.
pub fn resolve_caller(
    trusted: Option<TrustedGateway>,
    platform: Option<&PlatformClaims>,
    token: Option<&str>,
    signer: &SessionSigner,
    now: i64,
) -> Result<Caller, IdentityError> {
    let platform = platform.filter(|p| Some(p.gateway) == trusted && !p.openid.is_empty());
    let session = token
        .filter(|t| !t.is_empty())
        .map(|t| signer.verify(t, now))
        .transpose()?;
    match (platform, session) {
        (Some(p), session) => {
            let session = match session {
                Some(s) if s.sub != p.openid || s.app != p.appid => {
                    return Err(IdentityError::InvalidToken);
                }
                other => other,
            };
            Ok(Caller {
                openid: p.openid.clone(),
                appid: p.appid.clone(),
                unionid: p
                    .unionid
                    .clone()
                    .or_else(|| session.as_ref().and_then(|s| s.uid.clone())),
                tenant: session.as_ref().and_then(|s| s.ten.clone()),
                plan: session.as_ref().and_then(|s| s.plan.clone()),
                admin: session.as_ref().is_some_and(|s| s.adm),
                source: CallerSource::Platform,
            })
        }
        (None, Some(s)) => Ok(Caller {
            openid: s.sub,
            appid: s.app,
            unionid: s.uid,
            tenant: s.ten,
            plan: s.plan,
            admin: s.adm,
            source: CallerSource::Session,
        }),
        (None, None) => Err(IdentityError::Missing),
    }
}

impl From<IdentityError> for ApiError {
    /// A caller problem is `UNAUTHENTICATED` (call `login` again); a key or setting problem is
    /// ours, so `INTERNAL` with the cause kept for the logs.
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::Missing | IdentityError::InvalidToken | IdentityError::Expired => {
                ApiError::unauthenticated(err.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

/// Everything needed to identify callers, built once in a function's init and shared by its
/// handlers: the trusted gateway, the token signer and the clock.
///
/// ```ignore
/// let caller = state.auth.caller(&req)?; // or wemint::identity::caller(&req, &state.auth)?
/// ```
#[derive(Clone)]
pub struct Authenticator {
    trusted: Option<TrustedGateway>,
    signer: Arc<SessionSigner>,
    clock: SharedClock,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("trusted", &self.trusted)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// From the environment: `WEMINT_SESSION_SECRET` and `WEMINT_TRUST_PLATFORM_IDENTITY`, tokens
    /// living [`SessionSigner::DEFAULT_TTL_SECS`], on the deployment's `clock`.
    ///
    /// # Errors
    /// The variable that is missing or malformed.
    pub fn from_config(config: &Config, clock: SharedClock) -> Result<Self, ConfigError> {
        let secret = config.session_secret()?;
        let signer =
            SessionSigner::new(secret.expose(), SessionSigner::DEFAULT_TTL_SECS).map_err(|e| {
                ConfigError::Invalid {
                    var: "WEMINT_SESSION_SECRET".into(),
                    reason: e.to_string(),
                }
            })?;
        let trusted = config.trust_platform_identity()?;
        if trusted == Some(TrustedGateway::CloudbaseRun) {
            // The headers are only as trustworthy as the gateway in front of the listener.
            tracing::warn!(
                setting = "WEMINT_TRUST_PLATFORM_IDENTITY=cloudbase-run",
                "X-WX-OPENID / X-WX-APPID / X-WX-UNIONID headers are trusted as the caller's \
                 identity: the gateway in front of this listener must strip these headers \
                 from client requests (CloudBase Run does); never expose the port directly"
            );
        }
        Ok(Self::new(trusted, signer).with_clock(clock))
    }

    /// An authenticator trusting `trusted` (if any) and verifying tokens with `signer`.
    pub fn new(trusted: Option<TrustedGateway>, signer: SessionSigner) -> Self {
        Self {
            trusted,
            signer: Arc::new(signer),
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The gateway whose injected identity is trusted, if any.
    pub fn trusted(&self) -> Option<TrustedGateway> {
        self.trusted
    }

    /// The token signer (login issues tokens with it).
    pub fn signer(&self) -> &SessionSigner {
        &self.signer
    }

    /// Now, Unix seconds, on this authenticator's clock.
    pub fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    /// The caller of `req`, as [`resolve_caller`] decides it.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when nobody trusted is calling (no trusted platform identity and no
    /// valid token: missing, expired, altered or foreign).
    pub fn caller(&self, req: &CallRequest) -> Result<Caller, ApiError> {
        resolve_caller(
            self.trusted,
            req.identity.platform.as_ref(),
            req.identity.token(),
            &self.signer,
            self.now(),
        )
        .map_err(ApiError::from)
    }

    /// Issues a session token for `claims` now; returns the token and its expiry.
    pub fn issue(&self, claims: SessionClaims) -> (String, i64) {
        let now = self.now();
        let token = self.signer.issue(claims, now);
        (token, now + self.signer.ttl_secs())
    }
}

/// The caller of `req`: the one call every callable makes before doing anything for someone.
///
/// # Errors
/// `UNAUTHENTICATED`, see [`Authenticator::caller`].
pub fn caller(req: &CallRequest, auth: &Authenticator) -> Result<Caller, ApiError> {
    auth.caller(req)
}

/// Seals small secrets (session_keys) for storage with AES-256-GCM.
pub struct DataKey {
    key: LessSafeKey,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

const SEAL_PREFIX: &str = "gcm1:";

impl DataKey {
    /// The key from its base64 form (`WEMINT_DATA_KEY`).
    pub fn from_base64(value: &str) -> Result<Self, IdentityError> {
        let bytes = STANDARD
            .decode(value.trim())
            .map_err(|_| IdentityError::BadDataKey)?;
        Self::from_bytes(&bytes)
    }

    /// The key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let key =
            UnboundKey::new(&aead::AES_256_GCM, bytes).map_err(|_| IdentityError::BadDataKey)?;
        Ok(DataKey {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `plaintext` for the document of `owner` with a fresh random nonce.
    pub fn seal(&self, owner: &str, plaintext: &[u8]) -> Result<String, IdentityError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        rand::fill(&mut nonce).map_err(|_| IdentityError::Unseal)?;
        self.seal_with_nonce(owner, plaintext, nonce)
    }

    /// [`DataKey::seal`] with a given nonce, for exact tests. Never reuse a nonce.
    pub fn seal_with_nonce(
        &self,
        owner: &str,
        plaintext: &[u8],
        nonce: [u8; aead::NONCE_LEN],
    ) -> Result<String, IdentityError> {
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| IdentityError::Unseal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        Ok(format!("{SEAL_PREFIX}{}", STANDARD.encode(out)))
    }

    /// Opens a value sealed for `owner`.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<Vec<u8>, IdentityError> {
        let encoded = sealed
            .strip_prefix(SEAL_PREFIX)
            .ok_or(IdentityError::Unseal)?;
        let mut bytes = STANDARD
            .decode(encoded)
            .map_err(|_| IdentityError::Unseal)?;
        if bytes.len() < aead::NONCE_LEN {
            return Err(IdentityError::Unseal);
        }
        let mut ciphertext = bytes.split_off(aead::NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| IdentityError::Unseal)?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut ciphertext)
            .map_err(|_| IdentityError::Unseal)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn signer() -> SessionSigner {
        SessionSigner::new(&[7u8; 32], 3600).unwrap()
    }

    fn claims(openid: &str) -> SessionClaims {
        SessionClaims {
            sub: openid.into(),
            app: "wxapp".into(),
            uid: None,
            ten: Some(TenantMembership {
                id: "t1".into(),
                role: TenantRole::Admin,
            }),
            plan: Some("pro".into()),
            adm: false,
            iat: 0,
            exp: 0,
        }
    }

    fn platform(gateway: TrustedGateway, openid: &str) -> PlatformClaims {
        PlatformClaims {
            gateway,
            openid: openid.into(),
            appid: "wxapp".into(),
            unionid: None,
        }
    }

    #[test]
    fn token_round_trip_and_expiry() {
        let s = signer();
        let token = s.issue(claims("o-1"), NOW);
        let back = s.verify(&token, NOW + 10).unwrap();
        assert_eq!(back.sub, "o-1");
        assert_eq!(back.exp, NOW + 3600);
        assert_eq!(s.verify(&token, NOW + 3600), Err(IdentityError::Expired));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let s = signer();
        let token = s.issue(claims("o-1"), NOW);
        let (signed, mac) = token.rsplit_once('.').unwrap();
        let (_, body) = signed.split_once('.').unwrap();
        // Swap in claims for another user, keep the old MAC.
        let forged_body = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap())
                .unwrap()
                .replace("o-1", "o-2"),
        );
        let forged = format!("v1.{forged_body}.{mac}");
        assert_eq!(s.verify(&forged, NOW), Err(IdentityError::InvalidToken));
        let other = SessionSigner::new(&[8u8; 32], 3600).unwrap();
        assert_eq!(other.verify(&token, NOW), Err(IdentityError::InvalidToken));
        for junk in ["", "v1", "v1..", "v2.e30.AAAA", "not a token"] {
            assert_eq!(
                s.verify(junk, NOW),
                Err(IdentityError::InvalidToken),
                "{junk}"
            );
        }
        assert!(SessionSigner::new(b"short", 60).is_err());
    }

    #[test]
    fn platform_identity_counts_only_from_the_trusted_gateway() {
        let s = signer();
        let injected = platform(TrustedGateway::CloudbaseEvent, "o-platform");
        let caller = resolve_caller(
            Some(TrustedGateway::CloudbaseEvent),
            Some(&injected),
            None,
            &s,
            NOW,
        )
        .unwrap();
        assert_eq!(caller.openid, "o-platform");
        assert_eq!(caller.source, CallerSource::Platform);
        // Not trusted (unset, or another gateway): ignored.
        assert_eq!(
            resolve_caller(None, Some(&injected), None, &s, NOW),
            Err(IdentityError::Missing)
        );
        let run = platform(TrustedGateway::CloudbaseRun, "o-header");
        assert_eq!(
            resolve_caller(
                Some(TrustedGateway::CloudbaseEvent),
                Some(&run),
                None,
                &s,
                NOW
            ),
            Err(IdentityError::Missing)
        );
    }

    #[test]
    fn session_adds_tenant_only_for_the_same_user() {
        let s = signer();
        let token = s.issue(claims("o-1"), NOW);
        let same = platform(TrustedGateway::CloudbaseRun, "o-1");
        let caller = resolve_caller(
            Some(TrustedGateway::CloudbaseRun),
            Some(&same),
            Some(&token),
            &s,
            NOW,
        )
        .unwrap();
        assert_eq!(caller.tenant.unwrap().id, "t1");
        let other = platform(TrustedGateway::CloudbaseRun, "o-2");
        assert_eq!(
            resolve_caller(
                Some(TrustedGateway::CloudbaseRun),
                Some(&other),
                Some(&token),
                &s,
                NOW
            ),
            Err(IdentityError::InvalidToken)
        );
        let by_token = resolve_caller(None, None, Some(&token), &s, NOW).unwrap();
        assert_eq!(
            (by_token.openid.as_str(), by_token.source),
            ("o-1", CallerSource::Session)
        );
    }

    fn request(platform: Option<PlatformClaims>, token: Option<&str>) -> CallRequest {
        CallRequest {
            action: "me".into(),
            // Identity fields in the data are never read.
            data: serde_json::json!({"openid": "o-spoof", "userInfo": {"openId": "o-spoof"}}),
            identity: crate::runtime::IdentityInputs {
                platform,
                session_token: token.map(|t| crate::secret::Secret::new(t.to_owned())),
            },
            invocation: crate::runtime::Invocation {
                request_id: "r1".into(),
                mode: crate::runtime::Mode::Http,
                received_at: std::time::Instant::now(),
                deadline: None,
                memory_limit_mb: None,
            },
        }
    }

    #[test]
    fn authenticator_maps_failures_to_unauthenticated() {
        let clock = Arc::new(crate::clock::FixedClock::new(NOW));
        let auth = Authenticator::new(None, signer()).with_clock(clock.clone());
        let (token, expires_at) = auth.issue(claims("o-1"));
        assert_eq!(expires_at, NOW + 3600);
        let caller = caller(&request(None, Some(&token)), &auth).unwrap();
        assert_eq!(caller.openid, "o-1");
        assert_eq!(caller.plan.as_deref(), Some("pro"));
        assert_eq!(
            caller.require_admin().unwrap_err().code(),
            crate::runtime::codes::FORBIDDEN
        );

        let err = auth.caller(&request(None, None)).unwrap_err();
        assert_eq!(err.code(), crate::runtime::codes::UNAUTHENTICATED);
        // Platform claims through an untrusted channel are ignored, data fields too.
        let injected = platform(TrustedGateway::CloudbaseEvent, "o-platform");
        let err = auth.caller(&request(Some(injected), None)).unwrap_err();
        assert_eq!(err.code(), crate::runtime::codes::UNAUTHENTICATED);
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            auth.caller(&request(None, Some(&tampered)))
                .unwrap_err()
                .code(),
            crate::runtime::codes::UNAUTHENTICATED
        );
        clock.advance(3600);
        let err = auth.caller(&request(None, Some(&token))).unwrap_err();
        assert_eq!(err.code(), crate::runtime::codes::UNAUTHENTICATED);
        assert!(err.message().contains("expired"), "{}", err.message());
        // Key problems are ours, not the caller's.
        assert_eq!(
            ApiError::from(IdentityError::Unseal).code(),
            crate::runtime::codes::INTERNAL
        );
    }

    #[test]
    fn authenticator_reads_its_settings() {
        let config = Config::from_vars([
            ("WEMINT_SESSION_SECRET", "0123456789abcdef0123456789abcdef"),
            ("WEMINT_TRUST_PLATFORM_IDENTITY", "cloudbase-run"),
        ]);
        let auth = Authenticator::from_config(&config, Arc::new(SystemClock)).unwrap();
        assert_eq!(auth.trusted(), Some(TrustedGateway::CloudbaseRun));
        assert!(!format!("{auth:?}").contains("0123456789abcdef"));
        let injected = platform(TrustedGateway::CloudbaseRun, "o-run");
        assert_eq!(
            auth.caller(&request(Some(injected), None)).unwrap().openid,
            "o-run"
        );
        let later = Authenticator::from_config(&config, crate::clock::from_offset(86_400)).unwrap();
        let diff = later.now() - auth.now();
        assert!((86_399..=86_401).contains(&diff), "{diff}");
        let short = Config::from_vars([("WEMINT_SESSION_SECRET", "short")]);
        assert!(Authenticator::from_config(&short, Arc::new(SystemClock)).is_err());
    }

    #[test]
    fn sealed_values_open_only_for_their_owner_and_key() {
        let key = DataKey::from_bytes(&[9u8; 32]).unwrap();
        let sealed = key.seal("o-1", b"session-key-bytes").unwrap();
        assert!(!sealed.contains("session-key-bytes"));
        assert_eq!(key.open("o-1", &sealed).unwrap(), b"session-key-bytes");
        assert_eq!(key.open("o-2", &sealed), Err(IdentityError::Unseal));
        let other = DataKey::from_bytes(&[1u8; 32]).unwrap();
        assert_eq!(other.open("o-1", &sealed), Err(IdentityError::Unseal));
        assert_ne!(
            sealed,
            key.seal("o-1", b"session-key-bytes").unwrap(),
            "fresh nonce each time"
        );
        assert!(DataKey::from_base64("c2hvcnQ=").is_err());
        assert!(format!("{key:?}").contains("redacted"));
    }
}
