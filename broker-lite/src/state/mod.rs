//! The broker's state: the crash-safe JSON tables ([`metadata`]) and what they hold
//! (topics, subscription groups, consumer offsets), where each queue and group stands
//! ([`progress`]), computed from them and the store, and the metric counters ([`metrics`]).

// Bottom to top (one per group, so rustfmt keeps the order).
pub mod metrics;

pub mod metadata;

pub mod topics;

pub mod subscriptions;

pub mod consumer_offsets;

pub mod progress;
