//! broker-lite: RocketMQ's 4.x remoting protocol over the [`mqstore`] message store, so
//! that unmodified RocketMQ clients can produce to it and consume from it.
//!
//! The crate is a library (the server, its processors and a small client) and the
//! `broker-lite` binary. The store is synchronous; the network side runs on tokio and calls
//! the store from blocking threads.

// Bottom to top: a module uses only modules listed before it (checked by .ci/layers.py,
// which ranks each file inside these folders too). One per group, so rustfmt keeps the order.
pub mod remoting;

pub mod config;

pub mod acl;

pub mod state;

pub mod clients;

pub mod delivery;

pub mod client;

pub mod ha;

pub mod broker;

pub mod requests;

pub mod cluster;

pub mod http;

pub mod server;

pub use broker::Broker;
pub use client::{Client, ClientError, ReceivedMessage};
pub use config::BrokerConfig;
pub use remoting::{RemotingCommand, SerializeType};
pub use requests::Outcome;
