//! `lambda` mode (cargo feature `lambda`): the same function on AWS Lambda through
//! `lambda_runtime`, which owns the Lambda runtime API loop (paths, headers, error reports).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tracing::Instrument;

use super::Mode;
use super::dispatch::EventReply;
use super::function::{Function, Invocation};
use crate::config::Config;

pub(crate) async fn run<S: Send + Sync + 'static>(function: Function<S>) -> ExitCode {
    let name = function.name();
    let service = match function.build(Mode::Lambda, Config::from_env()).await {
        Ok(service) => Arc::new(service),
        Err(err) => {
            super::init_failed(name, err.as_ref());
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(function = name, mode = "lambda", "ready");
    let handler = service_fn(move |event: LambdaEvent<Value>| {
        let service = service.clone();
        async move {
            let received_at = Instant::now();
            // Lambda gives an absolute deadline in epoch milliseconds.
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let deadline = (event.context.deadline > 0).then(|| {
                received_at + Duration::from_millis(event.context.deadline.saturating_sub(now_ms))
            });
            let request_id = event.context.request_id.clone();
            let invocation = Invocation {
                request_id: request_id.clone(),
                mode: Mode::Lambda,
                received_at,
                deadline,
                memory_limit_mb: u32::try_from(event.context.env_config.memory).ok(),
            };
            let span = tracing::info_span!(
                "invocation",
                request_id = %request_id,
                function = service.name,
                action = tracing::field::Empty
            );
            match service
                .handle_event_value(event.payload, invocation)
                .instrument(span)
                .await
            {
                EventReply::Response(value) => Ok::<Value, String>(value),
                EventReply::Error(message) => Err(message),
            }
        }
    });
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wemint: {name}: lambda runtime stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
