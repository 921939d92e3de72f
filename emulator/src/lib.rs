//! `wemint-emulator`: the local suite behind `wemint-dev`. CloudBase, the WeChat server API
//! and WeChat Pay are emulated on one 127.0.0.1 port over the embedded store, and the real
//! function binaries run under an SCF runtime API emulator ([`scf`]), shared by the
//! end-to-end tests, `scripts/bench.sh` and `wemint-dev`. `docs/emulator.md` is the guide.

// Handlers return `Result<_, Response>`: the error is the HTTP answer, built once per request.
#![allow(clippy::result_large_err)]

pub mod clock;
pub mod cloudbase_admin;
pub mod console;
pub mod deliveries;
pub mod demo;
pub mod demo_analytics;
pub mod demo_shipping;
pub mod dev;
pub mod functions;
pub mod http;
pub mod keys;
pub mod realtime;
pub mod router;
pub mod scf;
pub mod seed;
pub mod standins;
pub mod suite;
pub mod timers;
