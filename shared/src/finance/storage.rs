//! Bills stored by day, so a re-run reads the stored copy instead of downloading again (and
//! the file stays available after WeChat Pay's three months).
//!
//! The gzip bytes, checked against the announced SHA-1 before anything is stored, go into
//! `bill_chunks` in pieces of at most [`CHUNK_BYTES`] (base64, so each document stays far
//! under the document-size limits of every backend: 16 MiB for MongoDB, and the CloudBase
//! document database's own limit); the `bill_files` document (`<date>:<kind>`) is written
//! last and is what makes the copy count, so a crash halfway leaves nothing a re-run would
//! trust. A day without a bill is stored as `status: "empty"`.

use super::{BillSource, FinanceError};
use crate::pay::v3::bills::{self, BillAnswer, BillKind};
use crate::store::{Filter, FindOptions, Store, Update, UpdateOptions, collections as c};
use base64::Engine;

/// Raw bytes per stored chunk (256 KiB once base64-encoded).
pub const CHUNK_BYTES: usize = 192 << 10;

/// A bill of one day, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBill {
    /// The gzip file (checked), or `None` when WeChat Pay had no bill that day.
    pub gzip: Option<Vec<u8>>,
}

/// Where a bill came from.
#[derive(Debug)]
pub enum Fetched {
    /// Still being generated at WeChat Pay.
    NotReady,
    /// Read from the store.
    Stored(StoredBill),
    /// Downloaded, checked and stored now.
    Downloaded(StoredBill),
}

fn file_id(kind: BillKind, date: &str) -> String {
    format!("{date}:{}", kind.as_str())
}

/// The stored bill, if a complete copy is stored.
pub async fn load(
    store: &dyn Store,
    kind: BillKind,
    date: &str,
) -> Result<Option<StoredBill>, FinanceError> {
    let id = file_id(kind, date);
    let Some(file) = store.get(c::BILL_FILES, &id).await? else {
        return Ok(None);
    };
    if file["status"] == "empty" {
        return Ok(Some(StoredBill { gzip: None }));
    }
    let chunks = file["chunks"].as_u64().unwrap_or(0);
    let size = file["bytes"].as_u64().unwrap_or(0);
    let mut gzip = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let docs = store
        .find(
            c::BILL_CHUNKS,
            &Filter::eq("file", id.as_str()),
            &FindOptions::new().sort_asc("index").limit(chunks.max(1)),
        )
        .await?;
    if docs.len() as u64 != chunks {
        return Ok(None);
    }
    for doc in docs {
        let data = doc["data"].as_str().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| FinanceError::BadRequest(format!("stored bill chunk: {e}")))?;
        gzip.extend_from_slice(&bytes);
    }
    if gzip.len() as u64 != size {
        return Ok(None);
    }
    Ok(Some(StoredBill { gzip: Some(gzip) }))
}

/// Stores a checked bill (chunks first, then the file document).
pub async fn save(
    store: &dyn Store,
    kind: BillKind,
    date: &str,
    bill: &StoredBill,
    hash: &str,
    now: i64,
) -> Result<(), FinanceError> {
    let id = file_id(kind, date);
    let mut update = Update::new()
        .set("date", date)
        .set("kind", kind.as_str())
        .set("storedAt", now);
    match &bill.gzip {
        None => update = update.set("status", "empty"),
        Some(gz) => {
            let mut index: u64 = 0;
            for piece in gz.chunks(CHUNK_BYTES) {
                let chunk_id = format!("{id}:{index:05}");
                store
                    .update_one(
                        c::BILL_CHUNKS,
                        &Filter::id(chunk_id.as_str()),
                        &Update::new()
                            .set("file", id.as_str())
                            .set("index", index)
                            .set(
                                "data",
                                base64::engine::general_purpose::STANDARD.encode(piece),
                            ),
                        UpdateOptions::upsert(),
                    )
                    .await?;
                index += 1;
            }
            update = update
                .set("status", "stored")
                .set("hashType", "SHA1")
                .set("hashValue", hash)
                .set("bytes", gz.len() as u64)
                .set("chunks", index);
        }
    }
    store
        .update_one(
            c::BILL_FILES,
            &Filter::id(id.as_str()),
            &update,
            UpdateOptions::upsert(),
        )
        .await?;
    Ok(())
}

/// The stored copy, or a download (checked, then stored). A hash mismatch or a broken gzip
/// refuses the file and stores nothing.
pub async fn fetch(
    store: &dyn Store,
    source: Option<&dyn BillSource>,
    kind: BillKind,
    date: &str,
    now: i64,
) -> Result<Fetched, FinanceError> {
    if let Some(bill) = load(store, kind, date).await? {
        return Ok(Fetched::Stored(bill));
    }
    let source = source.ok_or(FinanceError::Unavailable)?;
    let bill = match source.bill(kind, date).await? {
        BillAnswer::NotReady => return Ok(Fetched::NotReady),
        BillAnswer::NoBill => {
            let bill = StoredBill { gzip: None };
            save(store, kind, date, &bill, "", now).await?;
            bill
        }
        BillAnswer::Ready(link) => {
            let gz = source.download(&link).await?;
            if let Err(e) = bills::check_gzip(&gz, &link) {
                tracing::warn!(date, kind = kind.as_str(), error = %e, "bill refused");
                return Err(e.into());
            }
            let bill = StoredBill {
                gzip: Some(gz.to_vec()),
            };
            save(
                store,
                kind,
                date,
                &bill,
                &link.hash_value.to_ascii_lowercase(),
                now,
            )
            .await?;
            bill
        }
    };
    tracing::info!(date, kind = kind.as_str(), "bill stored");
    Ok(Fetched::Downloaded(bill))
}
