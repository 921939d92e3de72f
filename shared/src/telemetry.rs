//! Logs as JSON lines on stdout (SCF collects stdout), one span per invocation.
//!
//! The filter comes from `WEMINT_LOG` (or `RUST_LOG`), default `info`: a level (`warn`,
//! `off`, …), optionally with per-target levels (`info,wemint::store=debug`). Disabled levels
//! cost a load and a compare at each call site (the filter sets tracing's global maximum
//! level), and no event or span is built. Secrets are wrapped in
//! [`crate::secret::Secret`], whose `Debug` is `[redacted]`; request bodies are never logged.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The filter `spec` asks for (`None` or unparsable: `info`).
fn filter(spec: Option<&str>) -> Targets {
    spec.map(str::trim)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// Installs the JSON subscriber and a panic hook that logs panics as JSON error lines.
/// Calling it again (tests, embedding) is harmless.
pub fn init() {
    let spec = std::env::var("WEMINT_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok());
    let installed = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        // The builder's own default cap is INFO; `filter` alone decides, so that
        // `WEMINT_LOG=debug` or `info,wemint::store=debug` does reach debug events.
        .with_max_level(LevelFilter::TRACE)
        .finish()
        .with(filter(spec.as_deref()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn filter_specs() {
        let default = filter(None);
        assert!(default.would_enable("wemint", &Level::INFO));
        assert!(!default.would_enable("wemint", &Level::DEBUG));
        assert!(!filter(Some("off")).would_enable("wemint", &Level::ERROR));
        let warn = filter(Some("warn"));
        assert!(warn.would_enable("wemint", &Level::WARN));
        assert!(!warn.would_enable("wemint", &Level::INFO));
        let per_target = filter(Some("warn,wemint::store=debug"));
        assert!(per_target.would_enable("wemint::store::sqlite", &Level::DEBUG));
        assert!(!per_target.would_enable("wemint::runtime", &Level::INFO));
        // Blank or unparsable: the default.
        assert!(filter(Some(" ")).would_enable("wemint", &Level::INFO));
        assert!(filter(Some("wemint=[")).would_enable("wemint", &Level::INFO));
    }
}
