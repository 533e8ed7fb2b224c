//! broker-lite: RocketMQ's 4.x remoting protocol over the [`mqstore`] message store, so
//! that unmodified RocketMQ clients can produce to it and consume from it.
//!
//! The crate is a library (the server, its processors and a small client) and the
//! `broker-lite` binary. The store is synchronous; the network side runs on tokio and calls
//! the store from blocking threads.

// Bottom to top: a module uses only modules listed before it (checked by .ci/layers.py).
pub mod acl;
pub mod broker;
pub mod config;
pub mod connections;
pub mod console;
pub mod exporter;
pub mod ha;
pub mod http;
pub mod locks;
pub mod long_poll;
pub mod metadata;
pub mod metrics;
pub mod offsets;
pub mod ops;
pub mod outbound;
pub mod progress;
pub mod register;
pub mod remoting;
pub mod requests;
pub mod schedule;
pub mod server;
pub mod slave_sync;
pub mod subscriptions;
pub mod tls;
pub mod topics;
pub mod transaction;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use outbound::{Client, ClientError, ReceivedMessage};
pub use remoting::{RemotingCommand, SerializeType};
pub use requests::Outcome;
