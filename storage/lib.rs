//! # mqstore
//!
//! The commit-log core of Apache RocketMQ, in Rust and byte-compatible with RocketMQ's
//! on-disk format: fixed-size, pre-allocated, memory-mapped CommitLog files; records in
//! RocketMQ's v1 layout with BODYCRC and the whole-record `__CRC32#` property; per
//! topic-queue offsets; SYNC_FLUSH group commit and ASYNC_FLUSH periodic flushing.
//!
//! ```
//! use mqstore::{Message, MessageStore, PutStatus};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = MessageStore::builder(dir.path())
//!     .configure(|c| c.mapped_file_size_commit_log = 1 << 20)
//!     .open()?;
//! let msg = Message::new("orders", 0, b"hello".to_vec()).with_property("KEYS", "order-1");
//! let put = store.put(&msg)?;
//! assert_eq!(put.status, PutStatus::PutOk);
//! let at = put.appended.expect("stored").physical_offset;
//! let record = store.read(at)?.expect("present");
//! assert_eq!(record.view()?.body, b"hello");
//! store.shutdown()?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules: `format` (the byte layout and a total codec, no I/O), `mmap` (the only
//! `unsafe`: mapped files), `mapped_file_queue` and `allocate` (a queue's files and the
//! background creation of the next one), `commit_log` (append, read, recover the end),
//! `flush` (group commit, periodic flush), `consume_queue` and `index_file` (derived
//! files), `dispatch` (the reput thread), `recovery` (open), `cleanup` (72-hour retention
//! and disk-pressure deletion, safe under readers), `store` (the facade).

#[allow(unsafe_code)]
mod mmap;

mod allocate;
mod checkpoint;
mod cleanup;
mod clock;
mod commit_log;
mod config;
mod consume_queue;
mod disk;
mod dispatch;
mod error;
mod fault;
mod flush;
pub mod format;
mod index_file;
mod mapped_file_queue;
mod message;
mod read;
mod recovery;
mod service;
mod store;
pub mod verify;

pub use cleanup::{CleanTrigger, CleanupReport, RemovalReason, RemovedFile};
pub use clock::{Clock, ManualClock, SystemClock};
pub use commit_log::{RecordGuard, Records, RecoveryReport};
pub use config::{
    FlushMode, RecoveryMode, StoreConfig, DEFAULT_COMMIT_LOG_FILE_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
};
pub use disk::{DiskUsage, FsDiskUsage, ManualDiskUsage};
pub use dispatch::{Arrival, ArrivalListener};
pub use error::{CorruptionKind, Error, Result};
#[cfg(feature = "fault-injection")]
pub use fault::Injected;
#[cfg(feature = "fault-injection")]
pub use fault::{FaultInjector, IoOp};
pub use message::{Appended, Message, PhysicalOffset, PutResult, PutStatus, QueueOffset};
pub use read::{GetMessageResult, GetMessageStatus, MessageFilter, QueryMessageResult, TagFilter};
pub use store::{MessageStore, StoreBuilder, StoreStats};

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
