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
//! Modules, bottom to top (a module only uses the ones above it in this list):
//! `clock`, `fault`, `service` (utilities); `format` (the byte layouts of every file and
//! a total codec, no I/O); `error`, `config`; `file` (mapped files — the only `unsafe` —,
//! a queue of them, the allocator, disk usage); `checkpoint`; `put` (what a put reports);
//! `log` (the CommitLog: append, read, flush policy, the scan that finds its end);
//! `queue` (ConsumeQueues); `index` (IndexFiles); `dispatch` (the reput thread); `read`
//! (queue reads and queries); `cleanup` (72-hour retention and disk-pressure deletion,
//! safe under readers); `recovery` (open); `store` (the facade); `verify` (offline check
//! and repair).

mod clock;
mod fault;
mod service;

pub mod format;

mod error;

pub mod config;

mod file;

mod checkpoint;
mod put;

mod log;

mod queue;

mod index;

mod dispatch;
mod read;

mod cleanup;
mod recovery;
mod store;
pub mod verify;

pub use cleanup::{CleanTrigger, CleanupReport, RemovalReason, RemovedFile};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    BrokerRole, FlushMode, RecoveryMode, StoreConfig, DEFAULT_COMMIT_LOG_FILE_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
};
pub use dispatch::{Arrival, ArrivalListener};
pub use error::{CorruptionKind, Error, ReplicaError, Result};
#[cfg(feature = "fault-injection")]
pub use fault::Injected;
#[cfg(feature = "fault-injection")]
pub use fault::{FaultInjector, IoOp};
pub use file::disk::{DiskUsage, FsDiskUsage, ManualDiskUsage};
pub use format::Message;
pub use log::{LogBytes, RecordGuard, Records, RecoveryReport, ReplicaProgress, TailCheck};
pub use put::{Appended, PhysicalOffset, PutResult, PutStatus, QueueOffset};
pub use read::{GetMessageResult, GetMessageStatus, MessageFilter, QueryMessageResult, TagFilter};
pub use store::{MessageStore, StoreBuilder, StoreStats};

/// Creates `dir` and any missing parents, syncing each new directory into its parent (a
/// directory whose entry was never synced can vanish in a power cut with every file in
/// it). The store creates its own directories this way; embedders keeping files beside it
/// (broker-lite's `config/`) use it too.
///
/// # Errors
/// Creating or syncing a directory failed.
pub fn create_dir_durable(dir: &std::path::Path) -> Result<()> {
    file::mmap::create_dir_durable(dir, &fault::FaultInjector::default())
}

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
