//! Peer comparison (scripts/bench.sh): wemint's `payNotify` (and `createOrder`) against the
//! Node handler in `bench/node`, measured in one run, alternating, and printed as one table.
//!
//! Usage: `peer-bench --notify BIN --create BIN --node DIR [--rounds N] [--seconds S]
//! [--connections C] [--starts N] [--paid-seconds S] [--paid-orders N] [--work DIR]`
//!
//! 1. Start-up under the SCF runtime API emulator: process start → `init/ready` and peak RSS,
//!    `--starts` times each, alternating.
//! 2. Warm invocation time in the SCF event mode (what SCF bills), for a notification and a
//!    checkout, and the GB-seconds of a million of each at the memory `cloudbaserc.json`
//!    configures.
//! 3. HTTP mode throughput under `wrk` (one fresh signed notification replayed over
//!    `--connections` connections, `--rounds` alternating rounds of `--seconds`): wemint does
//!    its store read (the order is unknown: 404, as for the Node peer no order exists either);
//!    wemint also pinned to one CPU with `taskset`, for the scaling from 1 to 2 cores.
//! 4. The paid path on SQLite in its durable setting (`synchronous=FULL`): `--paid-orders`
//!    unpaid orders, each with its own valid notification; `wrk` delivers them for
//!    `--paid-seconds`; then every order is checked: paid and granted exactly once, or
//!    untouched. Store writes and commits are counted from the writer's `sqlite commit` log
//!    lines, fsyncs with `strace` when it is installed, and the disk's own fsync rate is probed.
//!
//! Needs `wrk` and `node` on PATH (scripts/bench.sh installs them). Times are printed, never
//! asserted.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wemint::identity::{DataKey, SessionClaims, SessionSigner};
use wemint::pay::v3::server::{
    MerchantIdentity, NotificationSpec, PlatformSigner, SignedNotification, build_notification,
};
use wemint::pay::v3::{ApiV3Key, RsaSigningKey};
use wemint::store::{Filter, FindOptions, Store, collections};
use wemint_e2e::{RuntimeApi, SESSION_SECRET, ScfInstance, StandIn, StartOptions, VECTORS};
use wemint_emulator::http::{Request, Response};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    notify: PathBuf,
    create: PathBuf,
    node: PathBuf,
    rounds: usize,
    seconds: u64,
    connections: usize,
    starts: usize,
    invocations: usize,
    paid_seconds: u64,
    paid_orders: usize,
    work: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        notify: PathBuf::new(),
        create: PathBuf::new(),
        node: PathBuf::new(),
        rounds: 3,
        seconds: 5,
        connections: 16,
        starts: 20,
        invocations: 200,
        paid_seconds: 5,
        paid_orders: 12_000,
        work: std::env::temp_dir().join(format!("wemint-peer-bench-{}", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--notify" => args.notify = value.clone().into(),
            "--create" => args.create = value.clone().into(),
            "--node" => args.node = value.clone().into(),
            "--rounds" => args.rounds = number()? as usize,
            "--seconds" => args.seconds = number()?,
            "--connections" => args.connections = number()? as usize,
            "--starts" => args.starts = number()? as usize,
            "--invocations" => args.invocations = number()? as usize,
            "--paid-seconds" => args.paid_seconds = number()?,
            "--paid-orders" => args.paid_orders = number()? as usize,
            "--work" => args.work = value.clone().into(),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.notify.as_os_str().is_empty()
        || args.create.as_os_str().is_empty()
        || args.node.as_os_str().is_empty()
    {
        return Err("usage: peer-bench --notify BIN --create BIN --node DIR [options]".into());
    }
    Ok(args)
}

fn now() -> i64 {
    use wemint::clock::Clock as _;
    wemint::clock::SystemClock.now_unix()
}

fn vector(name: &str) -> String {
    std::fs::read_to_string(format!("{VECTORS}/{name}"))
        .unwrap_or_else(|e| panic!("test vector {name}: {e}"))
}

fn common(name: &str) -> String {
    let common: Value = serde_json::from_str(&vector("common.json")).expect("common.json");
    common[name].as_str().expect("common.json field").to_owned()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Signs notifications as WeChat Pay does (test-only key from the vectors).
struct Platform {
    signer: PlatformSigner,
    key: ApiV3Key,
}

impl Platform {
    fn new() -> Self {
        Self {
            signer: PlatformSigner::new(
                common("public_key_id"),
                RsaSigningKey::from_pkcs8(&vector("keys/wechatpay_public_key_private.pem"))
                    .expect("platform key"),
            ),
            key: ApiV3Key::new(&common("apiv3_key")).expect("APIv3 key"),
        }
    }

    fn paid(&self, out_trade_no: &str, total: i64, payer: &str) -> SignedNotification {
        let resource = json!({
            "appid": common("appid"), "mchid": common("mchid"), "out_trade_no": out_trade_no,
            "transaction_id": format!("4200{out_trade_no}"), "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "trade_state_desc": "paid", "bank_type": "OTHERS",
            "success_time": "2026-11-24T08:00:00+08:00", "payer": {"openid": payer},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
        });
        build_notification(
            &NotificationSpec {
                id: &format!("EV-{}", wemint::pay::random_string(24)),
                create_time: "2026-11-24T08:00:00+08:00",
                event_type: "TRANSACTION.SUCCESS",
                summary: "payment succeeded",
                original_type: "transaction",
                resource_nonce: &wemint::pay::random_string(12),
                timestamp: now(),
                nonce: &wemint::pay::random_string(32),
            },
            &resource,
            &self.key,
            &self.signer,
        )
        .expect("sign a notification")
    }
}

fn headers(n: &SignedNotification) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = n
        .headers
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    h.push(("Content-Type".into(), "application/json".into()));
    h
}

/// The CloudBase HTTP access event carrying a notification.
fn access_event(n: &SignedNotification) -> Value {
    let headers: serde_json::Map<String, Value> = headers(n)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "httpMethod": "POST", "path": "/payNotify", "headers": headers,
        "body": String::from_utf8_lossy(&n.body), "isBase64Encoded": false,
    })
}

/// A Lua string literal that survives any content (wrk scripts).
fn lua_string(s: &str) -> String {
    let mut level = 0;
    while s.contains(&format!("]{}]", "=".repeat(level))) {
        level += 1;
    }
    let eq = "=".repeat(level);
    format!("[{eq}[{s}]{eq}]")
}

/// A wrk script replaying one notification.
fn replay_script(n: &SignedNotification) -> String {
    let mut lua = String::from("wrk.method = \"POST\"\nwrk.path = \"/payNotify\"\n");
    for (k, v) in headers(n) {
        let _ = writeln!(
            lua,
            "wrk.headers[ {} ] = {}",
            lua_string(&k),
            lua_string(&v)
        );
    }
    let _ = writeln!(
        lua,
        "wrk.body = {}",
        lua_string(&String::from_utf8_lossy(&n.body))
    );
    lua
}

/// A wrk script sending each line of `$PAID_FILE` once, threads taking every k-th line; when
/// its share runs out a thread repeats its last one (a redelivery, applied once).
const PAID_SCRIPT: &str = r#"
local counter = 0
function setup(thread) thread:set("id", counter); counter = counter + 1 end
local reqs, n, k, stride = {}, 0, 0, 1
function init(args)
  stride = tonumber(args[1])
  local f = assert(io.open(os.getenv("PAID_FILE"), "r"))
  local i = 0
  for line in f:lines() do
    if i % stride == id then
      local fields = {}
      for field in string.gmatch(line, "[^\t]+") do fields[#fields + 1] = field end
      local h = {}
      for j = 2, #fields - 1, 2 do h[fields[j]] = fields[j + 1] end
      n = n + 1
      reqs[n] = wrk.format("POST", "/payNotify", h, fields[1])
    end
    i = i + 1
  end
  f:close()
end
function request()
  k = k + 1
  if k > n then return reqs[n] end
  return reqs[k]
end
"#;

struct WrkResult {
    requests: u64,
    seconds: f64,
    non_2xx: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn parse_ms(text: &str) -> f64 {
    let t = text.trim();
    let (num, scale) = if let Some(v) = t.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = t.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (t, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * scale
}

fn wrk(
    url: &str,
    script: &Path,
    connections: usize,
    seconds: u64,
    extra_env: &[(&str, &str)],
    script_args: &[&str],
) -> Result<WrkResult, Error> {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .arg("--")
        .args(script_args)
        .envs(extra_env.iter().copied())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut r = WrkResult {
        requests: 0,
        seconds: 0.0,
        non_2xx: 0,
        rate: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [n, "requests", "in", secs, ..] => {
                r.requests = n.parse().unwrap_or(0);
                r.seconds = secs
                    .trim_end_matches(',')
                    .trim_end_matches('s')
                    .parse()
                    .unwrap_or(0.0);
            }
            ["Requests/sec:", v] => r.rate = v.parse().unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", v] => r.non_2xx = v.parse().unwrap_or(0),
            ["50%", v] => r.p50_ms = parse_ms(v),
            ["99%", v] => r.p99_ms = parse_ms(v),
            _ => {}
        }
    }
    if r.requests == 0 {
        return Err(format!("wrk reported no requests: {text}").into());
    }
    Ok(r)
}

/// Store writes and commits from a function's log, at `wemint::store::sqlite=debug`: one
/// `sqlite commit` line per committed batch, with its number of writes.
fn count_commits(log: &Path) -> Result<(u64, u64), Error> {
    let (mut writes, mut commits) = (0, 0);
    for line in std::fs::read_to_string(log)?.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &entry["fields"];
        if fields["message"] == "sqlite commit" && fields["committed"] == json!(true) {
            writes += fields["writes"].as_u64().unwrap_or(0);
            commits += 1;
        }
    }
    Ok((writes, commits))
}

/// fsyncs per second on the disk holding `dir`: 4 KiB written and `fdatasync`ed, one at a time,
/// for about a second (what one SQLite commit in WAL mode with synchronous=FULL waits for).
fn fsync_rate(dir: &Path) -> Result<f64, Error> {
    use std::io::Write as _;
    let path = dir.join("fsync.probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0u8; 4096];
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(1) || n < 20 {
        file.write_all(&block)?;
        file.sync_data()?;
        n += 1;
    }
    let rate = f64::from(n) / started.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// A server process in HTTP mode (killed on drop).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `program args…` with `env` (on top of PATH only) and `PORT`; waits until it listens.
    /// Its stdout (the function's log) goes to `log` when given, else nowhere.
    fn start(
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        pin_to_cpu0: bool,
        log: Option<&Path>,
    ) -> Result<Self, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = if pin_to_cpu0 {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(match log {
                Some(path) => Stdio::from(std::fs::File::create(path)?),
                None => Stdio::null(),
            })
            .stderr(Stdio::null());
        let mut child = cmd.spawn()?;
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(format!("{} exited with {status}", program.display()).into());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Self { child, port });
            }
            if Instant::now() > give_up {
                let _ = child.kill();
                return Err(format!("{} never listened", program.display()).into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/payNotify", self.port)
    }

    /// Asks the process to stop (SIGTERM through `kill`) and waits, so wrappers such as
    /// strace write their summary.
    fn stop(mut self) {
        // A wrapper (strace) ends once the function it runs ends: stop the function first.
        let _ = Command::new("pkill")
            .args(["-TERM", "-P", &self.child.id().to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let give_up = Instant::now() + Duration::from_secs(10);
        while Instant::now() < give_up {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The functions' environment: the test vectors' merchant, a store, a WeChat Pay base.
fn environment(store: &str, pay_base: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = wemint_e2e::function_env()
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "WEMINT_STORE" | "WECHATPAY_API_BASE" | "WECHAT_API_BASE"
            )
        })
        .collect();
    env.push(("WEMINT_STORE".into(), store.into()));
    env.push(("WECHATPAY_API_BASE".into(), pay_base.into()));
    env.push(("WECHAT_API_BASE".into(), pay_base.into()));
    env.push(("WEMINT_LOG".into(), "warn".into()));
    env
}

/// A WeChat Pay stand-in answering JSAPI prepay (merchant signature checked, answer signed).
struct PayStandIn {
    merchant: MerchantIdentity,
    signer: PlatformSigner,
}

fn pay_standin(s: &PayStandIn, req: &Request) -> Response {
    let target = req.path_and_query();
    // The WeChat API calls of a fulfilment (access token, shipping upload) are answered OK, so
    // the paid path measures wemint rather than retries against a closed port.
    if target.starts_with("/cgi-bin/") {
        return Response::json(
            http::StatusCode::OK,
            &json!({"access_token": "bench-access-token", "expires_in": 7200}),
        );
    }
    if target.starts_with("/wxa/") {
        return Response::json(http::StatusCode::OK, &json!({"errcode": 0, "errmsg": "ok"}));
    }
    let auth = req.header("authorization").unwrap_or_default().to_owned();
    let (status, body) =
        match s
            .merchant
            .verify_request(&auth, req.method.as_str(), &target, &req.body, now())
        {
            Err(e) => (
                http::StatusCode::UNAUTHORIZED,
                json!({"code": "SIGN_ERROR", "message": e.to_string()}),
            ),
            Ok(_) if target.starts_with("/v3/pay/transactions/jsapi") => (
                http::StatusCode::OK,
                json!({"prepay_id": format!("wx{}", wemint::pay::random_string(24))}),
            ),
            Ok(_) => (
                http::StatusCode::NOT_FOUND,
                json!({"code": "NOT_FOUND", "message": target}),
            ),
        };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::bytes(status, "application/json", body.clone());
    if let Ok(h) = s.signer.sign(&body, now(), &wemint::pay::random_string(32)) {
        for (k, v) in h.pairs() {
            resp = resp.with_header(k, &v);
        }
    }
    resp.with_header("Request-ID", "bench-1")
}

const GUIDE: &str = r#"{"_id":"guide","sku":"guide","title":"Brewing guide","priceFen":990,"kind":{"type":"content_unlock","content":"brew-guide"},"channel":"wxpay","active":true}"#;

async fn seed_catalog(store: &Arc<dyn Store>) -> Result<(), Error> {
    wemint::store::bootstrap(store.as_ref()).await?;
    store
        .insert(collections::PRODUCTS, serde_json::from_str(GUIDE)?)
        .await?;
    Ok(())
}

async fn seed_user(store: &Arc<dyn Store>, openid: &str) -> Result<(), Error> {
    let data_key = DataKey::from_bytes(b"0123456789abcdef0123456789abcdef")?;
    store
        .insert(
            collections::USERS,
            json!({"_id": openid, "openid": openid, "appid": common("appid"), "role": "user",
                "sessionKey": data_key.seal(openid, format!("sk-{openid}").as_bytes())?,
                "sessionKeyAt": now(), "createdAt": now(), "lastLoginAt": now()}),
        )
        .await?;
    Ok(())
}

fn unpaid_order(i: usize) -> (String, String, Value) {
    let id = format!("bench-order-{i:06}");
    let no = format!("WMBENCH{i:012}");
    let buyer = format!("o-bench-{i:06}");
    let t = now();
    let doc = json!({
        "_id": id, "outTradeNo": no, "openid": buyer, "appid": common("appid"),
        "clientRequestId": format!("bench-{i}"), "status": "created", "channel": "wxpay",
        "items": [{"sku": "guide", "title": "Brewing guide", "quantity": 1, "unitPriceFen": 990,
            "kind": {"type": "content_unlock", "content": "brew-guide"}}],
        "totalFen": 990, "createdAt": t, "expiresAt": t + 1800,
        "refundedFen": 0, "refundingFen": 0, "reservations": [], "stockReleased": false,
    });
    (no, buyer, doc)
}

/// Cold start and peak RSS under the SCF runtime API, alternating.
async fn starts(
    args: &Args,
    env: &[(String, String)],
) -> Result<HashMap<&'static str, (f64, f64)>, Error> {
    let node_bootstrap = args.node.join("bootstrap");
    let mut ready: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut rss: HashMap<&str, f64> = HashMap::new();
    for _ in 0..args.starts {
        for (label, path) in [("wemint", &args.notify), ("node", &node_bootstrap)] {
            let options = StartOptions {
                api: RuntimeApi::Scf,
                env: env.to_vec(),
                memory_limit_mb: 256,
                ready_timeout: Duration::from_secs(20),
                ..StartOptions::default()
            };
            let f = ScfInstance::start(path, options).await?;
            ready
                .entry(label)
                .or_default()
                .push(f.ready_after().as_secs_f64() * 1000.0);
            let out = f.invoke_json(&json!({"action": "health"})).await?;
            if out["ok"] != json!(true) {
                return Err(format!("{label}: health failed: {out}").into());
            }
            let mib = f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
            let peak = rss.entry(label).or_insert(0.0);
            *peak = peak.max(mib);
        }
    }
    Ok(ready
        .into_iter()
        .map(|(k, mut v)| (k, (median(&mut v), rss[k])))
        .collect())
}

/// Mean warm invocation time (ms) in the SCF event mode: `make(i)` builds the i-th event.
async fn invocation_ms(
    path: &Path,
    env: &[(String, String)],
    count: usize,
    make: impl Fn(usize) -> Value,
    check: impl Fn(&Value) -> bool,
) -> Result<f64, Error> {
    let options = StartOptions {
        api: RuntimeApi::Scf,
        env: env.to_vec(),
        memory_limit_mb: 256,
        time_limit_ms: 10_000,
        ready_timeout: Duration::from_secs(20),
    };
    let f = ScfInstance::start(path, options).await?;
    let mut times = Vec::with_capacity(count);
    for i in 0..count + 10 {
        let event = make(i);
        let started = Instant::now();
        let out = f.invoke_json(&event).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if !check(&out) {
            return Err(format!("{}: unexpected reply {out}", path.display()).into());
        }
        if i >= 10 {
            times.push(ms);
        }
    }
    Ok(mean(&times))
}

fn memory_mb(function: &str) -> f64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../cloudbaserc.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| {
            v["functions"].as_array().and_then(|fs| {
                fs.iter()
                    .find(|f| f["name"] == function)
                    .and_then(|f| f["memorySize"].as_f64())
            })
        })
        .unwrap_or(256.0)
}

/// GB-seconds of a million invocations of `ms` at `mb`.
fn gb_seconds_per_million(mb: f64, ms: f64) -> f64 {
    mb / 1024.0 * ms / 1000.0 * 1e6
}

#[allow(clippy::too_many_lines)]
async fn run(args: Args) -> Result<(), Error> {
    std::fs::create_dir_all(&args.work)?;
    let platform = Arc::new(Platform::new());
    let node_index = args.node.join("index.js");
    let node = PathBuf::from("node");

    // A WeChat Pay stand-in for checkouts.
    let standin = StandIn::serving(
        Arc::new(PayStandIn {
            merchant: MerchantIdentity::from_pem(
                &common("mchid"),
                &common("merchant_serial_no"),
                &vector("keys/merchant_public_key.pem"),
            )?,
            signer: PlatformSigner::new(
                common("public_key_id"),
                RsaSigningKey::from_pkcs8(&vector("keys/wechatpay_public_key_private.pem"))?,
            ),
        }),
        pay_standin,
    )
    .await;

    // The durable store the functions use (one file, synchronous=FULL, the default).
    let db = args.work.join("store.db");
    let store_uri = format!("sqlite:{}", db.display());
    let store = wemint::store::open(&store_uri).await?;
    seed_catalog(&store).await?;
    let checkout_buyers = args.invocations + 10;
    for i in 0..checkout_buyers {
        seed_user(&store, &format!("o-buyer-{i:04}")).await?;
    }
    let env = environment(&store_uri, &standin.base());

    // ---- 1. start-up ------------------------------------------------------------------
    eprintln!(
        "peer-bench: {} starts each under the SCF runtime API…",
        args.starts
    );
    let started = starts(&args, &env).await?;

    // ---- 2. billed durations ----------------------------------------------------------
    eprintln!("peer-bench: warm invocation times (SCF event mode)…");
    // One notification for an order that does not exist: both verify, decrypt and parse;
    // wemint also reads its store (and answers 404), the Node peer has no store.
    let unknown = platform.paid("WMBENCHUNKNOWN000001", 990, "o-bench-unknown");
    let unknown_event = access_event(&unknown);
    let status_is = |want: &'static [i64]| {
        move |out: &Value| {
            out["statusCode"]
                .as_i64()
                .is_some_and(|s| want.contains(&s))
        }
    };
    let notify_ms_wemint = invocation_ms(
        &args.notify,
        &env,
        args.invocations,
        |_| unknown_event.clone(),
        status_is(&[404]),
    )
    .await?;
    let notify_ms_node = invocation_ms(
        &args.node.join("bootstrap"),
        &env,
        args.invocations,
        |_| unknown_event.clone(),
        status_is(&[204]),
    )
    .await?;
    let signer = SessionSigner::new(SESSION_SECRET.as_bytes(), 3600)?;
    let checkout = |i: usize| {
        let openid = format!("o-buyer-{i:04}");
        json!({"action": "create", "clientRequestId": format!("bench-{i}-{}", wemint::pay::random_string(8)),
            "items": [{"sku": "guide", "quantity": 1}],
            "token": signer.issue(SessionClaims::new(openid.clone(), common("appid")), now()),
            "userInfo": {"openId": openid, "appId": common("appid")}})
    };
    let ok = |out: &Value| out["ok"] == json!(true);
    let checkout_ms_wemint =
        invocation_ms(&args.create, &env, args.invocations, checkout, ok).await?;
    let checkout_ms_node = invocation_ms(
        &args.node.join("bootstrap"),
        &env,
        args.invocations,
        checkout,
        ok,
    )
    .await?;

    // ---- 3. HTTP throughput -----------------------------------------------------------
    eprintln!(
        "peer-bench: HTTP throughput, {} rounds of {} s, {} connections…",
        args.rounds, args.seconds, args.connections
    );
    let replay = args.work.join("replay.lua");
    // Fresh (signed now), so the 5-minute window holds for the whole run.
    let fresh = platform.paid("WMBENCHUNKNOWN000002", 990, "o-bench-unknown");
    std::fs::write(&replay, replay_script(&fresh))?;
    let wemint_server = Server::start(&args.notify, &[], &env, false, None)?;
    let node_server = Server::start(
        &node,
        &[node_index.to_str().unwrap_or_default()],
        &env,
        false,
        None,
    )?;
    let mut rates: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut latency: HashMap<&str, (f64, f64)> = HashMap::new();
    // Warm-up (JIT for Node; the unknown-order event recorded for wemint).
    for url in [wemint_server.url(), node_server.url()] {
        wrk(&url, &replay, args.connections, 1, &[], &[])?;
    }
    for round in 0..args.rounds {
        let order: [(&str, String); 2] = if round % 2 == 0 {
            [("wemint", wemint_server.url()), ("node", node_server.url())]
        } else {
            [("node", node_server.url()), ("wemint", wemint_server.url())]
        };
        for (label, url) in order {
            let r = wrk(&url, &replay, args.connections, args.seconds, &[], &[])?;
            let expected_non_2xx = label == "wemint";
            if expected_non_2xx != (r.non_2xx == r.requests) {
                return Err(format!(
                    "{label}: {} of {} answers were not 2xx",
                    r.non_2xx, r.requests
                )
                .into());
            }
            rates.entry(label).or_default().push(r.rate);
            latency.insert(label, (r.p50_ms, r.p99_ms));
        }
    }
    drop(wemint_server);
    drop(node_server);
    // One core: the same binary pinned to CPU 0 (available_parallelism = 1: current thread).
    let one_core = Server::start(&args.notify, &[], &env, true, None)?;
    wrk(&one_core.url(), &replay, args.connections, 1, &[], &[])?;
    let mut one_core_rates = Vec::new();
    for _ in 0..args.rounds {
        one_core_rates.push(
            wrk(
                &one_core.url(),
                &replay,
                args.connections,
                args.seconds,
                &[],
                &[],
            )?
            .rate,
        );
    }
    drop(one_core);

    // ---- 4. the paid path, durable ----------------------------------------------------
    let fsync_rate = fsync_rate(&args.work)?;
    eprintln!(
        "peer-bench: paid path: {} unpaid orders and their notifications…",
        args.paid_orders
    );
    let paid_db = args.work.join("paid.db");
    let paid_uri = format!("sqlite:{}", paid_db.display());
    let paid_store = wemint::store::open(&paid_uri).await?;
    seed_catalog(&paid_store).await?;
    let orders: Vec<(String, String, Value)> = (0..args.paid_orders).map(unpaid_order).collect();
    {
        let mut inserts = Vec::new();
        for chunk in orders.chunks(512) {
            for (_, _, doc) in chunk {
                let store = Arc::clone(&paid_store);
                let doc = doc.clone();
                inserts.push(tokio::spawn(async move {
                    store.insert(collections::ORDERS, doc).await
                }));
            }
            for insert in inserts.drain(..) {
                insert.await??;
            }
        }
    }
    // Signed in parallel (one RSA signature each).
    let lines = {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = orders.len().div_ceil(threads);
        let mut handles = Vec::new();
        for chunk in orders.chunks(per.max(1)) {
            let chunk: Vec<(String, String)> = chunk
                .iter()
                .map(|(no, b, _)| (no.clone(), b.clone()))
                .collect();
            let platform = Arc::clone(&platform);
            handles.push(std::thread::spawn(move || {
                chunk
                    .iter()
                    .map(|(no, buyer)| {
                        let n = platform.paid(no, 990, buyer);
                        let mut line = String::from_utf8_lossy(&n.body).into_owned();
                        for (k, v) in headers(&n) {
                            line.push('\t');
                            line.push_str(&k);
                            line.push('\t');
                            line.push_str(&v);
                        }
                        line
                    })
                    .collect::<Vec<String>>()
            }));
        }
        let mut lines = Vec::new();
        for h in handles {
            lines.extend(h.join().map_err(|_| "signing thread panicked")?);
        }
        lines
    };
    let paid_file = args.work.join("paid.txt");
    std::fs::write(&paid_file, lines.join("\n") + "\n")?;
    let paid_script = args.work.join("paid.lua");
    std::fs::write(&paid_script, PAID_SCRIPT)?;
    // The writer's commit lines (`sqlite commit`, at debug) count the store writes.
    let mut paid_env = environment(&paid_uri, &standin.base());
    for (k, v) in &mut paid_env {
        if k == "WEMINT_LOG" {
            *v = "warn,wemint::store::sqlite=debug".into();
        }
    }
    let paid_log = args.work.join("paid.log");
    let strace_out = args.work.join("strace.txt");
    let have_strace = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let server = if have_strace {
        Server::start(
            Path::new("strace"),
            &[
                "-f",
                "--seccomp-bpf",
                "-c",
                "-e",
                "trace=fsync,fdatasync",
                "-o",
                strace_out.to_str().unwrap_or_default(),
                args.notify.to_str().unwrap_or_default(),
            ],
            &paid_env,
            false,
            Some(&paid_log),
        )?
    } else {
        Server::start(&args.notify, &[], &paid_env, false, Some(&paid_log))?
    };
    eprintln!(
        "peer-bench: paid path: delivering for {} s…",
        args.paid_seconds
    );
    let paid_run = wrk(
        &server.url(),
        &paid_script,
        args.connections * 4,
        args.paid_seconds,
        &[("PAID_FILE", paid_file.to_str().unwrap_or_default())],
        &["2"],
    )?;
    // Requests still in flight when wrk stopped finish before the function is stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.stop();
    let fsyncs: Option<u64> = std::fs::read_to_string(&strace_out).ok().map(|t| {
        t.lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() >= 5 && (w.last() == Some(&"fsync") || w.last() == Some(&"fdatasync")))
                    .then(|| w[3].parse::<u64>().ok())
                    .flatten()
            })
            .sum()
    });

    let (store_writes, commits) = count_commits(&paid_log)?;

    // Verify: each order untouched, or paid and granted exactly once.
    let all = paid_store
        .find(collections::ORDERS, &Filter::All, &FindOptions::new())
        .await?;
    let fulfilled: Vec<&Value> = all.iter().filter(|o| o["status"] == "fulfilled").collect();
    let untouched = all.iter().filter(|o| o["status"] == "created").count();
    let others = all.len() - fulfilled.len() - untouched;
    let grants = paid_store
        .find(collections::ENTITLEMENTS, &Filter::All, &FindOptions::new())
        .await?;
    let mut granted_orders: HashMap<String, usize> = HashMap::new();
    for g in &grants {
        // The grant records each order that gave it under `orders.o_<order id>`.
        if let Some(markers) = g["orders"].as_object() {
            for key in markers.keys().filter_map(|k| k.strip_prefix("o_")) {
                *granted_orders.entry(key.to_owned()).or_default() += 1;
            }
        }
    }
    let events = paid_store
        .count(
            collections::PAYMENT_EVENTS,
            &Filter::eq("result", "applied"),
        )
        .await?;
    let paid_once = fulfilled.iter().all(|o| {
        o["_id"]
            .as_str()
            .is_some_and(|id| granted_orders.get(id) == Some(&1))
    }) && granted_orders.values().all(|&n| n == 1)
        && events as usize <= fulfilled.len() + others
        // Stopped mid-payment (the function was stopped with requests in flight): `paid`,
        // which reconcile finishes; never anything else.
        && all
            .iter()
            .all(|o| matches!(o["status"].as_str(), Some("created" | "paid" | "fulfilled")));
    let paid_rate = fulfilled.len() as f64 / paid_run.seconds.max(0.001);

    // ---- the table --------------------------------------------------------------------
    let w_rate = median(&mut rates.get("wemint").cloned().unwrap_or_default());
    let n_rate = median(&mut rates.get("node").cloned().unwrap_or_default());
    let one_rate = median(&mut one_core_rates);
    let (w_ready, w_rss) = started["wemint"];
    let (n_ready, n_rss) = started["node"];
    let notify_mb = memory_mb("payNotify");
    let create_mb = memory_mb("createOrder");
    let row = |figure: &str, w: String, n: String, ratio: String| {
        println!("| {figure:<58} | {w:>14} | {n:>14} | {ratio:>16} |");
    };
    println!();
    println!(
        "| {:<58} | {:>14} | {:>14} | {:>16} |",
        "figure", "wemint", "Node peer", "wemint vs Node"
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(60),
        "-".repeat(16),
        "-".repeat(16),
        "-".repeat(18)
    );
    row(
        &format!(
            "start → init/ready, median of {} (SCF runtime API)",
            args.starts
        ),
        format!("{w_ready:.1} ms"),
        format!("{n_ready:.1} ms"),
        format!("{:.0}× faster", n_ready / w_ready),
    );
    row(
        "peak RSS (max over the starts)",
        format!("{w_rss:.1} MiB"),
        format!("{n_rss:.1} MiB"),
        format!("{:.1}× smaller", n_rss / w_rss),
    );
    row(
        &format!(
            "notifications/s, HTTP, {} conns, median of {} (2 CPUs)",
            args.connections, args.rounds
        ),
        format!("{w_rate:.0}/s"),
        format!("{n_rate:.0}/s"),
        format!("{:.2}×", w_rate / n_rate),
    );
    if let (Some(w), Some(n)) = (latency.get("wemint"), latency.get("node")) {
        row(
            "  latency p50 / p99 (last round)",
            format!("{:.2}/{:.2} ms", w.0, w.1),
            format!("{:.2}/{:.2} ms", n.0, n.1),
            String::new(),
        );
    }
    row(
        "notifications/s, HTTP, wemint on 1 CPU (taskset -c 0)",
        format!("{one_rate:.0}/s"),
        "—".into(),
        format!("2 CPUs: {:.2}× of 1", w_rate / one_rate),
    );
    row(
        "notification, warm invocation (SCF event mode), mean",
        format!("{notify_ms_wemint:.3} ms"),
        format!("{notify_ms_node:.3} ms"),
        format!("{:.1}× less", notify_ms_node / notify_ms_wemint),
    );
    row(
        &format!("  GB-s per million notifications at {notify_mb:.0} MB"),
        format!("{:.0}", gb_seconds_per_million(notify_mb, notify_ms_wemint)),
        format!("{:.0}", gb_seconds_per_million(notify_mb, notify_ms_node)),
        String::new(),
    );
    row(
        "checkout (createOrder), warm invocation, mean",
        format!("{checkout_ms_wemint:.3} ms"),
        format!("{checkout_ms_node:.3} ms"),
        format!("{:.1}× less", checkout_ms_node / checkout_ms_wemint),
    );
    row(
        &format!("  GB-s per million checkouts at {create_mb:.0} MB"),
        format!(
            "{:.0}",
            gb_seconds_per_million(create_mb, checkout_ms_wemint)
        ),
        format!("{:.0}", gb_seconds_per_million(create_mb, checkout_ms_node)),
        String::new(),
    );
    println!();
    println!(
        "paid path, HTTP, SQLite file with synchronous=FULL, {} connections, {} s:",
        args.connections * 4,
        args.paid_seconds
    );
    println!(
        "  {} of {} orders paid and granted in {:.2} s: {paid_rate:.0} payments/s ({} requests, {} not 2xx)",
        fulfilled.len(),
        all.len(),
        paid_run.seconds,
        paid_run.requests,
        paid_run.non_2xx
    );
    let per_payment = |n: u64| {
        if fulfilled.is_empty() {
            "—".to_owned()
        } else {
            format!("{:.2}", n as f64 / fulfilled.len() as f64)
        }
    };
    println!(
        "  store writes: {store_writes} = {} per payment, in {commits} commits (group commit: {:.1} writes each)",
        per_payment(store_writes),
        store_writes as f64 / commits.max(1) as f64
    );
    println!(
        "  fsyncs: {}; this disk: {fsync_rate:.0} fsync/s (4 KiB write + fdatasync, one at a time)",
        match fsyncs {
            Some(n) if !fulfilled.is_empty() => format!(
                "{n} for {} payments = {:.2} per payment (group commit)",
                fulfilled.len(),
                n as f64 / fulfilled.len() as f64
            ),
            _ => "not counted (strace not installed)".into(),
        }
    );
    println!(
        "  after the run: {} fulfilled, {untouched} untouched, {others} paid and stopped mid-grant (left to reconcile); {} grants, {} applied payment events: {}",
        fulfilled.len(),
        grants.len(),
        events,
        if paid_once {
            "each order paid exactly once"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "\nCost: SCF bills configured memory × execution time (GB-s); the times above are warm \
         invocations through the local SCF runtime API emulator, the memory is cloudbaserc.json's."
    );
    let _ = std::fs::remove_dir_all(&args.work);
    if paid_once {
        Ok(())
    } else {
        Err("the paid path check failed".into())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
