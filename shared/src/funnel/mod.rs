//! The Official Account as a funnel into the Mini Program (docs/wechat.md, "Official
//! Account"): touches, attribution of paid orders, and template messages to followers.
//!
//! - [`touches`]: a QR scan (`subscribe`/`SCAN` with a scene), a menu click or a
//!   template-message open is a *touch* (`oa_touches`), recorded once per event. The first
//!   paid order after touches claims them (each touch attributes at most one order) and
//!   carries `attribution {touches, first, last}`; [`touches::report`] sums conversions and
//!   revenue per scene, menu item and template.
//! - [`notices`]: the hook other code calls when something a follower should hear about
//!   happens ([`notices::notify`]: order shipped, refund settled, renewal due, new content),
//!   and the budgeted sender reconcile runs ([`notices::send_due`]): only to people who follow
//!   the account now, within the rate limits, each outcome recorded, retryable failures
//!   retried with backoff.
//!
//! Identity comes from [`crate::identity::people`]: a Mini Program buyer and a follower are
//! the same person only through their UnionID.

pub mod notices;
pub mod touches;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::store::StoreError;

/// A short, stable, URL-safe id derived from `seed` (SHA-256, 24 hex digits).
pub(crate) fn derived_id(prefix: &str, seed: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes());
    format!("{prefix}{}", &hex::encode(digest.as_ref())[..24])
}

/// One configured template (`WX_OA_TEMPLATES`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TemplateSpec {
    /// The template id in the account's library.
    pub id: String,
    /// Template field name → notice field name (`{"amount2": "amount"}`). Without it the
    /// notice's fields are sent under their own names.
    #[serde(default)]
    pub fields: Option<BTreeMap<String, String>>,
}

/// The Official Account side of the funnel (`WX_OA_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunnelSettings {
    /// The Mini Program template messages open.
    pub mini_program_appid: String,
    /// Notice kind (`refund_settled`, …) → template.
    pub templates: BTreeMap<String, TemplateSpec>,
    /// Template messages per minute for the whole account (`WX_OA_SEND_PER_MINUTE`, 600).
    pub per_minute: u32,
    /// Template messages per follower per day (`WX_OA_SEND_PER_FOLLOWER_DAY`, 5).
    pub per_follower_day: u32,
}

/// Why the funnel settings are unusable.
#[derive(Debug, thiserror::Error)]
#[error("WX_OA_TEMPLATES: {0}")]
pub struct TemplatesError(String);

impl FunnelSettings {
    /// Settings from `WX_OA_TEMPLATES` (JSON: kind → `{id, fields?}`) and the limits.
    ///
    /// # Errors
    /// Unreadable JSON, an unknown kind or an empty id.
    pub fn parse(
        mini_program_appid: &str,
        templates: Option<&str>,
        per_minute: Option<u32>,
        per_follower_day: Option<u32>,
    ) -> Result<Self, TemplatesError> {
        let templates: BTreeMap<String, TemplateSpec> = match templates {
            Some(t) if !t.trim().is_empty() => {
                serde_json::from_str(t).map_err(|e| TemplatesError(e.to_string()))?
            }
            _ => BTreeMap::new(),
        };
        for (kind, spec) in &templates {
            if notices::NoticeKind::parse(kind).is_none() {
                return Err(TemplatesError(format!(
                    "unknown notice kind `{kind}` (order_shipped, refund_settled, renewal_due, new_content)"
                )));
            }
            if spec.id.trim().is_empty() {
                return Err(TemplatesError(format!("`{kind}` has an empty id")));
            }
        }
        Ok(Self {
            mini_program_appid: mini_program_appid.to_owned(),
            templates,
            per_minute: per_minute.unwrap_or(600).max(1),
            per_follower_day: per_follower_day.unwrap_or(5).max(1),
        })
    }
}

/// A funnel failure.
#[derive(Debug, thiserror::Error)]
pub enum FunnelError {
    /// The store failed.
    #[error("funnel store: {0}")]
    Store(#[from] StoreError),
}

impl From<FunnelError> for crate::runtime::ApiError {
    fn from(e: FunnelError) -> Self {
        crate::runtime::ApiError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_setting() {
        let s = FunnelSettings::parse(
            "wxmp",
            Some(r#"{"refund_settled": {"id": "T1", "fields": {"amount2": "amount"}}}"#),
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.templates["refund_settled"].id, "T1");
        assert_eq!(s.per_minute, 600);
        assert!(
            FunnelSettings::parse("wxmp", Some(r#"{"nope": {"id": "T"}}"#), None, None).is_err()
        );
        assert!(FunnelSettings::parse("wxmp", Some("[1"), None, None).is_err());
        assert!(
            FunnelSettings::parse("wxmp", None, None, None)
                .unwrap()
                .templates
                .is_empty()
        );
        assert_eq!(derived_id("n_", "x").len(), 26);
    }
}
