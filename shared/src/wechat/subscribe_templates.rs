//! The subscribe-message templates wemint sends, by the key the Mini Program uses, and the
//! recording of what a user accepted in `wx.requestSubscribeMessage`.
//!
//! | key | configured by | sent by |
//! |---|---|---|
//! | `shipping` | `WEMINT_SHIPPING_TEMPLATE_ID` | the shipping notice when an order ships |
//! | `postNotice` | `WEMINT_POST_NOTICE_TEMPLATE` | moderation's post-result notice |
//! | `renewal` | `WEMINT_RENEWAL_TEMPLATE_ID` | gatedContent's renewal reminders |
//!
//! The Mini Program reports each popup's results by key (gatedContent `subscribeGrant`,
//! [`record_consent`]); the caller comes from the session, never from the input. Only the
//! known keys are accepted, at most [`MAX_RESULTS`] per report, and each accept adds one credit
//! to [`super::subscribe_grants`], up to [`super::subscribe_grants::CLIENT_CREDIT_CAP`] per user
//! and template. `postNotice` credits come from WeChat's own `subscribe_msg_popup_event` push
//! (wxPush), which the client cannot forge, so a reported `postNotice` is skipped rather than
//! counted twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::subscribe_grants;
use crate::config::Config;
use crate::store::{Store, StoreError};

/// At most this many results in one report (WeChat's own limit per popup is 5; the Mini
/// Program asks at most 3).
pub const MAX_RESULTS: usize = 5;
/// A result string is a short ASCII word (`accept`, `reject`, `acceptWithAlert`, …).
const MAX_RESULT_LEN: usize = 32;
/// Template ids are at most this long (ASCII letters, digits, `_`, `-`).
const MAX_TEMPLATE_ID_LEN: usize = 128;

/// A subscribe-message template, by the name the server and the Mini Program share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TemplateKey {
    /// The order has shipped.
    Shipping,
    /// The moderation result of a post.
    PostNotice,
    /// The membership renewal reminder.
    Renewal,
}

impl TemplateKey {
    /// Every key.
    pub const ALL: [TemplateKey; 3] = [Self::Shipping, Self::PostNotice, Self::Renewal];

    /// The key's name on the wire (`config.subscribe.templates` in the Mini Program).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shipping => "shipping",
            Self::PostNotice => "postNotice",
            Self::Renewal => "renewal",
        }
    }

    /// The configuration variable holding the template id.
    pub fn var(self) -> &'static str {
        match self {
            Self::Shipping => "WEMINT_SHIPPING_TEMPLATE_ID",
            Self::PostNotice => "WEMINT_POST_NOTICE_TEMPLATE",
            Self::Renewal => "WEMINT_RENEWAL_TEMPLATE_ID",
        }
    }

    /// The key named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether a client's report counts for this key (`postNotice` is counted from the
    /// platform's push instead).
    fn client_recorded(self) -> bool {
        self != Self::PostNotice
    }
}

/// The configured template id of each key (unset keys are not sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    ids: BTreeMap<TemplateKey, String>,
}

impl Templates {
    /// From each key's variable ([`TemplateKey::var`]); empty values count as unset.
    pub fn from_config(config: &Config) -> Self {
        let ids = TemplateKey::ALL
            .into_iter()
            .filter_map(|k| {
                config
                    .optional(k.var())
                    .filter(|id| !id.is_empty())
                    .map(|id| (k, id))
            })
            .collect();
        Self { ids }
    }

    /// Templates from explicit pairs (tests and tools).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (TemplateKey, String)>) -> Self {
        Self {
            ids: pairs.into_iter().collect(),
        }
    }

    /// The template id of `key`, if configured.
    pub fn id(&self, key: TemplateKey) -> Option<&str> {
        self.ids.get(&key).map(String::as_str)
    }

    /// The key whose template id is `id`, if any.
    pub fn key_of(&self, id: &str) -> Option<TemplateKey> {
        self.ids.iter().find(|(_, v)| *v == id).map(|(k, _)| *k)
    }
}

/// What a report asked to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentReport {
    /// `{results: {<key>: <wx result>}}`: the popup's answers by key.
    Results(BTreeMap<String, String>),
    /// `{templateIds: [...]}`: the accepted template ids (the older form). Each must be the
    /// configured id of a key.
    TemplateIds(Vec<String>),
}

/// Why a report was refused (nothing is recorded then).
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// Malformed: no results, too many, or a result that is not a WeChat answer.
    #[error("{0}")]
    BadRequest(String),
    /// A key, or a template id, this server does not send.
    #[error("unknown subscribe template: {0}")]
    UnknownTemplate(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One recorded grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The key.
    pub key: &'static str,
    /// Its template id.
    pub template_id: String,
    /// The credits the user now holds for it.
    pub credits: Option<i64>,
}

/// An accepted key that was not counted here, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// The key.
    pub key: &'static str,
    /// `notConfigured` (this server has no template for it) or `countedFromPush`.
    pub reason: &'static str,
}

/// The outcome of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// Credits added.
    pub grants: Vec<Grant>,
    /// Accepted keys not counted here.
    pub skipped: Vec<Skipped>,
}

fn is_accept(result: &str) -> bool {
    result.starts_with("accept")
}

/// Checks a report and returns the accepted keys, each once, without touching the store.
///
/// # Errors
/// [`ConsentError::BadRequest`] for a malformed report, [`ConsentError::UnknownTemplate`] for a
/// key or template id this server does not know.
pub fn accepted_keys(
    templates: &Templates,
    report: &ConsentReport,
) -> Result<Vec<TemplateKey>, ConsentError> {
    let mut keys = Vec::new();
    match report {
        ConsentReport::Results(results) => {
            if results.is_empty() || results.len() > MAX_RESULTS {
                return Err(ConsentError::BadRequest(format!(
                    "results: 1 to {MAX_RESULTS} template keys with their wx.requestSubscribeMessage result"
                )));
            }
            for (name, result) in results {
                let key = TemplateKey::parse(name).ok_or_else(|| {
                    ConsentError::UnknownTemplate(name.chars().take(64).collect())
                })?;
                if result.is_empty()
                    || result.len() > MAX_RESULT_LEN
                    || !result.bytes().all(|b| b.is_ascii_alphabetic())
                {
                    return Err(ConsentError::BadRequest(format!(
                        "results.{name}: a wx.requestSubscribeMessage result (accept, reject, ban, filter, acceptWith…)"
                    )));
                }
                if is_accept(result) {
                    keys.push(key);
                }
            }
        }
        ConsentReport::TemplateIds(ids) => {
            if ids.is_empty() || ids.len() > MAX_RESULTS {
                return Err(ConsentError::BadRequest(format!(
                    "templateIds: 1 to {MAX_RESULTS} accepted template ids"
                )));
            }
            for id in ids {
                let shaped = (1..=MAX_TEMPLATE_ID_LEN).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !shaped {
                    return Err(ConsentError::BadRequest(
                        "templateIds must be WeChat template ids".into(),
                    ));
                }
                let key = templates
                    .key_of(id)
                    .ok_or_else(|| ConsentError::UnknownTemplate(id.clone()))?;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    Ok(keys)
}

/// Records a report from `openid` (the session's caller): one credit per accepted key this
/// server sends and counts from the client, capped per user and template.
///
/// # Errors
/// See [`accepted_keys`]; store failures.
pub async fn record_consent(
    store: &Arc<dyn Store>,
    templates: &Templates,
    openid: &str,
    report: &ConsentReport,
    now: i64,
) -> Result<Recorded, ConsentError> {
    let mut out = Recorded::default();
    for key in accepted_keys(templates, report)? {
        let Some(template_id) = templates.id(key) else {
            out.skipped.push(Skipped {
                key: key.as_str(),
                reason: "notConfigured",
            });
            continue;
        };
        if !key.client_recorded() {
            out.skipped.push(Skipped {
                key: key.as_str(),
                reason: "countedFromPush",
            });
            continue;
        }
        let credits = subscribe_grants::add_capped(
            store,
            openid,
            template_id,
            now,
            subscribe_grants::CLIENT_CREDIT_CAP,
        )
        .await?;
        out.grants.push(Grant {
            key: key.as_str(),
            template_id: template_id.to_owned(),
            credits,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::collections::SUBSCRIBE_GRANTS;
    use proptest::prelude::*;

    fn templates() -> Templates {
        Templates::from_pairs([
            (TemplateKey::Shipping, "TPL_SHIP".to_owned()),
            (TemplateKey::PostNotice, "TPL_POST".to_owned()),
            (TemplateKey::Renewal, "TPL_RENEW".to_owned()),
        ])
    }

    fn results(pairs: &[(&str, &str)]) -> ConsentReport {
        ConsentReport::Results(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn keys_come_from_their_variables_and_empty_ones_are_unset() {
        let cfg = Config::from_vars([
            ("WEMINT_SHIPPING_TEMPLATE_ID", " TPL_SHIP "),
            ("WEMINT_RENEWAL_TEMPLATE_ID", "TPL_RENEW"),
            ("WEMINT_POST_NOTICE_TEMPLATE", ""),
        ]);
        let t = Templates::from_config(&cfg);
        assert_eq!(t.id(TemplateKey::Shipping), Some("TPL_SHIP"));
        assert_eq!(t.id(TemplateKey::Renewal), Some("TPL_RENEW"));
        assert_eq!(t.id(TemplateKey::PostNotice), None);
        assert_eq!(t.key_of("TPL_RENEW"), Some(TemplateKey::Renewal));
        assert_eq!(
            TemplateKey::parse("postNotice"),
            Some(TemplateKey::PostNotice)
        );
        assert_eq!(TemplateKey::parse("PostNotice"), None);
    }

    #[test]
    fn only_accept_answers_count() {
        let keys = accepted_keys(
            &templates(),
            &results(&[
                ("shipping", "acceptWithAlert"),
                ("renewal", "reject"),
                ("postNotice", "ban"),
            ]),
        )
        .unwrap();
        assert_eq!(keys, [TemplateKey::Shipping]);
    }

    #[test]
    fn bad_reports_are_refused_with_their_error() {
        let t = templates();
        let unknown = accepted_keys(&t, &results(&[("coupon", "accept")]));
        assert!(matches!(unknown, Err(ConsentError::UnknownTemplate(k)) if k == "coupon"));
        for bad in [
            results(&[]),
            results(&[("shipping", "")]),
            results(&[("shipping", "accept!")]),
            results(&[("shipping", "a".repeat(33).as_str())]),
            ConsentReport::TemplateIds(vec![]),
            ConsentReport::TemplateIds(vec!["bad id".into()]),
            ConsentReport::TemplateIds(vec!["T".into(); 6]),
        ] {
            assert!(
                matches!(accepted_keys(&t, &bad), Err(ConsentError::BadRequest(_))),
                "{bad:?}"
            );
        }
        let six: BTreeMap<String, String> = (0..6)
            .map(|i| (format!("k{i}"), "accept".to_owned()))
            .collect();
        assert!(matches!(
            accepted_keys(&t, &ConsentReport::Results(six)),
            Err(ConsentError::BadRequest(_))
        ));
        let foreign = accepted_keys(&t, &ConsentReport::TemplateIds(vec!["TPL_OTHER".into()]));
        assert!(matches!(foreign, Err(ConsentError::UnknownTemplate(id)) if id == "TPL_OTHER"));
    }

    #[tokio::test]
    async fn accepted_keys_add_credits_for_the_caller_and_skip_what_is_not_ours_to_count() {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let t = Templates::from_pairs([
            (TemplateKey::Renewal, "TPL_RENEW".to_owned()),
            (TemplateKey::PostNotice, "TPL_POST".to_owned()),
        ]);
        let report = results(&[
            ("renewal", "accept"),
            ("postNotice", "accept"),
            ("shipping", "accept"),
        ]);
        let r = record_consent(&store, &t, "o-alice", &report, 7)
            .await
            .unwrap();
        assert_eq!(
            r.grants,
            [Grant {
                key: "renewal",
                template_id: "TPL_RENEW".into(),
                credits: Some(1)
            }]
        );
        assert_eq!(
            r.skipped,
            [
                Skipped {
                    key: "postNotice",
                    reason: "countedFromPush"
                },
                Skipped {
                    key: "shipping",
                    reason: "notConfigured"
                },
            ]
        );
        assert!(
            store
                .get(SUBSCRIBE_GRANTS, "o-alice:TPL_POST")
                .await
                .unwrap()
                .is_none()
        );
        // The older form, by template id, counts the same way.
        let again = record_consent(
            &store,
            &t,
            "o-alice",
            &ConsentReport::TemplateIds(vec!["TPL_RENEW".into()]),
            8,
        )
        .await
        .unwrap();
        assert_eq!(again.grants[0].credits, Some(2));
    }

    #[tokio::test]
    async fn a_refused_report_changes_nothing() {
        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let report = results(&[("renewal", "accept"), ("coupon", "accept")]);
        let refused = record_consent(&store, &templates(), "o-alice", &report, 7).await;
        assert!(matches!(refused, Err(ConsentError::UnknownTemplate(_))));
        assert!(
            store
                .get(SUBSCRIBE_GRANTS, "o-alice:TPL_RENEW")
                .await
                .unwrap()
                .is_none()
        );
    }

    proptest! {
        /// Whatever a client sends, the check never panics, and what it accepts names only
        /// known keys with accept answers.
        #[test]
        fn fuzz_consent_reports(
            pairs in proptest::collection::btree_map(".{0,12}", ".{0,40}", 0..8),
            ids in proptest::collection::vec(".{0,140}", 0..8),
        ) {
            let t = templates();
            let report = ConsentReport::Results(pairs.clone());
            if let Ok(keys) = accepted_keys(&t, &report) {
                prop_assert!(!pairs.is_empty() && pairs.len() <= MAX_RESULTS);
                for k in keys {
                    prop_assert!(is_accept(&pairs[k.as_str()]));
                }
            }
            if let Ok(keys) = accepted_keys(&t, &ConsentReport::TemplateIds(ids.clone())) {
                for k in keys {
                    prop_assert!(ids.iter().any(|id| t.id(k) == Some(id.as_str())));
                }
            }
        }
    }
}
