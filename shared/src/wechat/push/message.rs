//! Typed push messages and the passive reply builder.

use serde_json::{Map, Value};

use super::limits::json_object;
use super::xml::{push_cdata, push_number, xml_to_json};
use super::{PushError, PushFormat};
use crate::wechat::verdict::{
    CheckDetail, Verdict, field_i64, field_str, parse_details, parse_verdict,
};

/// A decrypted, parsed push from WeChat (Mini Program or Official Account).
#[derive(Debug, Clone, PartialEq)]
pub struct PushMessage {
    /// Our account (`gh_…`).
    pub to_user_name: String,
    /// The user's openid (or the platform's for system events).
    pub from_user_name: String,
    /// Unix seconds.
    pub create_time: i64,
    /// `event`, `text`, `image`, …
    pub msg_type: String,
    /// The typed content.
    pub kind: PushKind,
    /// The whole payload as JSON (XML pushes converted, leaf values as strings).
    pub raw: Value,
}

/// What a push is about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PushKind {
    /// A text message from a user.
    Text {
        /// WeChat's message id (the de-duplication key).
        msg_id: Option<String>,
        /// The text.
        content: String,
    },
    /// The asynchronous verdict of `media_check_async` (event `wxa_media_check`).
    MediaCheck(MediaCheckResult),
    /// Virtual-payment delivery (event `xpay_goods_deliver_notify`). The payload is kept as
    /// JSON for the pay module's parser.
    XpayGoodsDeliver(Value),
    /// A user followed the Official Account (optionally by scanning a parametric QR code:
    /// `event_key` = `qrscene_…`).
    Subscribe {
        /// `qrscene_<scene>` when followed through a parametric QR code.
        event_key: Option<String>,
        /// The QR code ticket.
        ticket: Option<String>,
    },
    /// A user unfollowed the Official Account.
    Unsubscribe,
    /// A `click` menu button.
    MenuClick {
        /// The button's key.
        event_key: String,
    },
    /// A `view` menu button (opens a URL).
    MenuView {
        /// The URL opened.
        url: String,
        /// The menu id.
        menu_id: Option<String>,
    },
    /// A `miniprogram` menu button (opens the Mini Program).
    MenuMiniProgram {
        /// The page path opened.
        page_path: String,
        /// The menu id.
        menu_id: Option<String>,
    },
    /// Results of a `wx.requestSubscribeMessage` popup (event `subscribe_msg_popup_event`).
    SubscribeMsgPopup(Vec<SubscribeDecision>),
    /// Anything else, kept in [`PushMessage::raw`].
    Other {
        /// The event name, if any.
        event: Option<String>,
    },
}

/// The `wxa_media_check` event payload.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaCheckResult {
    /// The Mini Program the check belongs to.
    pub appid: Option<String>,
    /// The `trace_id` `media_check_async` returned.
    pub trace_id: String,
    /// Check version (2).
    pub version: Option<i64>,
    /// The overall verdict.
    pub verdict: Verdict,
    /// Per-strategy findings.
    pub detail: Vec<CheckDetail>,
}

/// One template's decision in a subscribe-message popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeDecision {
    /// The template.
    pub template_id: String,
    /// `accept`, `reject`, `ban`, `acceptWithAudio`, …
    pub status: String,
    /// Where the popup was shown (`0` = Mini Program page).
    pub popup_scene: Option<String>,
}

fn required(v: &Value, key: &'static str) -> Result<String, PushError> {
    field_str(v, key).ok_or(PushError::Message(format!("{key} missing")))
}

impl PushMessage {
    /// Parses a decrypted push body in the given format, nesting bounded by
    /// [`super::MAX_DEPTH`] before any tree is built.
    ///
    /// # Errors
    /// [`PushError::Message`] if the body is not a push message.
    pub fn parse(plaintext: &[u8], format: PushFormat) -> Result<Self, PushError> {
        let text = std::str::from_utf8(plaintext)
            .map_err(|_| PushError::Message("body is not UTF-8".into()))?;
        let fields = match format {
            PushFormat::Json => json_object(text),
            PushFormat::Xml => xml_to_json(text),
        };
        let raw = Value::Object(fields.map_err(PushError::Message)?);
        Self::from_value(raw)
    }

    /// Types an already-parsed payload.
    ///
    /// # Errors
    /// [`PushError::Message`] if required fields are missing.
    pub fn from_value(raw: Value) -> Result<Self, PushError> {
        let msg_type = required(&raw, "MsgType")?;
        let event = field_str(&raw, "Event");
        let kind = match (msg_type.as_str(), event.as_deref()) {
            ("text", _) => PushKind::Text {
                msg_id: field_str(&raw, "MsgId"),
                content: field_str(&raw, "Content").unwrap_or_default(),
            },
            ("event", Some("wxa_media_check")) => PushKind::MediaCheck(parse_media_check(&raw)?),
            ("event", Some("xpay_goods_deliver_notify")) => PushKind::XpayGoodsDeliver(raw.clone()),
            ("event", Some("subscribe")) => PushKind::Subscribe {
                event_key: field_str(&raw, "EventKey").filter(|k| !k.is_empty()),
                ticket: field_str(&raw, "Ticket").filter(|k| !k.is_empty()),
            },
            ("event", Some("unsubscribe")) => PushKind::Unsubscribe,
            ("event", Some(e)) if e.eq_ignore_ascii_case("click") => PushKind::MenuClick {
                event_key: field_str(&raw, "EventKey").unwrap_or_default(),
            },
            ("event", Some(e)) if e.eq_ignore_ascii_case("view") => PushKind::MenuView {
                url: field_str(&raw, "EventKey").unwrap_or_default(),
                menu_id: field_str(&raw, "MenuId").or_else(|| field_str(&raw, "MenuID")),
            },
            ("event", Some("view_miniprogram")) => PushKind::MenuMiniProgram {
                page_path: field_str(&raw, "EventKey").unwrap_or_default(),
                menu_id: field_str(&raw, "MenuId").or_else(|| field_str(&raw, "MenuID")),
            },
            ("event", Some("subscribe_msg_popup_event")) => {
                PushKind::SubscribeMsgPopup(parse_popup(&raw))
            }
            _ => PushKind::Other { event },
        };
        Ok(PushMessage {
            to_user_name: field_str(&raw, "ToUserName").unwrap_or_default(),
            from_user_name: field_str(&raw, "FromUserName").unwrap_or_default(),
            create_time: field_i64(&raw, "CreateTime").unwrap_or_default(),
            msg_type,
            kind,
            raw,
        })
    }

    /// The event name, if this is an event.
    pub fn event(&self) -> Option<String> {
        field_str(&self.raw, "Event")
    }

    /// A key identifying this push across WeChat's retries (it retries 3 times when we do
    /// not answer within 5 s): `MsgId` for messages; sender, time, event and the event's own
    /// id (`trace_id`, `OutTradeNo`, `EventKey`, `transaction_id`) for events.
    pub fn dedupe_key(&self) -> String {
        if let Some(id) = field_str(&self.raw, "MsgId").filter(|s| !s.is_empty()) {
            return format!("msg:{id}");
        }
        let discriminator = [
            "trace_id",
            "OutTradeNo",
            "EventKey",
            "MchRefundId",
            "MchOrderId",
            "transaction_id",
        ]
        .iter()
        .find_map(|k| field_str(&self.raw, k).filter(|s| !s.is_empty()))
        .unwrap_or_default();
        // Settlement progress for one payment arrives as separate pushes (receipt confirmed,
        // then settled) that can share a second: their times tell them apart.
        let progress: String = ["confirm_receive_time", "settlement_time"]
            .iter()
            .filter_map(|k| field_str(&self.raw, k).filter(|s| !s.is_empty() && s != "0"))
            .map(|t| format!(":{t}"))
            .collect();
        format!(
            "evt:{}:{}:{}:{}{progress}",
            self.from_user_name,
            self.create_time,
            self.event().unwrap_or_default(),
            discriminator
        )
    }

    /// A passive text reply to this message (to the sender, from our account).
    pub fn text_reply(&self, content: impl Into<String>, create_time: i64) -> Reply {
        Reply::Text {
            to_user_name: self.from_user_name.clone(),
            from_user_name: self.to_user_name.clone(),
            create_time,
            content: content.into(),
        }
    }
}

fn parse_media_check(raw: &Value) -> Result<MediaCheckResult, PushError> {
    let result = raw
        .get("result")
        .ok_or(PushError::Message("result missing".into()))?;
    Ok(MediaCheckResult {
        appid: field_str(raw, "appid"),
        trace_id: required(raw, "trace_id")?,
        version: field_i64(raw, "version"),
        verdict: parse_verdict(result).map_err(PushError::Message)?,
        detail: parse_details(raw.get("detail")),
    })
}

/// JSON: `"List": [..]` or one object; XML: `<SubscribeMsgPopupEvent><List>…</List>…`.
fn parse_popup(raw: &Value) -> Vec<SubscribeDecision> {
    let list = raw
        .get("SubscribeMsgPopupEvent")
        .and_then(|v| v.get("List"))
        .or_else(|| raw.get("List"));
    let items: Vec<&Value> = match list {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|i| {
            Some(SubscribeDecision {
                template_id: field_str(i, "TemplateId")?,
                status: field_str(i, "SubscribeStatusString")?,
                popup_scene: field_str(i, "PopupScene"),
            })
        })
        .collect()
}

/// A passive reply to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `success`: acknowledged, nothing to say (never encrypted).
    Success,
    /// A text message back to the user (Official Account conversations).
    Text {
        /// The user (the push's `FromUserName`).
        to_user_name: String,
        /// Our account (the push's `ToUserName`).
        from_user_name: String,
        /// Unix seconds.
        create_time: i64,
        /// The text.
        content: String,
    },
}

impl Reply {
    /// The plaintext reply body in `format` (`success` for [`Reply::Success`]).
    pub fn render(&self, format: PushFormat) -> Vec<u8> {
        match self {
            Reply::Success => b"success".to_vec(),
            Reply::Text {
                to_user_name,
                from_user_name,
                create_time,
                content,
            } => match format {
                PushFormat::Json => {
                    let mut m = Map::new();
                    m.insert("ToUserName".into(), to_user_name.clone().into());
                    m.insert("FromUserName".into(), from_user_name.clone().into());
                    m.insert("CreateTime".into(), (*create_time).into());
                    m.insert("MsgType".into(), "text".into());
                    m.insert("Content".into(), content.clone().into());
                    Value::Object(m).to_string().into_bytes()
                }
                PushFormat::Xml => {
                    let mut out = String::from("<xml>");
                    push_cdata(&mut out, "ToUserName", to_user_name);
                    push_cdata(&mut out, "FromUserName", from_user_name);
                    push_number(&mut out, "CreateTime", *create_time);
                    push_cdata(&mut out, "MsgType", "text");
                    push_cdata(&mut out, "Content", content);
                    out.push_str("</xml>");
                    out.into_bytes()
                }
            },
        }
    }

    /// `success` needs no encryption even in safe mode.
    pub fn needs_encryption(&self) -> bool {
        !matches!(self, Reply::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::verdict::Suggest;

    #[test]
    fn oa_xml_events_are_typed() {
        let sub = br"<xml><ToUserName><![CDATA[gh_oa]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_42]]></EventKey><Ticket><![CDATA[T]]></Ticket></xml>";
        let m = PushMessage::parse(sub, PushFormat::Xml).unwrap();
        assert_eq!(m.create_time, 1_700_000_000);
        assert_eq!(
            m.kind,
            PushKind::Subscribe {
                event_key: Some("qrscene_42".into()),
                ticket: Some("T".into())
            }
        );
        assert_eq!(m.dedupe_key(), "evt:oU1:1700000000:subscribe:qrscene_42");

        let click = br"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>V1001_TODAY</EventKey></xml>";
        assert_eq!(
            PushMessage::parse(click, PushFormat::Xml).unwrap().kind,
            PushKind::MenuClick {
                event_key: "V1001_TODAY".into()
            }
        );
        let view = br"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>VIEW</Event><EventKey>https://example.com/</EventKey><MenuId>7</MenuId></xml>";
        assert_eq!(
            PushMessage::parse(view, PushFormat::Xml).unwrap().kind,
            PushKind::MenuView {
                url: "https://example.com/".into(),
                menu_id: Some("7".into())
            }
        );
        let unsub = br"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>unsubscribe</Event></xml>";
        assert_eq!(
            PushMessage::parse(unsub, PushFormat::Xml).unwrap().kind,
            PushKind::Unsubscribe
        );
    }

    #[test]
    fn text_message_and_reply() {
        let text = br#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":5,"MsgType":"text","Content":"hi","MsgId":23456}"#;
        let m = PushMessage::parse(text, PushFormat::Json).unwrap();
        assert_eq!(
            m.kind,
            PushKind::Text {
                msg_id: Some("23456".into()),
                content: "hi".into()
            }
        );
        assert_eq!(m.dedupe_key(), "msg:23456");
        let reply = m.text_reply("a]]>b", 9);
        let xml = reply.render(PushFormat::Xml);
        let back = PushMessage::parse(&xml, PushFormat::Xml).unwrap();
        assert_eq!(back.to_user_name, "o1");
        assert_eq!(back.from_user_name, "gh_1");
        assert_eq!(back.create_time, 9);
        assert!(matches!(back.kind, PushKind::Text { ref content, .. } if content == "a]]>b"));
        let json = reply.render(PushFormat::Json);
        let back = PushMessage::parse(&json, PushFormat::Json).unwrap();
        assert_eq!(back.to_user_name, "o1");
        assert_eq!(Reply::Success.render(PushFormat::Json), b"success");
    }

    #[test]
    fn media_check_xml_with_string_numbers() {
        let xml = br"<xml><ToUserName><![CDATA[gh_38cc49f9733b]]></ToUserName><FromUserName><![CDATA[oH1fu0FdHqpToe2T6gBj0WyB8iS1]]></FromUserName><CreateTime>1625476198</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[wxa_media_check]]></Event><appid><![CDATA[wx8f16a5e4d6e7a2f9]]></appid><trace_id><![CDATA[60e2a5c6-4f2d3e1a-6f2d]]></trace_id><version>2</version><detail><strategy><![CDATA[content_model]]></strategy><errcode>0</errcode><suggest><![CDATA[pass]]></suggest><label>100</label><prob>90</prob></detail><errcode>0</errcode><errmsg><![CDATA[ok]]></errmsg><result><suggest><![CDATA[pass]]></suggest><label>100</label></result></xml>";
        let m = PushMessage::parse(xml, PushFormat::Xml).unwrap();
        let PushKind::MediaCheck(r) = m.kind else {
            panic!("not a media check")
        };
        assert_eq!(r.trace_id, "60e2a5c6-4f2d3e1a-6f2d");
        assert_eq!(r.version, Some(2));
        assert_eq!(r.verdict.suggest, Suggest::Pass);
        assert_eq!(r.verdict.label, 100);
        assert_eq!(r.detail.len(), 1);
        assert_eq!(r.detail[0].prob, Some(90));
    }

    #[test]
    fn xpay_payload_kept_as_json_and_deduped_by_order() {
        let body = br#"{"ToUserName":"gh","FromUserName":"o","CreateTime":7,"MsgType":"event","Event":"xpay_goods_deliver_notify","OpenId":"o","OutTradeNo":"VP1","Env":0,"WeChatPayInfo":{"MchOrderNo":"M1","TransactionId":"T1"}}"#;
        let m = PushMessage::parse(body, PushFormat::Json).unwrap();
        let PushKind::XpayGoodsDeliver(payload) = &m.kind else {
            panic!("not xpay")
        };
        assert_eq!(payload["WeChatPayInfo"]["MchOrderNo"], "M1");
        assert_eq!(m.dedupe_key(), "evt:o:7:xpay_goods_deliver_notify:VP1");
    }

    #[test]
    fn popup_and_unknown_and_bad_bodies() {
        let body = br#"{"ToUserName":"gh","FromUserName":"o","CreateTime":7,"MsgType":"event","Event":"subscribe_msg_popup_event","List":{"TemplateId":"T1","SubscribeStatusString":"accept","PopupScene":"0"}}"#;
        let m = PushMessage::parse(body, PushFormat::Json).unwrap();
        assert_eq!(
            m.kind,
            PushKind::SubscribeMsgPopup(vec![SubscribeDecision {
                template_id: "T1".into(),
                status: "accept".into(),
                popup_scene: Some("0".into())
            }])
        );
        let other = br#"{"MsgType":"event","Event":"debug_demo"}"#;
        assert_eq!(
            PushMessage::parse(other, PushFormat::Json).unwrap().kind,
            PushKind::Other {
                event: Some("debug_demo".into())
            }
        );
        assert!(PushMessage::parse(b"[1]", PushFormat::Json).is_err());
        assert!(PushMessage::parse(br#"{"Event":"x"}"#, PushFormat::Json).is_err());
        let no_trace = br#"{"MsgType":"event","Event":"wxa_media_check","result":{"suggest":"pass","label":100}}"#;
        assert!(PushMessage::parse(no_trace, PushFormat::Json).is_err());
    }
}
