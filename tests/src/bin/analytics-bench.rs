//! Analytics figures for `scripts/bench.sh` (issue 20):
//!
//! 1. ingestion: the `analytics` binary given (`--bin`, the release build) in `http` mode over
//!    a SQLite file store, `--connections` concurrent clients sending `track` batches of
//!    `--batch` valid events (each request from its own signed-in user, so the per-user
//!    minute cap does not bind) for `--secs` seconds; events accepted per second;
//! 2. aggregation: `--events` raw events (batches of 50 from 10,000 users, one day) and a
//!    paid fact per 100 events stored in a SQLite file (synchronous=normal), then that day
//!    aggregated by the same binary's `aggregateRun`; its wall time and the binary's peak RSS.
//!
//! Prints `ingestion: N events/s …` and `aggregation: N events in X s …` (the lines bench.sh
//! picks up).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use wemint::analytics::Analytics;
use wemint::clock::{Clock as _, SharedClock, SystemClock};
use wemint::identity::{SessionClaims, SessionSigner};
use wemint::store::collections::{ANALYTICS_EVENTS, ANALYTICS_FACTS, USERS};
use wemint_e2e::{HttpInstance, SESSION_SECRET};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    bin: PathBuf,
    secs: u64,
    connections: usize,
    batch: usize,
    events: u64,
}

fn args() -> Result<Args, BoxError> {
    let mut out = Args {
        bin: PathBuf::from("target/release/analytics"),
        secs: 5,
        connections: 16,
        batch: 50,
        events: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bin" => out.bin = value.into(),
            "--secs" => out.secs = value.parse()?,
            "--connections" => out.connections = value.parse()?,
            "--batch" => out.batch = value.parse()?,
            "--events" => out.events = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(out)
}

fn batch_body(n: usize, i: u64) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|k| match k % 4 {
            0 => json!({"name": "page_view", "at": 0, "props": {"page": "pages/index/index", "durationMs": 1200}}),
            1 => json!({"name": "product_view", "props": {"sku": format!("sku-{}", (i + k as u64) % 40)}}),
            2 => json!({"name": "add_to_cart", "props": {"sku": format!("sku-{}", i % 40), "qty": 1}}),
            _ => json!({"name": "checkout_start", "props": {"skus": [format!("sku-{}", i % 40)], "channel": "wxpay"}}),
        })
        .collect();
    json!({ "events": events })
}

async fn ingestion(args: &Args, dir: &std::path::Path) -> Result<(), BoxError> {
    let store = format!("sqlite://{}", dir.join("ingest.db").display());
    let env = [
        ("WEMINT_STORE", store.as_str()),
        ("WEMINT_SESSION_SECRET", SESSION_SECRET),
        ("WEMINT_LOG", "warn"),
    ];
    let server = HttpInstance::start(&args.bin, &env)?;
    let url = server.url("/track");
    let signer = Arc::new(SessionSigner::new(SESSION_SECRET.as_bytes(), 3600)?);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let accepted = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(batch_body(args.batch, 0).to_string());
    // Warm-up: the store's tables and the instance's init.
    for c in 0..args.connections as u64 {
        post(&client, &url, &signer, &format!("o-warm-{c}"), body.clone()).await?;
    }
    let start = Instant::now();
    let stop = start + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (client, url, signer, body) =
            (client.clone(), url.clone(), signer.clone(), body.clone());
        let (accepted, requests, failures) = (accepted.clone(), requests.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < stop {
                let openid = format!("o-bench-{c}-{i}");
                i += 1;
                match post(&client, &url, &signer, &openid, body.clone()).await {
                    Ok(n) => {
                        accepted.fetch_add(n, Ordering::Relaxed);
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let events = accepted.load(Ordering::Relaxed);
    println!(
        "ingestion: {:.0} events/s ({events} events accepted in {} requests of {} in {secs:.1} s, {} connections, {} failed; HTTP mode, SQLite file)",
        events as f64 / secs,
        requests.load(Ordering::Relaxed),
        args.batch,
        args.connections,
        failures.load(Ordering::Relaxed),
    );
    Ok(())
}

/// One `track` call; the events accepted.
async fn post(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    signer: &SessionSigner,
    openid: &str,
    body: Bytes,
) -> Result<u64, BoxError> {
    let token = signer.issue(
        SessionClaims::new(openid, "wx-bench-app"),
        SystemClock.now_unix(),
    );
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body))?;
    let resp = client.request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let reply: Value = serde_json::from_slice(&bytes)?;
    let data = if reply.get("ok").is_some() {
        &reply["data"]
    } else {
        &reply
    };
    match data["accepted"].as_u64() {
        Some(n) if status.is_success() => Ok(n),
        _ => Err(format!("HTTP {status}: {reply}").into()),
    }
}

async fn aggregation(args: &Args, dir: &std::path::Path) -> Result<(), BoxError> {
    // The input is stored by this process at synchronous=normal (WAL: durable across a crash of
    // the process, not of the machine) so that storing it does not take minutes of fsyncs; the
    // day is then aggregated by the binary itself, as the daily timer or `aggregateRun` would.
    let file = dir.join("aggregate.db");
    let store =
        wemint::store::open(&format!("sqlite://{}?synchronous=normal", file.display())).await?;
    wemint::store::bootstrap(store.as_ref()).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let day = Analytics::new(store.clone(), clock.clone(), 90).today();
    let now = clock.now_unix();
    let setup = Instant::now();
    let per_doc = 50u64;
    let docs = args.events.div_ceil(per_doc);
    for i in 0..docs {
        let events = batch_body(per_doc as usize, i)["events"].clone();
        store
            .insert(
                ANALYTICS_EVENTS,
                json!({"_id": format!("raw-{i:08}"), "openid": format!("o-{}", i % 10_000),
                    "day": day, "receivedAt": now, "events": events}),
            )
            .await?;
        if i % 2 == 0 {
            store
                .insert(
                    ANALYTICS_FACTS,
                    json!({"_id": format!("paid:ord-{i}"), "kind": "paid", "day": day, "at": now,
                        "openid": format!("o-{}", i % 10_000), "orderId": format!("ord-{i}"),
                        "channel": "wxpay", "amountFen": 990,
                        "items": [{"sku": format!("sku-{}", i % 40), "qty": 1, "fen": 990}]}),
                )
                .await?;
        }
    }
    store
        .insert(
            USERS,
            json!({"_id": ADMIN, "openid": ADMIN, "appid": "wx-bench-app", "role": "admin",
                "createdAt": now, "lastLoginAt": now}),
        )
        .await?;
    drop(store);
    let setup = setup.elapsed().as_secs_f64();

    let uri = format!("sqlite://{}", file.display());
    let env = [
        ("WEMINT_STORE", uri.as_str()),
        ("WEMINT_SESSION_SECRET", SESSION_SECRET),
        ("WEMINT_LOG", "warn"),
    ];
    let server = HttpInstance::start(&args.bin, &env)?;
    let signer = SessionSigner::new(SESSION_SECRET.as_bytes(), 3600)?;
    let token = signer.issue(SessionClaims::new(ADMIN, "wx-bench-app"), now);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::post(server.url("/aggregateRun"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(json!({"date": day}).to_string())))?;
    let start = Instant::now();
    let resp = client.request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let secs = start.elapsed().as_secs_f64();
    let reply: Value = serde_json::from_slice(&bytes)?;
    let report = reply.get("data").unwrap_or(&reply);
    let (Some(events), Some(facts)) = (report["events"].as_u64(), report["facts"].as_u64()) else {
        return Err(format!("aggregateRun: HTTP {status}: {reply}").into());
    };
    let peak = server
        .peak_rss_kib()
        .map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "aggregation: {events} events in {secs:.2} s ({facts} facts, 10000 users, one day; the release binary's aggregateRun over HTTP, peak RSS {peak}; SQLite file; input stored in {setup:.1} s beforehand)"
    );
    Ok(())
}

/// The administrator who calls `aggregateRun`.
const ADMIN: &str = "o-bench-admin";

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let args = args()?;
        let dir = std::env::temp_dir().join(format!(
            "wemint-analytics-bench-{}",
            wemint::pay::random_string(8)
        ));
        std::fs::create_dir_all(&dir)?;
        let out = async {
            ingestion(&args, &dir).await?;
            aggregation(&args, &dir).await
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        out
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("analytics-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
