//! The broker's persistent state: the crash-safe JSON tables ([`metadata`]) and what they
//! hold (topics, subscription groups, consumer offsets), and where each queue and group
//! stands ([`progress`]), computed from them and the store.

// Bottom to top.
pub mod consumer_offsets;
pub mod metadata;
pub mod progress;
pub mod subscriptions;
pub mod topics;
