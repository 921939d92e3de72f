//! The function instances: each function is its real binary (built by `cargo build`) run
//! under the SCF runtime API emulator ([`crate::scf`]), one warm instance per function,
//! started on first use, restarted when it has died, invoked one event at a time (an SCF
//! instance serves one request at a time).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::scf::{Outcome, ScfInstance, StartOptions};

/// Deployed name → crate (binary) name.
pub const FUNCTIONS: [(&str, &str); 8] = [
    ("login", "login"),
    ("createOrder", "create-order"),
    ("payNotify", "pay-notify"),
    ("gatedContent", "gated-content"),
    ("ugcUpload", "ugc-upload"),
    ("wxPush", "wx-push"),
    ("reconcile", "reconcile"),
    ("analytics", "analytics"),
];

/// Time limit per invocation announced to the functions.
pub const TIME_LIMIT_MS: u64 = 15_000;

/// Why an invocation did not reach a function.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Not one of the seven functions.
    #[error(
        "no function named `{0}` (known: login, createOrder, payNotify, gatedContent, ugcUpload, wxPush, reconcile, analytics)"
    )]
    Unknown(String),
    /// The binary is not there.
    #[error("function {name}: binary {path} not found — build it first (`cargo build -p {krate}`)")]
    NotBuilt {
        /// Deployed name.
        name: String,
        /// Crate name.
        krate: String,
        /// Where it was looked for.
        path: String,
    },
    /// The process did not become ready.
    #[error("function {name} failed to start: {reason}")]
    Start {
        /// Deployed name.
        name: String,
        /// What happened (with its stderr).
        reason: String,
    },
    /// The process died or did not answer in time.
    #[error("function {name} did not answer: {reason}")]
    Failed {
        /// Deployed name.
        name: String,
        /// What happened.
        reason: String,
    },
    /// Functions are disabled in this suite.
    #[error("functions are not started in this suite")]
    Disabled,
}

#[derive(Default)]
struct Slot {
    instance: Option<ScfInstance>,
    starts: u32,
    invocations: u64,
    last_error: Option<String>,
}

/// The pool of warm instances.
pub struct Functions {
    bin_dir: Option<PathBuf>,
    enabled: bool,
    slots: BTreeMap<&'static str, Mutex<Slot>>,
    /// The `realtime` function: a server on its own port, not an SCF instance.
    pub realtime: crate::realtime::Realtime,
}

impl Functions {
    /// A pool finding binaries in `bin_dir` (default: the running binary's target dir,
    /// or `WEMINT_BIN_DIR`).
    pub fn new(bin_dir: Option<PathBuf>, enabled: bool) -> Self {
        let bin_dir = bin_dir.or_else(crate::scf::binary_dir);
        Functions {
            realtime: crate::realtime::Realtime::new(
                bin_dir
                    .clone()
                    .unwrap_or_default()
                    .join(crate::realtime::KRATE),
            ),
            bin_dir,
            enabled,
            slots: FUNCTIONS
                .iter()
                .map(|(name, _)| (*name, Mutex::new(Slot::default())))
                .collect(),
        }
    }

    /// The binary of a function.
    pub fn binary(&self, krate: &str) -> PathBuf {
        self.bin_dir.clone().unwrap_or_default().join(krate)
    }

    /// Sends `event` to function `name`, starting (or restarting) its instance with `env`.
    pub async fn invoke(
        &self,
        name: &str,
        event: &Value,
        env: Vec<(String, String)>,
    ) -> Result<Outcome, InvokeError> {
        if !self.enabled {
            return Err(InvokeError::Disabled);
        }
        let Some((fname, krate)) = FUNCTIONS.iter().find(|(n, _)| *n == name) else {
            return Err(InvokeError::Unknown(name.to_owned()));
        };
        let slot = self
            .slots
            .get(fname)
            .ok_or_else(|| InvokeError::Unknown(name.to_owned()))?;
        let mut slot = slot.lock().await;
        if slot.instance.as_ref().is_some_and(|i| !i.is_running()) {
            tracing::warn!(function = fname, "instance died; restarting");
            slot.instance = None;
        }
        if slot.instance.is_none() {
            let binary = self.binary(krate);
            if !binary.is_file() {
                return Err(InvokeError::NotBuilt {
                    name: (*fname).into(),
                    krate: (*krate).into(),
                    path: binary.display().to_string(),
                });
            }
            let mut options = StartOptions {
                time_limit_ms: TIME_LIMIT_MS,
                ready_timeout: Duration::from_secs(20),
                ..StartOptions::default()
            };
            for (k, v) in env {
                options = options.env(k, v);
            }
            options = options
                .env("SCF_FUNCTIONNAME", *fname)
                .env("WEMINT_LOG", "warn");
            match ScfInstance::start(&binary, options).await {
                Ok(instance) => {
                    slot.starts += 1;
                    slot.instance = Some(instance);
                }
                Err(e) => {
                    let reason = e.to_string();
                    slot.last_error = Some(reason.clone());
                    return Err(InvokeError::Start {
                        name: (*fname).into(),
                        reason,
                    });
                }
            }
        }
        let instance = slot.instance.as_ref().ok_or(InvokeError::Disabled)?;
        let bytes = serde_json::to_vec(event).unwrap_or_default();
        let result = instance.invoke(bytes).await;
        slot.invocations += 1;
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                let reason = e.to_string();
                slot.last_error = Some(reason.clone());
                slot.instance = None;
                Err(InvokeError::Failed {
                    name: (*fname).into(),
                    reason,
                })
            }
        }
    }

    /// Stops every instance (they restart on next use, e.g. with a new clock).
    pub async fn stop_all(&self) {
        for slot in self.slots.values() {
            slot.lock().await.instance = None;
        }
        self.realtime.stop().await;
    }

    /// The process id of a running instance (tests kill it).
    pub async fn pid(&self, name: &str) -> Option<u32> {
        let slot = self.slots.get(name)?;
        slot.lock()
            .await
            .instance
            .as_ref()
            .filter(|i| i.is_running())
            .map(ScfInstance::pid)
    }

    /// Per-function status for the console.
    pub async fn status(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (name, krate) in FUNCTIONS {
            let Some(slot) = self.slots.get(name) else {
                continue;
            };
            let s = match slot.try_lock() {
                Ok(s) => json!({
                    "binary": self.binary(krate).display().to_string(),
                    "built": self.binary(krate).is_file(),
                    "running": s.instance.as_ref().is_some_and(ScfInstance::is_running),
                    "pid": s.instance.as_ref().map(ScfInstance::pid),
                    "starts": s.starts, "invocations": s.invocations, "lastError": s.last_error,
                }),
                Err(_) => json!({"busy": true}),
            };
            out.insert(name.to_owned(), s);
        }
        Value::Object(out)
    }
}
