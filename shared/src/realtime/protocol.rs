//! The socket protocol (`docs/api.md`, "realtime"): JSON text frames, parsed with their size
//! bounded first.
//!
//! Client → server: `{"op":"subscribe","topics":[…],"after":seq?}`,
//! `{"op":"unsubscribe","topics":[…]}`, `{"op":"ping"}`.
//! Server → client: `welcome`, `subscribed`, `events` (a batch, oldest first), `revoked`,
//! `resync`, `pong`, `error`.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::events::Event;

/// Longest client frame accepted, in bytes (a subscribe of every topic fits easily).
pub const MAX_CLIENT_FRAME: usize = 4096;
/// Most topics one connection may hold.
pub const MAX_TOPICS: usize = 16;
/// Longest topic name.
const MAX_TOPIC_LEN: usize = 96;

/// A topic a connection can subscribe to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every order (and refund) of the caller: `orders`.
    Orders,
    /// One order of the caller: `order:<id>`.
    Order(String),
    /// Moderation results of the caller's posts: `posts`.
    Posts,
    /// A tenant the caller belongs to (members, notes): `tenant:<id>`.
    Tenant(String),
}

impl Topic {
    /// Parses a topic name.
    ///
    /// # Errors
    /// A message for the client.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.len() > MAX_TOPIC_LEN {
            return Err(format!("a topic is at most {MAX_TOPIC_LEN} bytes"));
        }
        let id_ok = |id: &str| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        match name.split_once(':') {
            None if name == "orders" => Ok(Self::Orders),
            None if name == "posts" => Ok(Self::Posts),
            Some(("order", id)) if id_ok(id) => Ok(Self::Order(id.to_owned())),
            Some(("tenant", id)) if id_ok(id) => Ok(Self::Tenant(id.to_owned())),
            _ => Err(format!(
                "unknown topic `{}`: use orders, order:<id>, posts or tenant:<id>",
                name.escape_default()
            )),
        }
    }

    /// The topic's name.
    pub fn name(&self) -> String {
        match self {
            Self::Orders => "orders".into(),
            Self::Order(id) => format!("order:{id}"),
            Self::Posts => "posts".into(),
            Self::Tenant(id) => format!("tenant:{id}"),
        }
    }

    /// Whether `event` belongs to this topic for the user `openid`.
    pub fn matches(&self, openid: &str, event: &Event) -> bool {
        let own = event.openid.as_deref() == Some(openid);
        match self {
            Self::Orders => own && event.order_id.is_some(),
            Self::Order(id) => own && event.order_id.as_deref() == Some(id.as_str()),
            Self::Posts => own && event.kind.starts_with("post."),
            Self::Tenant(id) => event.tenant.as_deref() == Some(id.as_str()),
        }
    }
}

/// A parsed client frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// Add topics; `after` (first subscribe only) replays stored events after that sequence.
    Subscribe {
        /// The topics asked for, in order, as given (checked one by one).
        topics: Vec<String>,
        /// The last sequence the client saw.
        after: Option<i64>,
    },
    /// Drop topics.
    Unsubscribe {
        /// Topic names.
        topics: Vec<String>,
    },
    /// Application heartbeat (`wx.connectSocket` cannot send ping frames).
    Ping,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    op: String,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    after: Option<i64>,
}

/// Parses one client text frame.
///
/// # Errors
/// A message for the client: too large, not JSON of the expected shape, unknown op, too many
/// topics, negative `after`.
pub fn parse_client(text: &str) -> Result<ClientMessage, String> {
    if text.len() > MAX_CLIENT_FRAME {
        return Err(format!("a message is at most {MAX_CLIENT_FRAME} bytes"));
    }
    // The size bound also bounds the nesting serde_json has to walk (and it stops at 128).
    let raw: Raw = serde_json::from_str(text).map_err(|_| {
        "expected {\"op\":\"subscribe\"|\"unsubscribe\"|\"ping\", \"topics\":[…], \"after\":n}"
            .to_owned()
    })?;
    if raw.topics.len() > MAX_TOPICS {
        return Err(format!("at most {MAX_TOPICS} topics"));
    }
    match raw.op.as_str() {
        "subscribe" => {
            if raw.after.is_some_and(|a| a < 0) {
                return Err("`after` must be 0 or more".into());
            }
            Ok(ClientMessage::Subscribe {
                topics: raw.topics,
                after: raw.after,
            })
        }
        "unsubscribe" => Ok(ClientMessage::Unsubscribe { topics: raw.topics }),
        "ping" => Ok(ClientMessage::Ping),
        _ => Err("`op` must be subscribe, unsubscribe or ping".into()),
    }
}

/// `{"type":"events","events":[…]}`.
pub(super) fn events_frame(events: &[&Event]) -> String {
    let list: Vec<Value> = events.iter().map(|e| e.view()).collect();
    json!({"type": "events", "events": list}).to_string()
}

/// `{"type":"error","code":…,"message":…}`.
pub(super) fn error_frame(code: &str, message: &str) -> String {
    json!({"type": "error", "code": code, "message": message}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{cases, glued};
    use proptest::prelude::*;

    #[test]
    fn topics_parse_and_name_round_trip() {
        for name in ["orders", "posts", "order:o-1_2", "tenant:t.9"] {
            assert_eq!(Topic::parse(name).unwrap().name(), name);
        }
        for bad in ["", "order:", "tenant:a b", "x:y", "orders:1", "order:a:b"] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_messages() {
        assert_eq!(
            parse_client(r#"{"op":"subscribe","topics":["orders"],"after":7}"#).unwrap(),
            ClientMessage::Subscribe {
                topics: vec!["orders".into()],
                after: Some(7)
            }
        );
        assert_eq!(
            parse_client(r#"{"op":"ping"}"#).unwrap(),
            ClientMessage::Ping
        );
        assert!(parse_client(r#"{"op":"subscribe","after":-1}"#).is_err());
        assert!(parse_client(r#"{"op":"nope"}"#).is_err());
        assert!(parse_client(r#"{"op":"ping","x":1}"#).is_err());
        let many = format!(
            r#"{{"op":"subscribe","topics":[{}]}}"#,
            vec!["\"posts\""; MAX_TOPICS + 1].join(",")
        );
        assert!(parse_client(&many).is_err());
        assert!(parse_client(&" ".repeat(MAX_CLIENT_FRAME + 1)).is_err());
    }

    proptest! {
        #![proptest_config(cases(2000))]

        /// Any frame a client can send is answered with a message or an error, never a panic,
        /// and every accepted topic is one of the four shapes.
        #[test]
        fn fuzz_client_frames(text in glued(&[
            "{", "}", "[", "]", "\"op\"", ":", ",", "\"subscribe\"", "\"ping\"",
            "\"unsubscribe\"", "\"topics\"", "\"after\"", "\"orders\"", "\"order:1\"",
            "\"tenant:\"", "-1", "9223372036854775808", "null", "\"\\u0000\"", "1e400",
        ])) {
            if let Ok(ClientMessage::Subscribe { topics, .. } | ClientMessage::Unsubscribe { topics }) =
                parse_client(&text)
            {
                prop_assert!(topics.len() <= MAX_TOPICS);
                for t in topics {
                    if let Ok(topic) = Topic::parse(&t) {
                        prop_assert_eq!(topic.name(), t);
                    }
                }
            }
        }

        #[test]
        fn fuzz_topic_names(name in "\\PC{0,120}") {
            if let Ok(topic) = Topic::parse(&name) {
                prop_assert_eq!(topic.name(), name);
            }
        }
    }
}
