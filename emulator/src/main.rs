//! `wemint-dev`: the local suite. `wemint-dev help` lists the commands.

use std::path::PathBuf;
use std::process::ExitCode;

use wemint_emulator::functions::FUNCTIONS;
use wemint_emulator::seed::SeedFile;
use wemint_emulator::suite::{Suite, SuiteOptions};

const HELP: &str = "\
wemint-dev: WeChat, WeChat Pay and CloudBase on 127.0.0.1, over an embedded store.

USAGE:
  wemint-dev [up] [OPTIONS]        start the suite (default command)
  wemint-dev env [OPTIONS]         print the environment the functions get (KEY=VALUE)
  wemint-dev seed --store URI FILE import products, plans and contents (idempotent)
  wemint-dev demo [--bin-dir DIR] [--store cloudbase]
                                   run the money flow end to end on a fresh suite
  wemint-dev provision --store cloudbase://ENV
                                   create every collection and index of the registry in a
                                   CloudBase environment (idempotent; prints created/found)
  wemint-dev probe --store cloudbase://ENV
                                   first-contact checks against a CloudBase environment: what
                                   it supports (findAndModify, createIndexes, page size, …);
                                   writes only into a scratch collection it cleans up
  wemint-dev help

OPTIONS (up, env):
  --dir DIR            state directory (default .wemint): keys, dev.db, storage
  --port PORT          port on 127.0.0.1 (default 8787; 0 = any free port)
  --store URI          store URI (default sqlite:DIR/dev.db); `cloudbase` runs the functions
                       on the cloudbase:// backend against the suite's CloudBase database
                       stand-in (which serves sqlite:DIR/dev.db)
  --retry-factor F     multiply WeChat's notification retry delays (default 0.001)
  --bin-dir DIR        where the function binaries are (default: next to wemint-dev)
  --no-seed            do not seed the demo catalog into an empty store
";

/// `--store cloudbase`: the functions use `cloudbase://` against the suite's stand-in.
const CLOUDBASE: &str = "cloudbase";

struct Args {
    command: String,
    dir: PathBuf,
    port: u16,
    store: Option<String>,
    retry_factor: f64,
    bin_dir: Option<PathBuf>,
    seed: bool,
    positional: Vec<String>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        command: "up".into(),
        dir: PathBuf::from(".wemint"),
        port: 8787,
        store: None,
        retry_factor: 0.001,
        bin_dir: None,
        seed: true,
        positional: Vec::new(),
    };
    let mut first = true;
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => args.dir = PathBuf::from(value("--dir")?),
            "--port" => {
                args.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port must be a number")?
            }
            "--store" => args.store = Some(value("--store")?),
            "--retry-factor" => {
                args.retry_factor = value("--retry-factor")?
                    .parse()
                    .map_err(|_| "--retry-factor must be a number")?;
                if !(args.retry_factor > 0.0 && args.retry_factor <= 1.0) {
                    return Err("--retry-factor must be in (0, 1]".into());
                }
            }
            "--bin-dir" => args.bin_dir = Some(PathBuf::from(value("--bin-dir")?)),
            "--no-seed" => args.seed = false,
            "-h" | "--help" => args.command = "help".into(),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if first => args.command = s.to_owned(),
            s => args.positional.push(s.to_owned()),
        }
        first = false;
    }
    Ok(args)
}

fn options(args: &Args) -> SuiteOptions {
    let mut o = SuiteOptions::new(args.dir.clone());
    o.port = args.port;
    if args.store.as_deref() == Some(CLOUDBASE) {
        o.cloudbase_functions = true;
    } else {
        o.store_uri = args.store.clone();
    }
    o.retry_factor = args.retry_factor;
    o.bin_dir = args.bin_dir.clone();
    o.seed_demo = args.seed;
    o
}

fn redact(key: &str, value: &str) -> String {
    let secret = [
        "SECRET",
        "PRIVATE_KEY",
        "APIV3",
        "APPKEY",
        "API_KEY",
        "TOKEN",
        "AES_KEY",
        "DATA_KEY",
        "SIGNING_KEY",
    ];
    if secret.iter().any(|s| key.contains(s)) {
        format!("<{} chars: `wemint-dev env`>", value.len())
    } else {
        value.to_owned()
    }
}

async fn up(args: &Args) -> Result<(), String> {
    let suite = Suite::start(options(args))
        .await
        .map_err(|e| e.to_string())?;
    let base = suite.base_url();
    println!(
        "\nwemint-dev is running (state in {})\n",
        args.dir.display()
    );
    println!("  console          {base}/");
    println!(
        "  CloudBase        POST {base}/tcb/callFunction  {{name, data}}  (header X-Wemint-Dev-User picks the user, default alice)"
    );
    println!("  HTTP access      {base}/payNotify  {base}/wxPush");
    println!(
        "  WeChat API       {base}  (jscode2session, stable_token, msg_sec_check, media_check_async, xpay, …)"
    );
    println!(
        "  WeChat Pay v3    {base}/v3/…  (merchant signature checked, responses signed with {})",
        suite.keys.platform_key_id
    );
    println!(
        "  storage          POST {base}/tcb/uploadFile  ·  POST {base}/storage/getTempFileURL"
    );
    println!("  dev login        POST {base}/dev/login {{\"user\":\"alice\"}} → a wx.login code");
    println!("  store            {}", suite.options.store_uri());
    if suite.options.cloudbase_functions {
        println!(
            "  functions' store cloudbase:// through {base}/v1/database/… (the stand-in over the store above)"
        );
    }
    println!("\n  functions (real binaries under the SCF runtime API):");
    for (name, krate) in FUNCTIONS {
        let path = suite.functions.binary(krate);
        let state = if path.is_file() {
            "ok"
        } else {
            "MISSING: cargo build -p <crate>"
        };
        println!("    {name:<13} {:<40} {state}", path.display());
    }
    println!("\n  starting the functions (health check through the gateway):");
    let alice = suite.keys.openid_for("alice");
    for (name, _) in FUNCTIONS {
        let started = std::time::Instant::now();
        let result = wemint_emulator::standins::gateway::call(
            &suite,
            &alice,
            name,
            serde_json::json!({"action": "health"}),
            None,
        )
        .await;
        match result {
            Ok(reply) if reply["ok"] == serde_json::json!(true) => {
                println!(
                    "    {name:<13} ready in {} ms",
                    started.elapsed().as_millis()
                );
            }
            Ok(reply) => println!("    {name:<13} answered {reply}"),
            Err(r) => println!(
                "    {name:<13} NOT READY: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }
    println!("\n  environment the functions get (full values: wemint-dev env):");
    for (k, v) in suite.function_env() {
        println!("    {k}={}", redact(&k, &v));
    }
    println!("\nCtrl-C stops.");
    stop_requested().await?;
    suite.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM (what scripts and test runners send): either way the suite shuts down
/// and stops the processes it started (functions, the realtime server), leaving none behind.
async fn stop_requested() -> Result<(), String> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| e.to_string()),
        _ = term.recv() => Ok(()),
    }
}

async fn env(args: &Args) -> Result<(), String> {
    let mut o = options(args);
    o.run_functions = false;
    o.seed_demo = false;
    // Bind any free port so a running suite does not conflict; print the configured one.
    let port = o.port;
    o.port = 0;
    let suite = Suite::start(o).await.map_err(|e| e.to_string())?;
    let actual = suite.base_url();
    let wanted = format!("http://127.0.0.1:{port}");
    for (k, v) in suite.function_env() {
        println!("{k}={}", v.replace(&actual, &wanted));
    }
    suite.shutdown().await;
    Ok(())
}

/// `provision` and `probe`: the key comes from `WEMINT_CLOUDBASE_API_KEY`, the gateway from
/// `WEMINT_CLOUDBASE_ENDPOINT` (default `https://ENV.api.tcloudbasegateway.com`).
async fn cloudbase(args: &Args) -> Result<bool, String> {
    let store_uri = args
        .store
        .clone()
        .ok_or_else(|| format!("{} needs --store cloudbase://ENV", args.command))?;
    if !store_uri.starts_with("cloudbase://") {
        return Err(format!(
            "{} works on a CloudBase environment: --store cloudbase://ENV (not {})",
            args.command,
            wemint::store::redact_uri(&store_uri)
        ));
    }
    let gateway = wemint_emulator::cloudbase_admin::Gateway::from_env(&store_uri)?;
    let mut out = std::io::stdout();
    if args.command == "provision" {
        wemint_emulator::cloudbase_admin::provision(&gateway, &mut out).await?;
    } else {
        wemint_emulator::cloudbase_admin::probe(&gateway, &mut out).await?;
    }
    Ok(true)
}

async fn seed(args: &Args) -> Result<(), String> {
    let store_uri = args.store.clone().ok_or("seed needs --store URI")?;
    if store_uri == CLOUDBASE {
        return Err("seed needs a store URI (`cloudbase` alone names the suite's stand-in)".into());
    }
    let [file] = args.positional.as_slice() else {
        return Err("seed needs exactly one FILE".into());
    };
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let seed = SeedFile::parse(&bytes).map_err(|e| e.to_string())?;
    seed.validate().map_err(|e| e.to_string())?;
    let store = wemint::store::open(&store_uri)
        .await
        .map_err(|e| e.to_string())?;
    wemint::store::bootstrap(store.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let report = seed.import(&store).await.map_err(|e| e.to_string())?;
    println!(
        "seeded {} products, {} plans, {} contents into {}",
        report.products,
        report.plans,
        report.contents,
        wemint::store::redact_uri(&store_uri)
    );
    Ok(())
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEMINT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wemint-dev: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wemint-dev: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command.as_str() {
            "up" => up(&args).await.map(|()| true),
            "env" => env(&args).await.map(|()| true),
            "seed" => seed(&args).await.map(|()| true),
            "provision" | "probe" => cloudbase(&args).await,
            "demo" => wemint_emulator::demo::run(
                args.bin_dir.clone(),
                args.store.as_deref() == Some(CLOUDBASE),
            )
            .await
            .map(|r| r.passed()),
            "help" => {
                print!("{HELP}");
                Ok(true)
            }
            other => Err(format!("unknown command `{other}`\n\n{HELP}")),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("wemint-dev: {e}");
            ExitCode::FAILURE
        }
    }
}
