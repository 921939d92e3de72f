//! WeChat platform client: login, access token, content security, message push, deep links,
//! subscribe messages.
//!
//! The pure parts (signatures, open-data and push cryptography, push parsing) do no I/O and
//! take time and randomness as arguments. See `docs/wechat.md` for the public API.

pub mod api;
pub mod client;
pub mod crypto;
pub mod datacube;
pub mod error;
pub mod oa;
pub mod push;
pub mod shipping;
pub mod subscribe_grants;
pub mod subscribe_templates;
pub mod token;
pub mod verdict;

pub use api::{
    EnvVersion, Expiry, LinkRequest, MediaCheckRequest, MediaType, MiniprogramState, Scene,
    Session, SessionKey, SubscribeMessage, TextCheck, TextCheckRequest, UnlimitedCodeRequest,
    WechatClient,
};
pub use client::{AccessToken, Binary, Clock, DEFAULT_API_BASE, WechatConfig, system_clock};
pub use crypto::{
    OpenData, OpenDataError, PhoneInfo, Watermark, decrypt_open_data, raw_data_signature,
    session_signature, verify_raw_data_signature,
};
pub use error::{ErrCode, WechatError};
pub use push::{
    OpenedPush, PushCrypto, PushError, PushFormat, PushKind, PushMessage, PushQuery, Reply,
    SealedPush, Stamp,
};
pub use token::{TokenCache, TokenPolicy};
pub use verdict::{CheckDetail, Suggest, Verdict};
