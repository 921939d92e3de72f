//! The `realtime` function in the suite: its real binary in HTTP mode, on its own loopback
//! port, started on first use with the functions' environment.
//!
//! A direct port rather than a route on the suite's port: the suite's HTTP layer reads whole
//! requests and answers whole responses (the stand-ins check signatures over exact bytes), so
//! it cannot hand a connection over after an upgrade; and on the platform, too, the gateway
//! passes the socket straight through to the function's listener. The Mini Program and tests
//! learn the URL from `GET /dev/realtime`, which also returns the function's `/stats` (open
//! sockets and their topics, the stream position) for the console.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// The crate (binary) name.
pub const KRATE: &str = "realtime";

struct Running {
    child: Child,
    port: u16,
}

/// The `realtime` process of the suite.
pub struct Realtime {
    binary: PathBuf,
    running: Mutex<Option<Running>>,
}

impl Realtime {
    /// The process of the binary `bin_dir/realtime`.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            binary,
            running: Mutex::new(None),
        }
    }

    /// Its port, starting it with `env` (plus `PORT`) if it is not running.
    ///
    /// # Errors
    /// Not built, or not listening within 10 s.
    pub async fn ensure(&self, env: Vec<(String, String)>) -> Result<u16, String> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_mut()
            && matches!(r.child.try_wait(), Ok(None))
        {
            return Ok(r.port);
        }
        if !self.binary.is_file() {
            return Err(format!(
                "realtime: binary {} not found — build it first (`cargo build -p {KRATE}`)",
                self.binary.display()
            ));
        }
        let port = free_port().await?;
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .env("PORT", port.to_string())
            .env("WEMINT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("realtime: cannot start: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                *running = Some(Running { child, port });
                return Ok(port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("realtime: not listening within 10 s".into())
    }

    /// `{url, stats}` for the console and the clients, starting the process if needed.
    pub async fn describe(&self, env: Vec<(String, String)>) -> Value {
        match self.ensure(env).await {
            Err(e) => json!({"running": false, "error": e}),
            Ok(port) => {
                let stats = match reqwest::get(format!("http://127.0.0.1:{port}/stats")).await {
                    Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                json!({"running": true, "url": format!("ws://127.0.0.1:{port}/"), "stats": stats})
            }
        }
    }

    /// Stops the process (it starts again on next use).
    pub async fn stop(&self) {
        if let Some(mut r) = self.running.lock().await.take() {
            let _ = r.child.kill().await;
        }
    }
}

async fn free_port() -> Result<u16, String> {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("realtime: no free port: {e}"))?;
    probe
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("realtime: no free port: {e}"))
}
