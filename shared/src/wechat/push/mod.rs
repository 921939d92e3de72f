//! Message push (消息推送): URL verification, plaintext and safe mode (AES-256-CBC), JSON and
//! XML bodies, typed events, passive replies, and the sealing side the local emulator uses
//! to deliver pushes exactly as WeChat does.
//!
//! Safe mode, as WeChat defines it:
//! - `AESKey = base64_decode(EncodingAESKey + "=")` (32 bytes), IV = `AESKey[0..16]`;
//! - AES-256-CBC over `random(16) ‖ msg_len(u32 big-endian) ‖ msg ‖ appid`, PKCS#7-padded to
//!   a **32-byte** block (so the cipher runs unpadded and the padding is ours);
//! - `msg_signature = sha1(sort([token, timestamp, nonce, Encrypt]).concat())`.
//!
//! The signature is checked on the ciphertext before anything is decrypted, and the appid
//! at the end of the plaintext must be ours.
//!
//! Bodies come from anyone who can reach the push URL, so reading them is bounded before any
//! tree is built ([`MAX_BODY_BYTES`], [`MAX_DEPTH`]): the `Encrypt` value is read from the raw
//! envelope as a stream, and the message itself is parsed only once its signature matched.

mod limits;
mod message;
pub mod receipts;
mod xml;

pub use limits::{MAX_BODY_BYTES, MAX_DEPTH, MAX_TIMESTAMP_SKEW_SECS};

pub use message::{MediaCheckResult, PushKind, PushMessage, Reply, SubscribeDecision};

use std::fmt;

use aws_lc_rs::cipher::{
    AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde_json::{Map, Value};

use crate::wechat::crypto::{sha1_hex, signature_matches};

/// Block size WeChat pads to (not AES's 16).
const PAD_BLOCK: usize = 32;

/// EncodingAESKey decoding: WeChat picks 43 random alphanumerics, so the last character's
/// unused bits are arbitrary and a strict decoder would reject valid keys.
const EAK_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Why a push was rejected. Nothing is acted on unless `open` succeeds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The EncodingAESKey is not 43 base64 characters decoding to 32 bytes.
    #[error("EncodingAESKey must be 43 characters decoding to 32 bytes")]
    InvalidAesKey,
    /// A required query parameter is missing.
    #[error("query parameter {0} missing")]
    MissingParam(&'static str),
    /// `signature` / `msg_signature` does not match.
    #[error("push signature mismatch")]
    BadSignature,
    /// The body is neither a JSON object nor an XML document we can read.
    #[error("push body unreadable: {0}")]
    Body(String),
    /// A safe-mode body without `Encrypt`.
    #[error("encrypted push has no Encrypt field")]
    MissingEncrypt,
    /// `Encrypt` is not base64 or not a whole number of AES blocks.
    #[error("Encrypt is not a valid ciphertext")]
    Ciphertext,
    /// The 32-byte PKCS#7 padding is invalid (wrong key).
    #[error("invalid padding after decryption")]
    Padding,
    /// The decrypted frame is too short for its declared length.
    #[error("decrypted frame length is inconsistent")]
    Frame,
    /// The trailing appid is not ours.
    #[error("push was encrypted for appid {found}, not ours")]
    AppidMismatch {
        /// The appid found in the frame.
        found: String,
    },
    /// The decrypted message is not a valid push message.
    #[error("push message invalid: {0}")]
    Message(String),
    /// A plaintext push reached an endpoint that has an EncodingAESKey: its `signature`
    /// covers only token, timestamp and nonce, so the body could be anything.
    #[error("plaintext push refused: safe mode (encrypt_type=aes) is required")]
    PlaintextRefused,
    /// `timestamp` is not a number or is more than [`MAX_TIMESTAMP_SKEW_SECS`] from now
    /// (a replayed URL).
    #[error("push timestamp is missing, malformed or outside the allowed window")]
    Timestamp,
}

/// Wire format of a push body (configured per Mini Program; Official Accounts use XML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFormat {
    /// `{"ToUserName":…}`
    Json,
    /// `<xml><ToUserName>…</xml>`
    Xml,
}

impl PushFormat {
    /// Detects the format from the first non-blank byte.
    ///
    /// # Errors
    /// [`PushError::Body`] for anything that starts with neither `{` nor `<`.
    pub fn detect(body: &[u8]) -> Result<Self, PushError> {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(PushFormat::Json),
            Some(b'<') => Ok(PushFormat::Xml),
            _ => Err(PushError::Body("neither JSON nor XML".into())),
        }
    }

    /// The HTTP `Content-Type` for a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            PushFormat::Json => "application/json",
            PushFormat::Xml => "text/xml",
        }
    }
}

/// `sha1(sort([token, timestamp, nonce]).concat())`: the `signature` of URL verification
/// and plaintext pushes.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sorted_sha1(&mut [token, timestamp, nonce])
}

/// `sha1(sort([token, timestamp, nonce, encrypt]).concat())`: the `msg_signature` of
/// safe-mode pushes and encrypted replies.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sorted_sha1(&mut [token, timestamp, nonce, encrypt])
}

fn sorted_sha1(parts: &mut [&str]) -> String {
    parts.sort_unstable();
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    sha1_hex(&bytes)
}

/// Query parameters WeChat adds to the push URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushQuery {
    /// `sha1(sort(token, timestamp, nonce))`.
    pub signature: Option<String>,
    /// Unix seconds as sent.
    pub timestamp: Option<String>,
    /// Random number as sent.
    pub nonce: Option<String>,
    /// URL verification challenge (GET only).
    pub echostr: Option<String>,
    /// The user's openid (Official Accounts).
    pub openid: Option<String>,
    /// `aes` in safe mode.
    pub encrypt_type: Option<String>,
    /// Safe-mode signature over the ciphertext.
    pub msg_signature: Option<String>,
}

impl PushQuery {
    /// Parses a raw query string (`a=b&c=d`, percent-encoded).
    pub fn parse(query: &str) -> Self {
        let mut q = PushQuery::default();
        for (k, v) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
            q.set(&k, v.into_owned());
        }
        q
    }

    /// Builds from decoded key/value pairs (e.g. an SCF event's `queryStringParameters`).
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut q = PushQuery::default();
        for (k, v) in pairs {
            q.set(k.as_ref(), v.into());
        }
        q
    }

    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "signature" => &mut self.signature,
            "timestamp" => &mut self.timestamp,
            "nonce" => &mut self.nonce,
            "echostr" => &mut self.echostr,
            "openid" => &mut self.openid,
            "encrypt_type" => &mut self.encrypt_type,
            "msg_signature" => &mut self.msg_signature,
            _ => return,
        };
        *slot = Some(value);
    }

    /// True when the push claims safe mode (`encrypt_type=aes`).
    pub fn is_encrypted(&self) -> bool {
        self.encrypt_type.as_deref() == Some("aes")
    }

    /// Refuses a `timestamp` more than [`MAX_TIMESTAMP_SKEW_SECS`] away from `now` (Unix
    /// seconds): a push URL that was logged once cannot be replayed later.
    ///
    /// # Errors
    /// [`PushError::Timestamp`] when missing, not an integer, or out of the window.
    pub fn check_fresh(&self, now: i64) -> Result<(), PushError> {
        let ts: i64 = self
            .timestamp
            .as_deref()
            .and_then(|t| t.trim().parse().ok())
            .ok_or(PushError::Timestamp)?;
        if ts.abs_diff(now) > MAX_TIMESTAMP_SKEW_SECS.unsigned_abs() {
            return Err(PushError::Timestamp);
        }
        Ok(())
    }
}

fn param<'q>(value: &'q Option<String>, name: &'static str) -> Result<&'q str, PushError> {
    value.as_deref().ok_or(PushError::MissingParam(name))
}

/// A push that passed every check: signature, decryption, appid, parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedPush {
    /// The body format (the reply uses the same).
    pub format: PushFormat,
    /// Whether it arrived in safe mode (a non-`success` reply is then encrypted).
    pub encrypted: bool,
    /// The decrypted body.
    pub plaintext: Vec<u8>,
    /// The typed message.
    pub message: PushMessage,
}

/// A push as WeChat would deliver it: query parameters and body (used by the emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPush {
    /// Query parameters, in WeChat's order.
    pub query: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The body's `Content-Type`.
    pub content_type: &'static str,
}

impl SealedPush {
    /// The query string (`signature=…&timestamp=…`); values are URL-safe by construction.
    pub fn query_string(&self) -> String {
        self.query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// The push endpoint's secrets: Token, EncodingAESKey (current and optionally previous,
/// for rotation) and our appid.
#[derive(Clone)]
pub struct PushCrypto {
    token: String,
    keys: Vec<[u8; 32]>,
    appid: String,
}

impl fmt::Debug for PushCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushCrypto")
            .field("token", &"<redacted>")
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("appid", &self.appid)
            .finish()
    }
}

fn parse_eak(encoding_aes_key: &str) -> Result<[u8; 32], PushError> {
    let eak = encoding_aes_key.trim();
    if eak.len() != 43 {
        return Err(PushError::InvalidAesKey);
    }
    let bytes = EAK_ENGINE
        .decode(format!("{eak}="))
        .map_err(|_| PushError::InvalidAesKey)?;
    bytes.try_into().map_err(|_| PushError::InvalidAesKey)
}

impl PushCrypto {
    /// Builds from `WX_PUSH_TOKEN`, `WX_PUSH_AES_KEY` (43 chars) and the appid.
    ///
    /// # Errors
    /// [`PushError::InvalidAesKey`] for a malformed EncodingAESKey.
    pub fn new(token: &str, encoding_aes_key: &str, appid: &str) -> Result<Self, PushError> {
        Ok(PushCrypto {
            token: token.to_owned(),
            keys: vec![parse_eak(encoding_aes_key)?],
            appid: appid.to_owned(),
        })
    }

    /// Adds the previous EncodingAESKey, tried when the current one fails (key rotation).
    ///
    /// # Errors
    /// [`PushError::InvalidAesKey`] for a malformed key.
    pub fn with_previous_key(mut self, encoding_aes_key: &str) -> Result<Self, PushError> {
        self.keys.push(parse_eak(encoding_aes_key)?);
        Ok(self)
    }

    /// Our appid.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// `signature` for our token.
    pub fn signature(&self, timestamp: &str, nonce: &str) -> String {
        signature(&self.token, timestamp, nonce)
    }

    /// `msg_signature` for our token.
    pub fn msg_signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        msg_signature(&self.token, timestamp, nonce, encrypt)
    }

    /// Checks the plain `signature` over (token, timestamp, nonce).
    ///
    /// # Errors
    /// [`PushError::MissingParam`] or [`PushError::BadSignature`].
    pub fn verify_signature(&self, query: &PushQuery) -> Result<(), PushError> {
        let sig = param(&query.signature, "signature")?;
        let ts = param(&query.timestamp, "timestamp")?;
        let nonce = param(&query.nonce, "nonce")?;
        if signature_matches(&self.signature(ts, nonce), sig) {
            Ok(())
        } else {
            Err(PushError::BadSignature)
        }
    }

    /// URL verification (GET): returns the `echostr` to send back verbatim as a plain body.
    ///
    /// # Errors
    /// [`PushError::MissingParam`] or [`PushError::BadSignature`].
    pub fn verify_url<'q>(&self, query: &'q PushQuery) -> Result<&'q str, PushError> {
        self.verify_signature(query)?;
        param(&query.echostr, "echostr")
    }

    /// Decrypts a safe-mode `Encrypt` value and checks the trailing appid. The caller must
    /// have checked `msg_signature` first ([`PushCrypto::open`] does).
    ///
    /// # Errors
    /// [`PushError::Ciphertext`], [`PushError::Padding`], [`PushError::Frame`] or
    /// [`PushError::AppidMismatch`].
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, PushError> {
        let data = STANDARD
            .decode(encrypt.trim())
            .map_err(|_| PushError::Ciphertext)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(PushError::Ciphertext);
        }
        let mut first_err = None;
        for key in &self.keys {
            match self.decrypt_with(key, data.clone()) {
                Ok(msg) => return Ok(msg),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(PushError::Ciphertext))
    }

    fn decrypt_with(&self, key: &[u8; 32], mut data: Vec<u8>) -> Result<Vec<u8>, PushError> {
        let iv: [u8; 16] = key[..16].try_into().map_err(|_| PushError::InvalidAesKey)?;
        let cipher = UnboundCipherKey::new(&AES_256, key)
            .and_then(DecryptingKey::cbc)
            .map_err(|_| PushError::InvalidAesKey)?;
        let plain = cipher
            .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| PushError::Ciphertext)?;
        let pad = usize::from(*plain.last().ok_or(PushError::Padding)?);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(PushError::Padding);
        }
        let (frame, padding) = plain.split_at(plain.len() - pad);
        if padding.iter().any(|&b| usize::from(b) != pad) {
            return Err(PushError::Padding);
        }
        if frame.len() < 20 {
            return Err(PushError::Frame);
        }
        let len_bytes: [u8; 4] = frame[16..20].try_into().map_err(|_| PushError::Frame)?;
        let msg_len =
            usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| PushError::Frame)?;
        let rest = &frame[20..];
        if msg_len > rest.len() {
            return Err(PushError::Frame);
        }
        let (msg, appid) = rest.split_at(msg_len);
        if appid != self.appid.as_bytes() {
            return Err(PushError::AppidMismatch {
                found: String::from_utf8_lossy(appid).into_owned(),
            });
        }
        Ok(msg.to_vec())
    }

    /// Encrypts `msg` into a safe-mode `Encrypt` value with the given 16 random bytes
    /// (injectable so tests and the emulator are exact; use [`random_bytes`] otherwise).
    pub fn encrypt(&self, msg: &[u8], random: [u8; 16]) -> String {
        let key = &self.keys[0];
        let appid = self.appid.as_bytes();
        let mut frame = Vec::with_capacity(20 + msg.len() + appid.len() + PAD_BLOCK);
        frame.extend_from_slice(&random);
        // A push body above 4 GiB cannot exist; saturate rather than truncate silently.
        let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(msg);
        frame.extend_from_slice(appid);
        let pad = PAD_BLOCK - frame.len() % PAD_BLOCK;
        // pad is 1..=32, so it fits a byte.
        frame.resize(frame.len() + pad, pad as u8);
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key[..16]);
        // AES-256 with a 32-byte key and a 16-byte IV over whole blocks cannot fail.
        let cipher = UnboundCipherKey::new(&AES_256, key)
            .and_then(EncryptingKey::cbc)
            .expect("AES-256-CBC key from 32 bytes");
        cipher
            .less_safe_encrypt(&mut frame, EncryptionContext::Iv128(FixedLength::from(iv)))
            .expect("CBC over whole blocks");
        STANDARD.encode(frame)
    }

    /// Verifies and opens a POSTed push: plaintext mode checks `signature`; safe mode
    /// (`encrypt_type=aes`) checks `msg_signature` over `Encrypt`, decrypts, checks the appid.
    /// Then the message is parsed and typed.
    ///
    /// # Errors
    /// A [`PushError`]; nothing in the body is trusted unless this returns `Ok`.
    pub fn open(&self, query: &PushQuery, body: &[u8]) -> Result<OpenedPush, PushError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(PushError::Body(format!(
                "larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        let format = PushFormat::detect(body)?;
        let (plaintext, encrypted) = if query.is_encrypted() {
            let ts = param(&query.timestamp, "timestamp")?;
            let nonce = param(&query.nonce, "nonce")?;
            let sig = param(&query.msg_signature, "msg_signature")?;
            let encrypt = envelope_encrypt(body, format)?;
            if !signature_matches(&self.msg_signature(ts, nonce, &encrypt), sig) {
                return Err(PushError::BadSignature);
            }
            (self.decrypt(&encrypt)?, true)
        } else {
            self.verify_signature(query)?;
            (body.to_vec(), false)
        };
        // The inner body normally has the envelope's format; detect it anyway.
        let inner = PushFormat::detect(&plaintext)
            .map_err(|_| PushError::Message("decrypted body is neither JSON nor XML".into()))?;
        let message = PushMessage::parse(&plaintext, inner)?;
        Ok(OpenedPush {
            format,
            encrypted,
            plaintext,
            message,
        })
    }

    /// The HTTP body answering `opened` with `reply`: `success` as is; other replies in the
    /// push's format, encrypted (with `MsgSignature`, `TimeStamp`, `Nonce`) when the push was.
    pub fn reply_body(&self, opened: &OpenedPush, reply: &Reply, stamp: &Stamp) -> Vec<u8> {
        let plain = reply.render(opened.format);
        if opened.encrypted && reply.needs_encryption() {
            self.seal_reply(&plain, opened.format, stamp)
        } else {
            plain
        }
    }

    /// Wraps a plaintext reply into WeChat's encrypted reply envelope.
    pub fn seal_reply(&self, plaintext: &[u8], format: PushFormat, stamp: &Stamp) -> Vec<u8> {
        let Stamp {
            timestamp,
            ref nonce,
            random,
        } = *stamp;
        let encrypt = self.encrypt(plaintext, random);
        let sig = self.msg_signature(&timestamp.to_string(), nonce, &encrypt);
        match format {
            PushFormat::Json => {
                let mut m = Map::new();
                m.insert("Encrypt".into(), encrypt.into());
                m.insert("MsgSignature".into(), sig.into());
                m.insert("TimeStamp".into(), timestamp.into());
                m.insert("Nonce".into(), nonce.as_str().into());
                Value::Object(m).to_string().into_bytes()
            }
            PushFormat::Xml => {
                let mut out = String::from("<xml>");
                xml::push_cdata(&mut out, "Encrypt", &encrypt);
                xml::push_cdata(&mut out, "MsgSignature", &sig);
                xml::push_number(&mut out, "TimeStamp", timestamp);
                xml::push_cdata(&mut out, "Nonce", nonce);
                out.push_str("</xml>");
                out.into_bytes()
            }
        }
    }

    /// Opens an encrypted reply envelope (the emulator reads what wxPush answered).
    ///
    /// # Errors
    /// [`PushError::BadSignature`] if `MsgSignature` does not match, or a decryption error.
    pub fn open_reply(&self, body: &[u8]) -> Result<Vec<u8>, PushError> {
        let format = PushFormat::detect(body)?;
        let fields = body_fields(body, format)?;
        let get = |k: &str| crate::wechat::verdict::field_str(&Value::Object(fields.clone()), k);
        let encrypt = get("Encrypt").ok_or(PushError::MissingEncrypt)?;
        let sig = get("MsgSignature").ok_or(PushError::MissingParam("MsgSignature"))?;
        let ts = get("TimeStamp").ok_or(PushError::MissingParam("TimeStamp"))?;
        let nonce = get("Nonce").ok_or(PushError::MissingParam("Nonce"))?;
        if !signature_matches(&self.msg_signature(&ts, &nonce, &encrypt), &sig) {
            return Err(PushError::BadSignature);
        }
        self.decrypt(&encrypt)
    }

    /// Seals a push as WeChat delivers it in safe mode: body `{"ToUserName","Encrypt"}` (or
    /// XML) and query `signature, timestamp, nonce, [openid,] encrypt_type=aes, msg_signature`.
    pub fn seal_push(
        &self,
        plaintext: &[u8],
        format: PushFormat,
        to_user_name: &str,
        openid: Option<&str>,
        stamp: &Stamp,
    ) -> SealedPush {
        let Stamp {
            timestamp,
            ref nonce,
            random,
        } = *stamp;
        let ts = timestamp.to_string();
        let encrypt = self.encrypt(plaintext, random);
        let body = match format {
            PushFormat::Json => {
                let mut m = Map::new();
                m.insert("ToUserName".into(), to_user_name.into());
                m.insert("Encrypt".into(), encrypt.clone().into());
                Value::Object(m).to_string().into_bytes()
            }
            PushFormat::Xml => {
                let mut out = String::from("<xml>");
                xml::push_cdata(&mut out, "ToUserName", to_user_name);
                xml::push_cdata(&mut out, "Encrypt", &encrypt);
                out.push_str("</xml>");
                out.into_bytes()
            }
        };
        let mut query = vec![
            ("signature".to_owned(), self.signature(&ts, nonce)),
            ("timestamp".to_owned(), ts.clone()),
            ("nonce".to_owned(), nonce.to_owned()),
        ];
        if let Some(openid) = openid {
            query.push(("openid".to_owned(), openid.to_owned()));
        }
        query.push(("encrypt_type".to_owned(), "aes".to_owned()));
        query.push((
            "msg_signature".to_owned(),
            self.msg_signature(&ts, nonce, &encrypt),
        ));
        SealedPush {
            query,
            body,
            content_type: format.content_type(),
        }
    }

    /// Signs a plaintext-mode push (body sent as is).
    pub fn sign_plain_push(&self, body: &[u8], timestamp: i64, nonce: &str) -> SealedPush {
        let ts = timestamp.to_string();
        let content_type = PushFormat::detect(body)
            .map(PushFormat::content_type)
            .unwrap_or("text/plain");
        SealedPush {
            query: vec![
                ("signature".to_owned(), self.signature(&ts, nonce)),
                ("timestamp".to_owned(), ts),
                ("nonce".to_owned(), nonce.to_owned()),
            ],
            body: body.to_vec(),
            content_type,
        }
    }

    /// The query of a URL-verification GET.
    pub fn url_verification_query(
        &self,
        timestamp: i64,
        nonce: &str,
        echostr: &str,
    ) -> Vec<(String, String)> {
        let ts = timestamp.to_string();
        vec![
            ("signature".to_owned(), self.signature(&ts, nonce)),
            ("timestamp".to_owned(), ts),
            ("nonce".to_owned(), nonce.to_owned()),
            ("echostr".to_owned(), echostr.to_owned()),
        ]
    }
}

/// The top-level fields of a body (JSON object or XML root), depth-bounded.
fn body_fields(body: &[u8], format: PushFormat) -> Result<Map<String, Value>, PushError> {
    let text = std::str::from_utf8(body).map_err(|_| PushError::Body("not UTF-8".into()))?;
    match format {
        PushFormat::Json => limits::json_object(text).map_err(PushError::Body),
        PushFormat::Xml => xml::xml_to_json(text).map_err(PushError::Body),
    }
}

/// The `Encrypt` field of a safe-mode body, read without building a tree (the signature over
/// it has not been checked yet).
fn envelope_encrypt(body: &[u8], format: PushFormat) -> Result<String, PushError> {
    let text = std::str::from_utf8(body).map_err(|_| PushError::Body("not UTF-8".into()))?;
    let encrypt = match format {
        PushFormat::Json => limits::json_encrypt(text),
        PushFormat::Xml => xml::xml_root_field(text, "Encrypt"),
    }
    .map_err(PushError::Body)?;
    encrypt
        .filter(|s| !s.is_empty())
        .ok_or(PushError::MissingEncrypt)
}

/// The per-message values WeChat's sealing uses: timestamp, nonce and the 16 random bytes
/// at the start of the encrypted frame. Passed in so tests and the emulator are exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Unix seconds.
    pub timestamp: i64,
    /// Decimal nonce as WeChat sends it.
    pub nonce: String,
    /// Random frame prefix.
    pub random: [u8; 16],
}

impl Stamp {
    /// A stamp at `timestamp` with a fresh nonce and random prefix from the system CSPRNG.
    ///
    /// # Errors
    /// Only if the operating system's random source fails.
    pub fn generate(timestamp: i64) -> Result<Self, aws_lc_rs::error::Unspecified> {
        let random = random_bytes()?;
        let mut n = [0u8; 4];
        aws_lc_rs::rand::fill(&mut n)?;
        Ok(Stamp {
            timestamp,
            nonce: u32::from_be_bytes(n).to_string(),
            random,
        })
    }
}

/// 16 bytes from the system CSPRNG, for [`PushCrypto::encrypt`] outside tests.
///
/// # Errors
/// Only if the operating system's random source fails.
pub fn random_bytes() -> Result<[u8; 16], aws_lc_rs::error::Unspecified> {
    let mut buf = [0u8; 16];
    aws_lc_rs::rand::fill(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const OFFICIAL_EAK: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const OFFICIAL_APPID: &str = "wxba5fad812f8e6fb9";

    fn stamp(timestamp: i64, nonce: &str, fill: u8) -> Stamp {
        Stamp {
            timestamp,
            nonce: nonce.into(),
            random: [fill; 16],
        }
    }

    /// Appendix A vectors 1 and 2 (official message-push page).
    #[test]
    fn official_signatures() {
        assert_eq!(
            signature("AAAAA", "1714036504", "1514711492"),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
        assert_eq!(
            signature("AAAAA", "1714037059", "486452656"),
            "899cf89e464efb63f54ddac96b0a0a235f53aa78"
        );
        let c = PushCrypto::new("AAAAA", OFFICIAL_EAK, OFFICIAL_APPID).unwrap();
        let q = PushQuery::parse(
            "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492",
        );
        assert_eq!(c.verify_url(&q), Ok("4375120948345356249"));
        let mut bad = q.clone();
        bad.nonce = Some("1514711493".into());
        assert_eq!(c.verify_url(&bad), Err(PushError::BadSignature));
        let mut missing = q;
        missing.signature = None;
        assert_eq!(
            c.verify_url(&missing),
            Err(PushError::MissingParam("signature"))
        );
    }

    /// Appendix A vector 4: the official encrypted reply decrypts, its signature matches,
    /// and encrypting with the same 16 random characters reproduces it byte for byte.
    #[test]
    fn official_encrypted_reply() {
        let c = PushCrypto::new("AAAAA", OFFICIAL_EAK, OFFICIAL_APPID).unwrap();
        let encrypt = "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==";
        assert_eq!(
            c.msg_signature("1713424427", "415670741", encrypt),
            "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
        );
        assert_eq!(c.decrypt(encrypt).unwrap(), br#"{"demo_resp":"good luck"}"#);
        assert_eq!(
            c.encrypt(br#"{"demo_resp":"good luck"}"#, *b"707722b803182950"),
            encrypt
        );
        let envelope = format!(
            r#"{{"Encrypt":"{encrypt}","MsgSignature":"1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1","TimeStamp":1713424427,"Nonce":"415670741"}}"#
        );
        assert_eq!(
            c.open_reply(envelope.as_bytes()).unwrap(),
            br#"{"demo_resp":"good luck"}"#
        );
        let other = PushCrypto::new("AAAAA", OFFICIAL_EAK, "wx0000000000000000").unwrap();
        assert_eq!(
            other.decrypt(encrypt),
            Err(PushError::AppidMismatch {
                found: OFFICIAL_APPID.into()
            })
        );
    }

    #[test]
    fn seal_then_open_both_formats_and_rotation() {
        let old = "ZsTVbQanxZVuwj88Sns6KIaLP4xAsWpJanrUhaiQRsR";
        let sender = PushCrypto::new("tok", old, "wxapp").unwrap();
        let receiver = PushCrypto::new("tok", OFFICIAL_EAK, "wxapp")
            .unwrap()
            .with_previous_key(old)
            .unwrap();
        for format in [PushFormat::Json, PushFormat::Xml] {
            let plain: &[u8] = match format {
                PushFormat::Json => br#"{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"text","Content":"x","MsgId":1}"#,
                PushFormat::Xml => b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>",
            };
            let sealed =
                sender.seal_push(plain, format, "gh", Some("o"), &stamp(1700000000, "123", 7));
            let q = PushQuery::parse(&sealed.query_string());
            let opened = receiver.open(&q, &sealed.body).unwrap();
            assert!(opened.encrypted);
            assert_eq!(opened.plaintext, plain);
            assert_eq!(opened.format, format);
            let reply = opened.message.text_reply("ok", 5);
            let body = sender.reply_body(&opened, &reply, &stamp(5, "9", 1));
            assert_eq!(sender.open_reply(&body).unwrap(), reply.render(format));
            assert_eq!(
                sender.reply_body(&opened, &Reply::Success, &stamp(5, "9", 1)),
                b"success"
            );
        }
    }

    #[test]
    fn tampering_is_rejected() {
        let c = PushCrypto::new("s3cr3t-push-token", OFFICIAL_EAK, "wxapp").unwrap();
        let plain = br#"{"MsgType":"event","Event":"x"}"#;
        let sealed = c.seal_push(plain, PushFormat::Json, "gh", None, &stamp(1, "2", 0));
        let mut q = PushQuery::parse(&sealed.query_string());
        q.msg_signature = Some("0".repeat(40));
        assert_eq!(c.open(&q, &sealed.body), Err(PushError::BadSignature));
        // A plaintext body posted with a valid plain signature but claiming safe mode.
        let q = PushQuery::parse(&sealed.query_string());
        assert_eq!(c.open(&q, plain), Err(PushError::MissingEncrypt));
        // Wrong padding: a ciphertext produced under another key, correctly signed.
        let other = PushCrypto::new(
            "s3cr3t-push-token",
            "ZsTVbQanxZVuwj88Sns6KIaLP4xAsWpJanrUhaiQRsR",
            "wxapp",
        )
        .unwrap();
        let foreign = other.seal_push(plain, PushFormat::Json, "gh", None, &stamp(1, "2", 0));
        let q = PushQuery::parse(&foreign.query_string());
        assert!(matches!(
            c.open(&q, &foreign.body),
            Err(PushError::Padding | PushError::Frame | PushError::AppidMismatch { .. })
        ));
        assert_eq!(c.decrypt("not base64"), Err(PushError::Ciphertext));
        assert_eq!(c.decrypt("AAAA"), Err(PushError::Ciphertext));
        assert_eq!(
            PushCrypto::new("t", "short", "a").unwrap_err(),
            PushError::InvalidAesKey
        );
        assert!(format!("{c:?}").contains("redacted"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn plaintext_push() {
        let c = PushCrypto::new("AAAAA", OFFICIAL_EAK, OFFICIAL_APPID).unwrap();
        let body = br#"{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"event","Event":"debug_demo"}"#;
        let sealed = c.sign_plain_push(body, 1714037059, "486452656");
        assert_eq!(
            sealed.query[0].1,
            "899cf89e464efb63f54ddac96b0a0a235f53aa78"
        );
        let opened = c
            .open(&PushQuery::parse(&sealed.query_string()), body)
            .unwrap();
        assert!(!opened.encrypted);
        assert_eq!(opened.message.event().as_deref(), Some("debug_demo"));
        let mut q = PushQuery::parse(&sealed.query_string());
        q.signature = Some("x".into());
        assert_eq!(c.open(&q, body), Err(PushError::BadSignature));
    }

    #[test]
    fn generated_stamps_differ() {
        let a = Stamp::generate(1).unwrap();
        let b = Stamp::generate(1).unwrap();
        assert_ne!(a.random, b.random);
        assert!(a.nonce.chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn query_parsing() {
        let q = PushQuery::parse("?a=1&nonce=1%202&openid=o+x&encrypt_type=aes&bad=%zz");
        assert_eq!(q.nonce.as_deref(), Some("1 2"));
        assert_eq!(q.openid.as_deref(), Some("o x"));
        assert!(q.is_encrypted());
        // Invalid escapes stay literal (they then fail the signature check).
        assert_eq!(
            PushQuery::parse("nonce=%zz%4").nonce.as_deref(),
            Some("%zz%4")
        );
    }
}
