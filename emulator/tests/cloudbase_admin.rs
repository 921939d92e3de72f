//! `wemint-dev provision` and `wemint-dev probe` against the emulator's stand-in for the
//! CloudBase document-database API: provisioning creates every registry collection and index
//! and finds them all on a second run; the probe reports what the environment supports, and
//! its answer follows the stand-in's `findAndModify` switch.

use wemint::store::cloudbase::CloudbaseConfig;
use wemint::store::collections;
use wemint_emulator::cloudbase_admin::{Found, Gateway, Verdict, probe, provision};
use wemint_emulator::standins::cloudbase_db::{ServedAlone, StandInOptions};

const KEY: &str = "test-admin-api-key-provision";

struct StandIn {
    served: ServedAlone,
    gateway: Gateway,
}

async fn stand_in(options: StandInOptions) -> StandIn {
    let served = ServedAlone::start(options).await;
    let var = |name: &str| match name {
        "WEMINT_CLOUDBASE_API_KEY" => Some(KEY.to_owned()),
        "WEMINT_CLOUDBASE_ENDPOINT" => Some(served.endpoint.clone()),
        _ => None,
    };
    let config = CloudbaseConfig::from_uri("cloudbase://wemint-test-1a2b", var).unwrap();
    StandIn {
        gateway: Gateway::new(&config).unwrap(),
        served,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_creates_everything_then_finds_everything() {
    let s = stand_in(StandInOptions::new(KEY)).await;
    let registry = collections::all();
    let index_count: usize = registry.iter().map(|(_, specs)| specs.len()).sum();

    let mut out = Vec::new();
    let first = provision(&s.gateway, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(first.collections.len(), registry.len(), "{text}");
    assert_eq!(first.indexes.len(), index_count, "{text}");
    assert_eq!(
        first.count(Found::Created),
        registry.len() + index_count,
        "{text}"
    );
    for (name, specs) in &registry {
        assert!(
            text.contains(&format!("collection {name:<26} created")),
            "{name} missing from:\n{text}"
        );
        for spec in specs {
            assert!(text.contains(&spec.name), "{name}.{} missing", spec.name);
        }
    }
    // Unique indexes are labelled as such (they make the money path idempotent).
    assert!(
        first
            .indexes
            .iter()
            .any(|(c, _, unique, _)| c == collections::ORDERS && *unique),
        "{text}"
    );

    let mut out = Vec::new();
    let second = provision(&s.gateway, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(second.count(Found::Created), 0, "{text}");
    assert_eq!(
        second.count(Found::Found),
        registry.len() + index_count,
        "{text}"
    );
    assert!(text.contains("0 created"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_find_and_modify_when_the_environment_accepts_it() {
    let s = stand_in(StandInOptions::new(KEY)).await;
    let mut out = Vec::new();
    let p = probe(&s.gateway, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(p.find_and_modify, Some(Verdict::Yes), "{text}");
    assert_eq!(p.create_indexes, Some(Verdict::Yes), "{text}");
    assert_eq!(p.duplicate_recognised, Some(Verdict::Yes), "{text}");
    assert_eq!(p.long_round_trip, Some(Verdict::Yes), "{text}");
    assert_eq!(p.page_limit, Some(1000), "{text}");
    assert_eq!(
        p.verdict("unique index violation via PATCH"),
        Some(Verdict::Yes),
        "{text}"
    );
    assert_eq!(
        p.verdict("remove with an empty filter refused"),
        Some(Verdict::Yes),
        "{text}"
    );
    assert!(text.contains("[yes] findAndModify via /commands"), "{text}");
    assert!(
        text.contains("update_one uses /commands findAndModify"),
        "{text}"
    );
    assert!(
        text.contains("{\"$numberLong\":\"9007199254740993\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_the_patch_fallback_without_find_and_modify() {
    let mut options = StandInOptions::new(KEY);
    options.find_and_modify = false;
    options.max_page = 100;
    let s = stand_in(options).await;
    let mut out = Vec::new();
    let p = probe(&s.gateway, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(p.find_and_modify, Some(Verdict::No), "{text}");
    assert_eq!(p.page_limit, Some(100), "{text}");
    assert!(text.contains("[no ] findAndModify via /commands"), "{text}");
    assert!(text.contains("DATABASE_INVALID_OPERRATOR"), "{text}");
    assert!(
        text.contains("update_one falls back to the conditional PATCH"),
        "{text}"
    );
    // The registry collections were only read: the scratch collection got every write (its
    // creation and the `409` check), and it is gone afterwards.
    assert_eq!(
        s.served.db.stats().get("createCollection"),
        Some(&2),
        "{text}"
    );
    assert_eq!(
        p.verdict("cleanup (/commands drop)"),
        Some(Verdict::Yes),
        "{text}"
    );
    let users = s
        .gateway
        .send(
            reqwest::Method::GET,
            &format!("/collections/{}/documents?limit=1", collections::USERS),
            None,
        )
        .await
        .unwrap();
    assert_eq!(users.code(), "DATABASE_COLLECTION_NOT_EXIST", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_stops_on_a_refused_key_without_echoing_it() {
    let s = stand_in(StandInOptions::new("another-key")).await;
    let mut out = Vec::new();
    let err = probe(&s.gateway, &mut out).await.unwrap_err();
    assert!(err.contains("refused the key"), "{err}");
    assert!(err.contains("WEMINT_CLOUDBASE_API_KEY"), "{err}");
    assert!(!err.contains(KEY), "{err}");
}
