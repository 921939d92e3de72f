//! Pure business logic with no I/O: money, ids, catalog, content access, orders,
//! subscriptions, moderation. Functions load documents, ask this module what the next state
//! is, and write it back with a conditional update; randomness and time are passed in.

pub mod analytics;
pub mod catalog;
pub mod complaint;
pub mod content;
pub mod crm;
pub mod ids;
pub mod moderation;
pub mod money;
pub mod oa_menu;
pub mod order;
pub mod shipping;
pub mod subscription;
