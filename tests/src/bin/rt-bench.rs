//! Realtime benchmark (scripts/bench.sh): the real `realtime` binary over a SQLite file store.
//!
//! - **Many sockets, one process:** `--sockets N` (default 1000) sockets of N users, each
//!   subscribed to its own `orders`; reports the process's resident memory per idle socket,
//!   then publishes `--rate` events a second (default 200, each for one user) for
//!   `--secs` seconds straight into the store and reports the delay from the store write to
//!   the socket receiving it (p50, p99, max).
//! - **One socket per process:** `--starts K` (default 20) fresh processes, each: spawn →
//!   listening → socket → subscribe resuming before a stored event → that event; reports the
//!   median and p95 time from spawn to the event. Then one process left idle past its busy
//!   window reports its store reads per idle minute (from `/stats`).
//! - **A fleet of one-socket processes:** `--fleet F` (default 100) processes at once, one
//!   socket each (its own user); one event per user published at 20 a second; reports the
//!   delay from the store write to the socket (p50, p99, max) with every process tailing and
//!   numbering the same stream.
//!
//! Usage: `rt-bench --bin PATH [--sockets N] [--rate R] [--secs S] [--starts K] [--fleet F]
//! [--idle-secs I] [--synchronous normal|full]`. The store is a SQLite file, by default
//! without an fsync per commit (`synchronous=normal`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wemint::events::{Draft, Events, kinds};
use wemint::identity::{SessionClaims, SessionSigner};
use wemint_e2e::{SESSION_SECRET, function_env};

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

struct Args {
    bin: PathBuf,
    sockets: usize,
    rate: u64,
    secs: u64,
    starts: usize,
    idle_secs: u64,
    fleet: usize,
    synchronous: String,
}

fn args() -> Args {
    let mut a = Args {
        bin: PathBuf::new(),
        sockets: 1000,
        rate: 200,
        secs: 10,
        starts: 20,
        idle_secs: 60,
        fleet: 100,
        synchronous: "normal".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--bin" => a.bin = PathBuf::from(v),
            "--sockets" => a.sockets = v.parse().unwrap_or(a.sockets),
            "--rate" => a.rate = v.parse().unwrap_or(a.rate),
            "--secs" => a.secs = v.parse().unwrap_or(a.secs),
            "--starts" => a.starts = v.parse().unwrap_or(a.starts),
            "--idle-secs" => a.idle_secs = v.parse().unwrap_or(a.idle_secs),
            "--fleet" => a.fleet = v.parse().unwrap_or(a.fleet),
            "--synchronous" => a.synchronous = v,
            _ => {}
        }
    }
    a
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

fn token(signer: &SessionSigner, openid: &str) -> String {
    let now = now_micros() / 1_000_000;
    signer.issue(SessionClaims::new(openid, "wxbench"), now)
}

struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &PathBuf, env: &[(String, String)]) -> Proc {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new(bin)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PORT", port.to_string())
        .env("WEMINT_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn realtime");
    Proc { child, port }
}

async fn connect(port: u16, token: &str) -> Socket {
    loop {
        if let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)).await {
            let mut req = format!("ws://127.0.0.1:{port}/")
                .into_client_request()
                .unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let (s, _) = tokio_tungstenite::client_async(req, tcp)
                .await
                .expect("handshake");
            return s;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn next_json(s: &mut Socket) -> Value {
    loop {
        match s.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

async fn subscribe(s: &mut Socket, after: Option<i64>) {
    let mut m = json!({"op": "subscribe", "topics": ["orders"]});
    if let Some(a) = after {
        m["after"] = json!(a);
    }
    s.send(Message::text(m.to_string())).await.unwrap();
    loop {
        if next_json(s).await["type"] == "subscribed" {
            return;
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn stats(port: u16) -> Value {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("{}");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let dir = std::env::temp_dir().join(format!("wemint-rt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Commits without an fsync each: on this machine's disk a fully synchronous SQLite file
    // takes ~8 ms a commit, so the publisher alone could not write 200 events a second; what
    // is measured is the realtime path, not the disk (`--synchronous full` to see it).
    let uri = format!(
        "sqlite:{}?synchronous={}",
        dir.join("store.db").display(),
        a.synchronous
    );
    let store = wemint::store::open(&uri).await.unwrap();
    wemint::store::bootstrap(store.as_ref()).await.unwrap();
    let events = Events::new(store.clone());
    let mut env: Vec<(String, String)> = function_env()
        .into_iter()
        .filter(|(k, _)| k != "WEMINT_STORE")
        .collect();
    env.push(("WEMINT_STORE".into(), uri.clone()));
    let signer = Arc::new(SessionSigner::new(SESSION_SECRET.as_bytes(), 3600).unwrap());

    // --- Many sockets, one process -----------------------------------------------------------
    let p = spawn(&a.bin, &env);
    let pid = p.child.id();
    let mut probe = connect(p.port, &token(&signer, "probe")).await;
    let _ = next_json(&mut probe).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_rss = rss_kib(pid);
    let mut sockets = Vec::with_capacity(a.sockets);
    for i in 0..a.sockets {
        let mut s = connect(p.port, &token(&signer, &format!("u{i}"))).await;
        let _ = next_json(&mut s).await;
        subscribe(&mut s, None).await;
        sockets.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded_rss = rss_kib(pid);
    let per_socket = (loaded_rss.saturating_sub(base_rss)) as f64 * 1024.0 / a.sockets as f64;
    println!(
        "realtime many: {} sockets open in one process; RSS {} KiB idle → {} KiB: {:.1} KB per idle socket",
        a.sockets,
        base_rss,
        loaded_rss,
        per_socket / 1000.0
    );

    let mut rx = delays_of(sockets);
    let total = a.rate * a.secs;
    let started = Instant::now();
    for n in 0..total {
        let due = started + Duration::from_micros(n * 1_000_000 / a.rate);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let user = format!("u{}", n as usize % a.sockets);
        let draft = Draft::new(kinds::ORDER_PAID, format!("bench:{n}"))
            .for_user(user)
            .order(format!("b{n}"))
            .data(json!({"sentAt": now_micros()}));
        events.publish(draft).await.unwrap();
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let delays = collect(&mut rx, total as usize, Duration::from_secs(10)).await;
    println!(
        "realtime many: {} events at {:.0}/s (asked {}/s), {} delivered; store write → socket: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total,
        total as f64 / publish_secs,
        a.rate,
        delays.len(),
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    drop(p);

    // --- One socket per process --------------------------------------------------------------
    let mut starts = Vec::new();
    for i in 0..a.starts {
        let user = format!("solo{i}");
        // Where the stream is before the event (what is pending gets numbered first): the
        // event is numbered above it.
        let before = events.settle().await.unwrap();
        events
            .publish(
                Draft::new(kinds::ORDER_PAID, format!("solo:{i}"))
                    .for_user(user.clone())
                    .order(format!("s{i}")),
            )
            .await
            .unwrap();
        let tok = token(&signer, &user);
        let t0 = Instant::now();
        let p = spawn(&a.bin, &env);
        let mut s = connect(p.port, &tok).await;
        let _ = next_json(&mut s).await;
        subscribe(&mut s, Some(before)).await;
        loop {
            if next_json(&mut s).await["type"] == "events" {
                break;
            }
        }
        starts.push(t0.elapsed().as_secs_f64() * 1000.0);
        drop(p);
    }
    starts.sort_by(|x, y| x.total_cmp(y));
    println!(
        "realtime one: process start → first event over {} starts: median {:.1} ms, p95 {:.1} ms",
        starts.len(),
        pct(&starts, 0.5),
        pct(&starts, 0.95)
    );

    fleet(&a, &env, &signer, &events).await;

    let p = spawn(&a.bin, &env);
    let mut s = connect(p.port, &token(&signer, "idle")).await;
    let _ = next_json(&mut s).await;
    subscribe(&mut s, None).await;
    // Past the busy window (30 s after the subscribe), then count reads over the idle time.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let r0 = stats(p.port).await["reads"].as_u64().unwrap_or(0);
    let keep = tokio::spawn(async move {
        // Answers pings like a client would (reading keeps the socket's pongs flowing).
        while let Some(Ok(_)) = s.next().await {}
    });
    tokio::time::sleep(Duration::from_secs(a.idle_secs)).await;
    let r1 = stats(p.port).await["reads"].as_u64().unwrap_or(0);
    keep.abort();
    println!(
        "realtime one: store reads per idle connection-minute: {:.1} ({} reads in {} s)",
        (r1 - r0) as f64 * 60.0 / a.idle_secs as f64,
        r1 - r0,
        a.idle_secs
    );
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `a.fleet` processes with one socket each; one event per socket; store write → socket delays.
async fn fleet(a: &Args, env: &[(String, String)], signer: &SessionSigner, events: &Events) {
    if a.fleet == 0 {
        return;
    }
    let mut procs = Vec::with_capacity(a.fleet);
    for _ in 0..a.fleet {
        procs.push(spawn(&a.bin, env));
    }
    let mut sockets = Vec::with_capacity(a.fleet);
    for (i, p) in procs.iter().enumerate() {
        let mut s = connect(p.port, &token(signer, &format!("fleet{i}"))).await;
        let _ = next_json(&mut s).await;
        subscribe(&mut s, None).await;
        sockets.push(s);
    }
    let mut rx = delays_of(sockets);
    let started = Instant::now();
    for i in 0..a.fleet {
        let due = started + Duration::from_millis(i as u64 * 50);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let draft = Draft::new(kinds::ORDER_PAID, format!("fleet:{i}"))
            .for_user(format!("fleet{i}"))
            .order(format!("f{i}"))
            .data(json!({"sentAt": now_micros()}));
        events.publish(draft).await.unwrap();
    }
    let delays = collect(&mut rx, a.fleet, Duration::from_secs(15)).await;
    println!(
        "realtime fleet: {} processes, one socket each, {} of {} events delivered; store write → socket: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        a.fleet,
        delays.len(),
        a.fleet,
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    drop(procs);
}

/// Reads every socket and sends, for each event carrying `data.sentAt`, its store write →
/// socket delay in milliseconds.
fn delays_of(sockets: Vec<Socket>) -> tokio::sync::mpsc::UnboundedReceiver<f64> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    for mut s in sockets {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = s.next().await {
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    let got = now_micros();
                    for e in v["events"].as_array().into_iter().flatten() {
                        if let Some(sent) = e["data"]["sentAt"].as_i64() {
                            let _ = tx.send((got - sent) as f64 / 1000.0);
                        }
                    }
                }
            }
        });
    }
    rx
}

/// Up to `n` delays from `rx` (waiting at most `wait` in all), sorted.
async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<f64>,
    n: usize,
    wait: Duration,
) -> Vec<f64> {
    let mut delays = Vec::with_capacity(n);
    let deadline = Instant::now() + wait;
    while delays.len() < n && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some(d)) => delays.push(d),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    delays.sort_by(|x, y| x.total_cmp(y));
    delays
}
