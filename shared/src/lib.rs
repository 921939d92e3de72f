//! `wemint`: everything the wemint serverless functions share.
//!
//! Each function binary is thin: it builds its handler from this crate and hands it to
//! [`runtime`], which decides at start whether it runs under the SCF custom runtime, as an
//! HTTP function, or on AWS Lambda. Business rules live in [`domain`] and do no I/O; every
//! external system has its own module ([`store`], [`wechat`], [`pay`], [`cloud_files`]).
//!
//! Layers: [`clock`], [`secret`] and [`pem`] import nothing from the crate; [`config`] imports
//! only them; [`setup`] is the top, building each function's dependencies from the
//! configuration. No two top-level modules import each other, directly or through others
//! (`scripts/check-modules.sh` checks it).

pub mod access;
pub mod analytics;
pub mod clock;
pub mod cloud_files;
pub mod commerce;
pub mod complaints;
pub mod config;
pub mod content;
pub mod crm;
pub mod domain;
pub mod events;
pub mod finance;
pub mod funnel;
pub mod identity;
pub mod moderation;
pub mod notes;
pub mod outbound;
pub mod pay;
pub mod pem;
pub mod ratelimit;
pub mod realtime;
pub mod runtime;
pub mod secret;
pub mod setup;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod tenancy;
pub mod wechat;

#[cfg(test)]
mod fuzzing;
