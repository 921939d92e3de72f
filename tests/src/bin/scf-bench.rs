//! Start-up benchmark (scripts/bench.sh): starts each function binary N times under the SCF
//! runtime API emulator, serves one `health` invocation, and reports the median time from
//! process start to `init/ready` and the peak resident memory (VmHWM).
//!
//! Usage: `scf-bench [--runs N] NAME=PATH...`. Exits 1 when a budget is missed (median ready
//! > 10 ms or peak RSS > 12 MiB).
//!
//! The functions get the end-to-end tests' complete configuration ([`function_env`]) with a
//! SQLite file store in a temporary directory, so their init does its real work (keys parsed,
//! store opened and its indexes ensured) without any network.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use wemint_e2e::{RuntimeApi, ScfInstance, StartOptions, function_env};

const READY_BUDGET_MS: f64 = 10.0;
const RSS_BUDGET_MIB: f64 = 12.0;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut runs = 20usize;
    let mut targets: Vec<(String, PathBuf)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            runs = match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => n,
                _ => {
                    eprintln!("--runs needs a positive number");
                    return ExitCode::from(2);
                }
            };
        } else if let Some((name, path)) = arg.split_once('=') {
            targets.push((name.to_owned(), PathBuf::from(path)));
        } else {
            eprintln!("usage: scf-bench [--runs N] NAME=PATH...");
            return ExitCode::from(2);
        }
    }
    if targets.is_empty() {
        eprintln!("usage: scf-bench [--runs N] NAME=PATH...");
        return ExitCode::from(2);
    }

    let store_dir = std::env::temp_dir().join(format!("wemint-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&store_dir) {
        eprintln!("cannot create {}: {e}", store_dir.display());
        return ExitCode::FAILURE;
    }
    let mut env = function_env();
    for (k, v) in &mut env {
        if k == "WEMINT_STORE" {
            *v = format!("sqlite:{}", store_dir.join("bench.db").display());
        }
    }

    println!(
        "{:<14} {:>6} {:>12} {:>9} {:>9} {:>14} {:>7}",
        "function", "starts", "ready median", "ready p90", "ready min", "peak RSS (max)", "budget"
    );
    println!("{}", "-".repeat(78));
    let mut all_ok = true;
    for (name, path) in &targets {
        let mut ready_ms = Vec::with_capacity(runs);
        let mut peak_kib = 0u64;
        for _ in 0..runs {
            let options = StartOptions {
                api: RuntimeApi::Scf,
                env: env.clone(),
                ready_timeout: Duration::from_secs(10),
                ..StartOptions::default()
            };
            let f = match ScfInstance::start(path, options).await {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            ready_ms.push(f.ready_after().as_secs_f64() * 1000.0);
            match f.invoke_json(&json!({"action": "health"})).await {
                Ok(out) if out["ok"] == json!(true) => {}
                other => {
                    eprintln!("{name}: health failed: {other:?}");
                    return ExitCode::FAILURE;
                }
            }
            peak_kib = peak_kib.max(f.peak_rss_kib().unwrap_or(0));
        }
        ready_ms.sort_by(f64::total_cmp);
        let median = percentile(&ready_ms, 0.5);
        let peak_mib = peak_kib as f64 / 1024.0;
        let ok = median <= READY_BUDGET_MS && peak_mib <= RSS_BUDGET_MIB;
        all_ok &= ok;
        println!(
            "{:<14} {:>6} {:>9.2} ms {:>6.2} ms {:>6.2} ms {:>10.1} MiB {:>7}",
            name,
            runs,
            median,
            percentile(&ready_ms, 0.9),
            ready_ms[0],
            peak_mib,
            if ok { "ok" } else { "MISSED" }
        );
    }
    let _ = std::fs::remove_dir_all(&store_dir);
    println!(
        "\nbudget: median process start → init/ready ≤ {READY_BUDGET_MS} ms, peak RSS ≤ {RSS_BUDGET_MIB} MiB \
         (VmHWM from /proc/PID/status after one health invocation; store: a SQLite file)"
    );
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
