//! `wemint`: everything the wemint serverless functions share.
//!
//! Each function binary is thin: it builds its handler from this crate and hands it to
//! [`runtime`], which decides at start whether it runs under the SCF custom runtime, as an
//! HTTP function, or on AWS Lambda. Business rules live in [`domain`] and do no I/O; every
//! external system has its own module ([`store`], [`wechat`], [`pay`]).

pub mod commerce;
pub mod config;
pub mod domain;
pub mod identity;
pub mod moderation;
pub mod outbound;
pub mod pay;
pub mod ratelimit;
pub mod runtime;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod wechat;

#[cfg(test)]
mod fuzzing;
