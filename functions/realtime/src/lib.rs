//! The `realtime` function: WebSockets for the Mini Program (`wx.connectSocket`).
//!
//! Runs only as an HTTP server (CloudBase HTTP function with WebSocket enabled, CloudBase
//! Run, self-hosted): `0.0.0.0:$PORT`, port 9000 by default. A socket is opened with the
//! session token from `login` (`Authorization: Bearer …`), checked before the upgrade, then
//! subscribes to topics and receives the events the library publishes
//! (`docs/api.md`, "realtime"; design in `docs/realtime.md`).
//!
//! The process tails the event stream once for all its sockets, so it is as cheap holding one
//! socket (an HTTP function instance per connection) as holding thousands (CloudBase Run).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use wemint::config::Config;
use wemint::events::Events;
use wemint::realtime::{ConnLimits, Hub, HubConfig, Server, serve};
use wemint::runtime::BoxError;
use wemint::setup::{Deps, required};
use wemint::tenancy::Tenancy;

/// The deployed (CloudBase) name of this function.
pub const NAME: &str = "realtime";

/// Builds the server from the deployment's configuration: the store, the session
/// authenticator (`WEMINT_SESSION_SECRET` is required) and the poll intervals.
///
/// # Errors
/// A missing or malformed setting, an unreachable store.
pub async fn init(config: &Config) -> Result<Arc<Server>, BoxError> {
    let deps = Deps::from_config(config).await?;
    let auth = required(deps.auth, "WEMINT_SESSION_SECRET")?;
    let tuning = config.realtime()?;
    let events = Events::new(deps.store.clone()).with_clock(deps.clock.clone());
    let hub = Hub::new(
        events,
        Tenancy::new(deps.store).with_clock(deps.clock),
        HubConfig {
            poll_fast: Duration::from_millis(tuning.poll_fast_ms),
            poll_idle: Duration::from_millis(tuning.poll_idle_ms),
            ..HubConfig::default()
        },
    );
    Ok(Arc::new(Server::new(
        Arc::new(hub),
        auth,
        ConnLimits::default(),
    )))
}

/// Runs the server until the listener fails; the process exit code.
pub fn main() -> ExitCode {
    wemint::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wemint: {NAME}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let port = match std::env::var("PORT").ok().filter(|p| !p.trim().is_empty()) {
            None => 9000,
            Some(p) => match p.trim().parse::<u16>() {
                Ok(port) => port,
                Err(_) => {
                    eprintln!("wemint: {NAME}: PORT must be a port number");
                    return ExitCode::FAILURE;
                }
            },
        };
        let server = match init(&Config::from_env()).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("wemint: {NAME}: init failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match TcpListener::bind(("0.0.0.0", port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("wemint: {NAME}: cannot listen on port {port}: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(function = NAME, mode = "http", port, "ready");
        tokio::spawn(server.hub().clone().tail());
        serve(listener, server).await;
        ExitCode::FAILURE
    })
}
