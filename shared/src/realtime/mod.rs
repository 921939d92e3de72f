//! Real time over WebSockets (`wx.connectSocket`): the `realtime` function's library.
//!
//! Events are published into the stream by the services that make them happen
//! ([`crate::events`]); every process serving sockets tails the stream once ([`Hub`]) and
//! hands each connection the events of the topics it may see ([`Topic`]): its own orders, its
//! posts' moderation results, its tenants. The socket is authenticated with the session token
//! before the upgrade ([`serve`]). `docs/realtime.md` has the design and the platform facts.

mod hub;
mod protocol;
mod server;
#[cfg(test)]
mod tests;

pub use hub::{Hub, HubConfig, Item, Refusal, Registration};
pub use protocol::{ClientMessage, MAX_CLIENT_FRAME, MAX_TOPICS, Topic, parse_client};
pub use server::{ConnLimits, Server, serve};
