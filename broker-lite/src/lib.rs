//! broker-lite: RocketMQ's 4.x remoting protocol over the [`mqstore`] message store, so
//! that unmodified RocketMQ clients can produce to it and consume from it.
//!
//! The crate is a library (the server, its processors and a small client) and the
//! `broker-lite` binary. The store is synchronous; the network side runs on tokio and calls
//! the store from blocking threads.

pub mod broker;
pub mod client;
pub mod clients;
pub mod codes;
pub mod config;
pub mod delivery;
pub mod json_file;
pub mod locks;
pub mod long_poll;
pub mod offsets;
pub mod ops;
pub mod register;
pub mod remoting;
pub mod schedule;
pub mod server;
pub mod subscriptions;
pub mod topics;
pub mod transaction;

pub use broker::{Broker, Outcome};
pub use client::{Client, ClientError, ReceivedMessage};
pub use config::BrokerConfig;
pub use remoting::{RemotingCommand, SerializeType};
