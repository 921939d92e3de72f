//! WeChat platform client: login, access token, content security, message push, deep links,
//! subscribe messages.
//!
//! The pure parts (signatures, open-data and push cryptography, push parsing) do no I/O and
//! take time and randomness as arguments. See `docs/wechat.md` for the public API.

pub mod crypto;
pub mod error;
pub mod push;
pub mod verdict;

pub use crypto::{
    OpenData, OpenDataError, PhoneInfo, Watermark, decrypt_open_data, raw_data_signature,
    session_signature, verify_raw_data_signature,
};
pub use error::{ErrCode, WechatError};
pub use push::{
    OpenedPush, PushCrypto, PushError, PushFormat, PushKind, PushMessage, PushQuery, Reply,
    SealedPush, Stamp,
};
pub use verdict::{CheckDetail, Suggest, Verdict};
