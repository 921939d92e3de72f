//! Deployment adapters: one function value served three ways, chosen at start.
//!
//! | mode | when |
//! |---|---|
//! | `scf-event` | `SCF_RUNTIME_API` is set: the SCF custom runtime loop (module `scf`) |
//! | `lambda` | built with feature `lambda` and `AWS_LAMBDA_RUNTIME_API` is set |
//! | `http` | otherwise: an HTTP server on `0.0.0.0:$PORT` (default 9000) |
//!
//! A function is a [`Function`] value: callables (JSON in/out with the reply envelope), webhooks
//! (raw HTTP, exact body bytes) and a timer, over state built once by its init. `main` is one
//! line: `wemint::runtime::run(my_function::function())`. See `docs/runtime.md`.
//!
//! Tests invoke the same value in-process, without a process or a socket, through
//! [`testing::Harness`].

mod dispatch;
mod error;
mod function;
#[cfg(test)]
mod fuzz_tests;
mod http;
mod identity;
#[cfg(feature = "lambda")]
mod lambda;
mod panic;
mod scf;
pub mod testing;

use std::fmt;
use std::process::ExitCode;

pub use error::{ApiError, codes, ok_envelope};
pub use function::{
    BoxError, CallRequest, Function, Invocation, TimerRequest, WebhookRequest, WebhookResponse,
};
pub use identity::{IdentityInputs, PlatformClaims, TrustedGateway};

/// How the binary is being run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// SCF custom runtime (`bootstrap`).
    ScfEvent,
    /// HTTP server (`scf_bootstrap`, CloudBase Run, self-hosted).
    Http,
    /// AWS Lambda.
    Lambda,
}

impl Mode {
    /// `scf-event`, `http` or `lambda`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScfEvent => "scf-event",
            Self::Http => "http",
            Self::Lambda => "lambda",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Runs the function in the mode the environment calls for; returns the process exit code.
/// Returns only on a fatal error (init failed, listener or runtime API gone).
///
/// The event modes (`scf-event`, `lambda`) serve one invocation at a time on a current-thread
/// runtime; the `http` mode serves concurrent requests on every CPU the process may use
/// (`runtime_flavour`).
pub fn run<S: Send + Sync + 'static>(function: Function<S>) -> ExitCode {
    crate::telemetry::init();
    let scf_api = env("SCF_RUNTIME_API");
    #[cfg(feature = "lambda")]
    let lambda = scf_api.is_none() && env("AWS_LAMBDA_RUNTIME_API").is_some();
    #[cfg(not(feature = "lambda"))]
    let lambda = false;
    let http = scf_api.is_none() && !lambda;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let runtime = match build_runtime(runtime_flavour(http, cpus)) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "wemint: {}: cannot start the async runtime: {e}",
                function.name()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(api) = scf_api {
        let base = scf::endpoint(&api, env("SCF_RUNTIME_API_PORT").as_deref());
        return runtime.block_on(scf::run(function, base));
    }
    #[cfg(feature = "lambda")]
    if lambda {
        return runtime.block_on(lambda::run(function));
    }
    match http::listen_addr(env("PORT").as_deref()) {
        Ok(addr) => runtime.block_on(http::run(function, addr)),
        Err(message) => {
            eprintln!("wemint: {}: {message}", function.name());
            ExitCode::FAILURE
        }
    }
}

/// The tokio runtime a run mode gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    /// One thread: the event modes, and the `http` mode on one CPU.
    CurrentThread,
    /// A worker per CPU: the `http` mode when more than one CPU is available.
    MultiThread {
        /// Worker threads.
        workers: usize,
    },
}

/// `http` mode on more than one CPU: a worker thread per CPU; everything else: current thread
/// (an event function serves one invocation at a time, and a second thread would only add
/// start-up time and memory).
fn runtime_flavour(http: bool, cpus: usize) -> Flavour {
    if http && cpus > 1 {
        Flavour::MultiThread { workers: cpus }
    } else {
        Flavour::CurrentThread
    }
}

fn build_runtime(flavour: Flavour) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match flavour {
        Flavour::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavour::MultiThread { workers } => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        }
    };
    builder.enable_all().build()
}

/// Reports an init failure on stderr and in the logs; returns the message.
fn init_failed(name: &str, err: &(dyn std::error::Error + Send + Sync)) -> String {
    let mut message = format!("init failed: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(function = name, detail = %message, "init failed");
    eprintln!("wemint: {name}: {message}");
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_mode_uses_every_cpu_and_event_modes_stay_on_one_thread() {
        assert_eq!(
            runtime_flavour(true, 4),
            Flavour::MultiThread { workers: 4 }
        );
        assert_eq!(runtime_flavour(true, 1), Flavour::CurrentThread);
        assert_eq!(runtime_flavour(false, 4), Flavour::CurrentThread);
        assert_eq!(runtime_flavour(false, 1), Flavour::CurrentThread);
        assert!(build_runtime(Flavour::MultiThread { workers: 2 }).is_ok());
        assert!(build_runtime(Flavour::CurrentThread).is_ok());
    }
}
