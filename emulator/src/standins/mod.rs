//! The stand-ins: one module per external system the suite replaces, each answering on the
//! suite's one port over the suite's store, so the functions and the tests talk to them as
//! they would to Tencent. Tests reuse them through [`crate::suite::Suite`] (with
//! [`crate::suite::SuiteOptions::standins_only`] when no function should run) and steer
//! failures with the [`faults`] hooks.

pub mod bills;
pub mod cloud_storage;
pub mod cloudbase_db;
pub mod complaints;
pub mod crm;
pub mod datacube;
pub mod faults;
pub mod gateway;
pub mod official_account;
pub mod shipping;
pub mod wechat_api;
pub mod wechat_pay;
