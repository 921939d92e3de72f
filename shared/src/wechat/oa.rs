//! Official Account (Service Account) server APIs: follower info (for the UnionID), the
//! custom menu, template messages and parametric QR codes.
//!
//! The Official Account is a second app with its own appid and secret; build a second
//! [`WechatClient`] for it (`setup::Deps::oa`). Its access token is shared through the same
//! `wechat_tokens` collection as the Mini Program's (one document per appid), so every
//! instance and the `wemint-oa` command use one stable token per account.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::api::WechatClient;
use super::client::Idempotent;
use super::error::WechatError;

/// What `user/info` says about a follower.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct OaUser {
    /// The follower's openid under the Official Account.
    pub openid: String,
    /// 1 while following; 0 once unsubscribed (then nothing else is returned).
    #[serde(default)]
    pub subscribe: i64,
    /// Present when the account is bound to an Open Platform account.
    #[serde(default)]
    pub unionid: Option<String>,
    /// How the follower came (`ADD_SCENE_QR_CODE`, …).
    #[serde(default)]
    pub subscribe_scene: Option<String>,
    /// The QR scene string of the follow, when it came from a parametric code.
    #[serde(default)]
    pub qr_scene_str: Option<String>,
}

impl OaUser {
    /// Whether the user follows the account now.
    pub fn follows(&self) -> bool {
        self.subscribe == 1
    }
}

/// A template message opening a Mini Program page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TemplateMessage {
    /// The follower's openid under the Official Account.
    pub touser: String,
    /// Template id from the account's template library.
    pub template_id: String,
    /// Mini Program appid the message opens.
    pub miniprogram_appid: String,
    /// Page opened, with its query (no leading `/`).
    pub pagepath: String,
    /// Field values (`{"thing1": "…"}`), sent as `{"thing1": {"value": "…"}}`.
    pub data: Vec<(String, String)>,
    /// Dedupe id WeChat honours for repeated sends (`client_msg_id`).
    pub client_msg_id: Option<String>,
}

/// What kind of QR code to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QrKind {
    /// `QR_STR_SCENE`: expires after `expire_seconds` (at most 30 days).
    Temporary {
        /// Lifetime in seconds, 60 to 2,592,000.
        expire_seconds: u32,
    },
    /// `QR_LIMIT_STR_SCENE`: never expires; the account may hold at most 100,000.
    Permanent,
}

/// Longest temporary QR lifetime (30 days).
pub const MAX_QR_EXPIRE_SECS: u32 = 2_592_000;

/// A created QR code.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct QrTicket {
    /// Exchange at `https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=<urlencoded>`.
    pub ticket: String,
    /// Seconds left, for temporary codes.
    #[serde(default)]
    pub expire_seconds: Option<i64>,
    /// The content of the code (render it yourself instead of downloading the image).
    pub url: String,
}

/// Whether `scene` is a scene string this project creates: 1-64 characters of
/// `[A-Za-z0-9_-]` (WeChat allows any 1-64 characters; the narrower set keeps it safe in
/// pages, queries and logs).
pub fn valid_scene(scene: &str) -> bool {
    (1..=64).contains(&scene.len())
        && scene
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn invalid(msg: &str) -> WechatError {
    WechatError::InvalidRequest(msg.to_owned())
}

impl WechatClient {
    /// `GET /cgi-bin/user/info`: a follower's subscription state and UnionID.
    ///
    /// # Errors
    /// [`WechatError`] (40003 for an openid of another account).
    pub async fn oa_user_info(&self, openid: &str) -> Result<OaUser, WechatError> {
        if openid.is_empty() || openid.len() > 128 {
            return Err(invalid("openid must be 1-128 characters"));
        }
        self.get_with_token(
            "/cgi-bin/user/info",
            &[("openid", openid), ("lang", "zh_CN")],
        )
        .await
    }

    /// `POST /cgi-bin/menu/create` with a validated menu body (`domain::oa_menu::Menu`).
    ///
    /// # Errors
    /// [`WechatError`] (40016-40027 for rules the platform enforces itself).
    pub async fn oa_menu_create(&self, body: &Value) -> Result<(), WechatError> {
        let _: Value = self
            .post_with_token("/cgi-bin/menu/create", body, Idempotent::Yes)
            .await?;
        Ok(())
    }

    /// `GET /cgi-bin/get_current_selfmenu_info`: the menu live now, whoever made it.
    ///
    /// # Errors
    /// [`WechatError`].
    pub async fn oa_menu_current(&self) -> Result<Value, WechatError> {
        self.get_with_token("/cgi-bin/get_current_selfmenu_info", &[])
            .await
    }

    /// `POST /cgi-bin/message/template/send` with a Mini Program page. Not retried after a
    /// timeout (it may have been delivered); the caller's record decides.
    ///
    /// # Errors
    /// [`WechatError`]: 43004 the user does not follow, 40037 bad template, 45009 quota.
    pub async fn oa_send_template(&self, msg: &TemplateMessage) -> Result<i64, WechatError> {
        if msg.touser.is_empty() || msg.template_id.is_empty() {
            return Err(invalid("touser and template_id are required"));
        }
        if msg.pagepath.starts_with('/') || msg.pagepath.is_empty() {
            return Err(invalid("pagepath: a page without a leading `/`"));
        }
        let data: Map<String, Value> = msg
            .data
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "value": v })))
            .collect();
        let mut body = json!({
            "touser": msg.touser,
            "template_id": msg.template_id,
            "miniprogram": {"appid": msg.miniprogram_appid, "pagepath": msg.pagepath},
            "data": data,
        });
        if let Some(id) = &msg.client_msg_id {
            body["client_msg_id"] = json!(id);
        }
        let reply: Value = self
            .post_with_token("/cgi-bin/message/template/send", &body, Idempotent::No)
            .await?;
        Ok(reply["msgid"].as_i64().unwrap_or_default())
    }

    /// `POST /cgi-bin/qrcode/create` with a string scene.
    ///
    /// # Errors
    /// [`WechatError::InvalidRequest`] for a scene outside [`valid_scene`] or a lifetime
    /// outside 60 s - 30 days; API errors.
    pub async fn oa_qrcode_create(
        &self,
        scene: &str,
        kind: &QrKind,
    ) -> Result<QrTicket, WechatError> {
        if !valid_scene(scene) {
            return Err(invalid("scene: 1-64 characters of [A-Za-z0-9_-]"));
        }
        let body = match kind {
            QrKind::Temporary { expire_seconds } => {
                if !(60..=MAX_QR_EXPIRE_SECS).contains(expire_seconds) {
                    return Err(invalid("expire_seconds: 60 to 2592000"));
                }
                json!({"expire_seconds": expire_seconds, "action_name": "QR_STR_SCENE",
                       "action_info": {"scene": {"scene_str": scene}}})
            }
            QrKind::Permanent => json!({"action_name": "QR_LIMIT_STR_SCENE",
                                        "action_info": {"scene": {"scene_str": scene}}}),
        };
        self.post_with_token("/cgi-bin/qrcode/create", &body, Idempotent::Yes)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes() {
        assert!(valid_scene("spring-2026_A"));
        assert!(!valid_scene(""));
        assert!(!valid_scene(&"a".repeat(65)));
        assert!(!valid_scene("a b"));
        assert!(!valid_scene("春"));
    }

    #[test]
    fn user_info_parses_unsubscribed() {
        let u: OaUser = serde_json::from_value(json!({"subscribe": 0, "openid": "o1"})).unwrap();
        assert!(!u.follows());
        assert!(u.unionid.is_none());
        let u: OaUser = serde_json::from_value(
            json!({"subscribe": 1, "openid": "o1", "unionid": "u1", "qr_scene_str": "s"}),
        )
        .unwrap();
        assert!(u.follows());
        assert_eq!(u.unionid.as_deref(), Some("u1"));
    }
}
