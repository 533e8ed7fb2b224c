//! The `MessageStore` facade: opening (directory lock, recovery, background services),
//! puts, reads and an orderly shutdown.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::commit_log::{CommitLog, RecordGuard, Records, RecoveryReport};
use crate::config::{FlushMode, StoreConfig};
use crate::error::{Error, Result};
use crate::fault::FaultInjector;
use crate::flush::{FlushWait, PeriodicFlushPolicy};
use crate::message::{Message, PhysicalOffset, PutResult, PutStatus, QueueOffset};
use crate::service::{ServiceThread, Waker};

/// How often the SYNC_FLUSH background flusher picks up puts that did not wait (`WAIT=false`).
const SYNC_MODE_TICK: Duration = Duration::from_millis(10);
/// Shutdown flushes until nothing moves, at most this many times (RocketMQ: 10).
const SHUTDOWN_FLUSH_RETRIES: usize = 10;

/// Counters from [`MessageStore::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// SYNC_FLUSH flushes run by waiting writers (group-commit rounds). Puts divided by
    /// this is the average group size.
    pub group_commit_flushes: u64,
}

/// Builder for [`MessageStore`].
#[must_use]
#[derive(Debug)]
pub struct StoreBuilder {
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    faults: FaultInjector,
}

impl StoreBuilder {
    /// Replaces the whole configuration (its root directory included).
    pub fn config(mut self, config: StoreConfig) -> Self {
        self.config = config;
        self
    }

    /// Adjusts the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut StoreConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// The clock for store timestamps (tests pass a [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Makes chosen file operations fail (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    pub fn fault_injector(mut self, faults: FaultInjector) -> Self {
        self.faults = faults;
        self
    }

    /// Validates the configuration and opens the store.
    ///
    /// # Errors
    /// See [`MessageStore::open`].
    pub fn open(self) -> Result<MessageStore> {
        MessageStore::open_with(self.config, self.clock, self.faults)
    }
}

/// A RocketMQ-compatible message store. Share it between threads with an `Arc`; every
/// method takes `&self`.
#[derive(Debug)]
pub struct MessageStore {
    config: StoreConfig,
    log: Arc<CommitLog>,
    flusher: Mutex<Option<ServiceThread>>,
    /// Wakes the flusher from the put path without taking the `flusher` lock.
    flush_waker: Waker,
    report: RecoveryReport,
    /// Holds the exclusive lock on `<root>/lock` for the store's life.
    lock_file: Mutex<Option<File>>,
}

impl MessageStore {
    /// A builder with RocketMQ's defaults rooted at `root`.
    pub fn builder(root: impl Into<PathBuf>) -> StoreBuilder {
        StoreBuilder {
            config: StoreConfig::new(root),
            clock: Arc::new(SystemClock),
            faults: FaultInjector::default(),
        }
    }

    /// Opens (creating if needed) the store described by `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] before touching the disk; [`Error::Locked`] if another
    /// process holds the directory; [`Error::Corrupted`] naming file and offset if the
    /// files are inconsistent or corrupt in the middle; I/O errors.
    pub fn open(config: StoreConfig) -> Result<MessageStore> {
        Self::open_with(config, Arc::new(SystemClock), FaultInjector::default())
    }

    fn open_with(
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        faults: FaultInjector,
    ) -> Result<MessageStore> {
        config.validate()?;
        let lock_file = lock_dir(&config.store_path_root_dir)?;
        let (log, report) = CommitLog::open(&config, clock, faults)?;
        let log = Arc::new(log);
        let flusher = spawn_flusher(&config, &log)?;
        let flush_waker = flusher.waker();
        Ok(MessageStore {
            config,
            log,
            flusher: Mutex::new(Some(flusher)),
            flush_waker,
            report,
            lock_file: Mutex::new(Some(lock_file)),
        })
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// What opening found at the end of the CommitLog.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Stores one message.
    ///
    /// Rejections (illegal message, shut down, busy) and `FLUSH_DISK_TIMEOUT` are
    /// [`PutStatus`] values.
    ///
    /// # Errors
    /// [`Error::DiskFull`] when the next CommitLog file cannot be allocated (nothing was
    /// written; retry after freeing space); [`Error::Poisoned`] after a failed flush; other
    /// I/O errors.
    pub fn put(&self, msg: &Message) -> Result<PutResult> {
        let result = self.log.put(msg)?;
        self.after_append(result, || msg.waits_for_store())
    }

    /// Stores a batch: same topic and queue, no delay level, not transactional. The records
    /// land in one file with consecutive queue offsets.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn put_batch(&self, msgs: &[Message]) -> Result<PutResult> {
        let result = self.log.put_batch(msgs)?;
        self.after_append(result, || msgs.iter().all(Message::waits_for_store))
    }

    /// Applies the flush mode; `wait` (the `WAIT` property, parsed only in SYNC_FLUSH)
    /// says whether the caller waits for its flush.
    fn after_append(
        &self,
        mut result: PutResult,
        wait: impl FnOnce() -> bool,
    ) -> Result<PutResult> {
        let Some(appended) = &result.appended else {
            return Ok(result);
        };
        match self.config.flush_disk_type {
            FlushMode::Async => {
                if !self.config.flush_commit_log_timed {
                    self.wake_flusher();
                }
            }
            FlushMode::Sync if wait() => {
                let end = appended.end_offset().0;
                let log = &self.log;
                let waited = log
                    .group
                    .wait_durable(end, self.config.sync_flush_timeout, || log.flush_files(0))?;
                if waited == FlushWait::TimedOut {
                    result.status = PutStatus::FlushDiskTimeout;
                }
            }
            FlushMode::Sync => self.wake_flusher(),
        }
        Ok(result)
    }

    fn wake_flusher(&self) {
        self.flush_waker.wake();
    }

    /// The record at `offset` (a record start, as returned by a put or by
    /// [`records_from`](Self::records_from)), CRC-checked. `None` outside the stored range.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the bytes there are not a valid record.
    pub fn read(&self, offset: PhysicalOffset) -> Result<Option<RecordGuard>> {
        self.log.read(offset.0)
    }

    /// Iterates the records from `offset` (raised to the minimum) to the current end.
    pub fn records_from(&self, offset: PhysicalOffset) -> Records {
        Records::new(Arc::clone(&self.log), offset.0)
    }

    /// First CommitLog offset still stored.
    pub fn min_offset(&self) -> PhysicalOffset {
        PhysicalOffset(self.log.min_offset())
    }

    /// Offset just past the last stored record.
    pub fn max_offset(&self) -> PhysicalOffset {
        PhysicalOffset(self.log.max_offset())
    }

    /// Everything below this offset is on disk.
    pub fn flushed_offset(&self) -> PhysicalOffset {
        PhysicalOffset(self.log.group.durable())
    }

    /// The queue offset the next message to `topic`/`queue_id` gets.
    pub fn next_queue_offset(&self, topic: &str, queue_id: u32) -> QueueOffset {
        QueueOffset(self.log.next_queue_offset(topic, queue_id))
    }

    /// Counters describing what the store has done so far.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            group_commit_flushes: self.log.group.leader_flushes(),
        }
    }

    /// Number of CommitLog files in use.
    pub fn commit_log_file_count(&self) -> usize {
        self.log.file_count()
    }

    /// Flushes everything stored so far.
    ///
    /// # Errors
    /// The flush's I/O error (the store is then poisoned), or [`Error::Poisoned`].
    pub fn flush(&self) -> Result<()> {
        self.log.flush(0)
    }

    /// Refuses new puts, flushes everything, stops and joins the background threads and
    /// releases the directory lock.
    ///
    /// # Errors
    /// The final flush's error; the threads are stopped and the lock released regardless.
    pub fn shutdown(self) -> Result<()> {
        self.close()
    }

    fn close(&self) -> Result<()> {
        if self.log.is_closed()
            && self
                .lock_file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none()
        {
            return Ok(());
        }
        self.log.close();
        let flusher = self
            .flusher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut flusher) = flusher {
            flusher.stop();
        }
        let mut outcome = Ok(());
        if !self.log.group.is_poisoned() {
            for _ in 0..SHUTDOWN_FLUSH_RETRIES {
                let before = self.log.group.durable();
                if let Err(e) = self.log.flush(0) {
                    outcome = Err(e);
                    break;
                }
                if self.log.group.durable() == before {
                    break;
                }
            }
        }
        self.lock_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        outcome
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "store shutdown on drop failed");
        }
    }
}

fn spawn_flusher(config: &StoreConfig, log: &Arc<CommitLog>) -> Result<ServiceThread> {
    let log_for_thread = Arc::clone(log);
    let spawned = match config.flush_disk_type {
        FlushMode::Sync => ServiceThread::spawn("rmq-flush", SYNC_MODE_TICK, move || {
            let _ = log_for_thread.flush(0);
        }),
        FlushMode::Async => {
            let mut policy = PeriodicFlushPolicy::new(
                config.flush_commit_log_least_pages,
                config.flush_commit_log_thorough_interval,
                Instant::now(),
            );
            ServiceThread::spawn("rmq-flush", config.flush_interval_commit_log, move || {
                let least = policy.least_pages(Instant::now());
                let _ = log_for_thread.flush(least);
            })
        }
    };
    spawned.map_err(|e| Error::io("spawn flusher", &config.store_path_root_dir, e))
}

/// Takes the exclusive lock on `<root>/lock` (RocketMQ's lock file, holding `lock`).
fn lock_dir(root: &Path) -> Result<File> {
    std::fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
    let path = root.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(Error::Locked { path }),
        Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
    }
    file.write_all(b"lock")
        .map_err(|e| Error::io("write", &path, e))?;
    Ok(file)
}
