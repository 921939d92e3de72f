//! Logs as JSON lines on stdout (SCF collects stdout), one span per invocation.
//!
//! The level filter comes from `WEMINT_LOG` (or `RUST_LOG`), default `info`. Secrets are wrapped
//! in [`crate::secret::Secret`], whose `Debug` is `[redacted]`; request bodies are never logged.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber and a panic hook that logs panics as JSON error lines.
/// Calling it again (tests, embedding) is harmless.
pub fn init() {
    let filter = std::env::var("WEMINT_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .try_init()
        .is_ok();
    if installed {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::error!(panic = %panic_message(info.payload()), %location, "panic");
        }));
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
