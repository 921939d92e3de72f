//! `wemint-dev seed`: imports a catalog (products), plans and contents from one JSON file
//! into any store. Everything is validated before the first write, so a bad file changes
//! nothing; writes are upserts by key, so importing the same file twice changes nothing.
//!
//! File format (documented in `docs/emulator.md`):
//! `{"products": [Product…], "plans": [Plan…], "contents": [Content…]}` where `Product` and
//! `Plan` are the serde shapes of `wemint::domain`, and `Content` is `wemint::domain::content::Content`.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wemint::domain::catalog::{Product, ProductError};
use wemint::domain::subscription::Plan;
use wemint::store::{Filter, Store, StoreError, Update, UpdateOptions};

/// The seeded collections (re-exported from the registry for the suite's seed check).
pub use wemint::store::collections::{CONTENTS, PLANS, PRODUCTS};

/// Contents are `wemint::domain::content`'s model, the one `gatedContent` reads.
pub use wemint::domain::content::{Content, Lesson, UnlockedBy};

/// A seed file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Catalog entries.
    #[serde(default)]
    pub products: Vec<Product>,
    /// Plans.
    #[serde(default)]
    pub plans: Vec<Plan>,
    /// Contents.
    #[serde(default)]
    pub contents: Vec<Content>,
}

/// Why a seed could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file is not valid JSON of the seed shape.
    #[error("seed file is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    /// A product breaks a catalog rule.
    #[error(transparent)]
    Product(#[from] ProductError),
    /// Something else in the file is inconsistent.
    #[error("seed file is not valid: {0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many documents an import wrote, per collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    /// Products written.
    pub products: usize,
    /// Plans written.
    pub plans: usize,
    /// Contents written.
    pub contents: usize,
}

impl SeedFile {
    /// Parses a seed file.
    pub fn parse(bytes: &[u8]) -> Result<Self, SeedError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Checks every rule; nothing is written when this fails.
    pub fn validate(&self) -> Result<(), SeedError> {
        let mut skus = HashSet::new();
        for product in &self.products {
            product.validate()?;
            if !skus.insert(product.sku.as_str()) {
                return Err(SeedError::Invalid(format!(
                    "sku {} appears twice",
                    product.sku
                )));
            }
        }
        let mut plans = HashSet::new();
        for plan in &self.plans {
            if !valid_key(&plan.id) {
                return Err(SeedError::Invalid(format!(
                    "plan id `{}` must be 1-64 characters of [A-Za-z0-9_-.]",
                    plan.id
                )));
            }
            if plan.period_days == 0 || plan.title.is_empty() {
                return Err(SeedError::Invalid(format!(
                    "plan {}: needs a title and period_days > 0",
                    plan.id
                )));
            }
            if !plans.insert(plan.id.as_str()) {
                return Err(SeedError::Invalid(format!(
                    "plan {} appears twice",
                    plan.id
                )));
            }
        }
        for product in &self.products {
            use wemint::domain::catalog::ProductKind;
            match &product.kind {
                ProductKind::Membership { plan } | ProductKind::TenantPlan { plan }
                    if !plans.contains(plan.as_str()) =>
                {
                    return Err(SeedError::Invalid(format!(
                        "product {} refers to unknown plan {plan}",
                        product.sku
                    )));
                }
                _ => {}
            }
        }
        let mut ids = HashSet::new();
        for content in &self.contents {
            content
                .validate()
                .map_err(|e| SeedError::Invalid(e.to_string()))?;
            if !ids.insert(content.id.as_str()) {
                return Err(SeedError::Invalid(format!(
                    "content {} appears twice",
                    content.id
                )));
            }
            for sku in &content.unlocked_by.skus {
                if !skus.contains(sku.as_str()) {
                    return Err(SeedError::Invalid(format!(
                        "content {} is unlocked by unknown sku {sku}",
                        content.id
                    )));
                }
            }
            for plan in &content.unlocked_by.plans {
                if !plans.contains(plan.as_str()) {
                    return Err(SeedError::Invalid(format!(
                        "content {} is unlocked by unknown plan {plan}",
                        content.id
                    )));
                }
            }
        }
        for product in &self.products {
            if let wemint::domain::catalog::ProductKind::ContentUnlock { content } = &product.kind
                && !ids.contains(content.as_str())
            {
                return Err(SeedError::Invalid(format!(
                    "product {} unlocks unknown content {content}",
                    product.sku
                )));
            }
        }
        Ok(())
    }

    /// Validates, then upserts everything into `store`.
    pub async fn import(&self, store: &Arc<dyn Store>) -> Result<SeedReport, SeedError> {
        self.validate()?;
        let mut report = SeedReport::default();
        for product in &self.products {
            upsert(
                store,
                PRODUCTS,
                &product.sku,
                product,
                &["channel", "stock", "description"],
            )
            .await?;
            report.products += 1;
        }
        for plan in &self.plans {
            upsert(store, PLANS, &plan.id, plan, &["seats"]).await?;
            report.plans += 1;
        }
        for content in &self.contents {
            upsert(
                store,
                CONTENTS,
                &content.id,
                content,
                &["lessons", "mediaFileId"],
            )
            .await?;
            report.contents += 1;
        }
        Ok(report)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Writes `value` as the document `_id = key`: every field set, optional fields the new
/// definition leaves out removed, so the stored document equals the file's.
async fn upsert<T: Serialize>(
    store: &Arc<dyn Store>,
    collection: &str,
    key: &str,
    value: &T,
    optional: &[&str],
) -> Result<(), SeedError> {
    let Value::Object(fields) = serde_json::to_value(value)? else {
        return Err(SeedError::Invalid(format!(
            "{collection}/{key} is not an object"
        )));
    };
    let mut update = Update::new();
    for (name, field) in &fields {
        update = update.set(name.clone(), field.clone());
    }
    for name in optional {
        if !fields.contains_key(*name) {
            update = update.unset(*name);
        }
    }
    // Contents are published when first imported (unless the file dates them); re-imports
    // keep the date.
    if collection == CONTENTS && !fields.contains_key("publishedAt") {
        update = update.set_on_insert("publishedAt", now_secs());
    }
    store
        .update_one(
            collection,
            &Filter::id(key),
            &update,
            UpdateOptions::upsert(),
        )
        .await?;
    Ok(())
}

/// The documents of a collection, for `seed` output and the console.
pub fn strip_id(mut doc: Value) -> Value {
    if let Some(map) = doc.as_object_mut() {
        map.remove("_id");
    }
    doc
}

/// The demo seed shipped with the emulator.
pub const DEMO_SEED: &str = include_str!("../demo/seed.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_seed_is_valid() {
        let seed = SeedFile::parse(DEMO_SEED.as_bytes()).unwrap();
        seed.validate().unwrap();
        assert!(seed.products.len() >= 5);
        assert!(!seed.plans.is_empty() && !seed.contents.is_empty());
    }

    #[test]
    fn dangling_references_are_rejected() {
        let mut seed = SeedFile::parse(DEMO_SEED.as_bytes()).unwrap();
        seed.contents[0].unlocked_by.plans.push("nope".into());
        assert!(matches!(seed.validate(), Err(SeedError::Invalid(m)) if m.contains("nope")));
        assert!(SeedFile::parse(br#"{"products":[],"extra":1}"#).is_err());
    }
}
