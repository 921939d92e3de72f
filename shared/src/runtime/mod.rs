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
pub fn run<S: Send + Sync + 'static>(function: Function<S>) -> ExitCode {
    crate::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "wemint: {}: cannot start the async runtime: {e}",
                function.name()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(api) = env("SCF_RUNTIME_API") {
        let base = scf::endpoint(&api, env("SCF_RUNTIME_API_PORT").as_deref());
        return runtime.block_on(scf::run(function, base));
    }
    #[cfg(feature = "lambda")]
    if env("AWS_LAMBDA_RUNTIME_API").is_some() {
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
