//! The `MessageStore` facade: opening (directory lock, abort file, recovery, background
//! services), puts, reads and an orderly shutdown.
//!
//! Threads: `rmq-flush` (CommitLog flushing), `rmq-allocate` (the next CommitLog file, owned
//! by the CommitLog's file queue), `rmq-reput` (dispatch to ConsumeQueues and the index),
//! `rmq-flush-cq` (ConsumeQueue and index flushing, then the checkpoints), `rmq-clean`
//! (expiry and disk-pressure cleanup), `rmq-tail-check` (the background check of the newest
//! records after a clean shutdown). All stop and join on shutdown or drop.
//!
//! Stop order (shutdown): the CommitLog refuses puts (which also ends `rmq-allocate`);
//! `rmq-tail-check`, `rmq-clean` (no deletion while shutting down) and `rmq-flush` stop; the
//! CommitLog is flushed on the calling thread; dispatch is given time to catch up; then
//! `rmq-reput` and `rmq-flush-cq` stop ([`Threads::stop_all`]'s order) and the derived files
//! are checkpointed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::checkpoint::Checkpoints;
use crate::cleanup::{Cleaner, CleanerParts, CleanupReport, RemovedFile};
use crate::clock::{Clock, SystemClock};
use crate::config::{FlushMode, StoreConfig};
use crate::dispatch::{ArrivalListener, Dispatcher};
use crate::error::{Error, Result};
use crate::fault::FaultInjector;
use crate::file::disk::{DiskUsage, FsDiskUsage};
use crate::format::Message;
use crate::format::{CqUnit, TimestampCheckpoint, MAX_MSGS_NUM_BATCH};
use crate::index::IndexFiles;
use crate::log::flush::{FlushWait, PeriodicFlushPolicy};
use crate::log::{
    CommitLog, LogBytes, RecordGuard, Records, RecoveryReport, ReplicaProgress, TailCheck,
};
use crate::put::{PhysicalOffset, PutResult, PutStatus, QueueOffset};
use crate::queue::{self, ConsumeQueues};
use crate::read::{self, GetMessageResult, MessageFilter, QueryMessageResult, TransferLimits};
use crate::service::{Pause, ServiceThread, Waker};

/// How often the SYNC_FLUSH background flusher picks up puts that did not wait (`WAIT=false`).
const SYNC_MODE_TICK: Duration = Duration::from_millis(10);
/// Shutdown flushes until nothing moves, at most this many times (RocketMQ: 10).
const SHUTDOWN_FLUSH_RETRIES: usize = 10;
/// Longest a clean shutdown waits for the dispatcher to catch up (RocketMQ: 5 s).
const SHUTDOWN_DISPATCH_WAIT: Duration = Duration::from_secs(5);
/// How long deleting a topic waits for dispatch to reach the CommitLog's end (puts wait
/// meanwhile).
const DELETE_TOPIC_DISPATCH_WAIT: Duration = Duration::from_secs(10);
/// The dispatcher's idle tick; puts wake it sooner.
const REPUT_TICK: Duration = Duration::from_millis(1);
/// The tail check runs once when woken at start; after that its thread only idles.
const TAIL_CHECK_IDLE: Duration = Duration::from_secs(3600);

/// Counters from [`MessageStore::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// SYNC_FLUSH flushes run by waiting writers (group-commit rounds). Puts divided by
    /// this is the average group size.
    pub group_commit_flushes: u64,
    /// CommitLog bytes written but not yet dispatched to ConsumeQueues and the index.
    pub dispatch_behind_bytes: u64,
}

/// Builder for [`MessageStore`].
#[must_use]
#[derive(Debug)]
pub struct StoreBuilder {
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    faults: FaultInjector,
    listener: Option<Arc<dyn ArrivalListener>>,
    disk: Arc<dyn DiskUsage>,
}

impl StoreBuilder {
    /// How cleanup measures disk usage (tests pass a
    /// [`ManualDiskUsage`](crate::ManualDiskUsage)). Default: [`FsDiskUsage`].
    pub fn disk_usage(mut self, disk: Arc<dyn DiskUsage>) -> Self {
        self.disk = disk;
        self
    }

    /// Tells `listener` about every message as it becomes readable (long polling).
    pub fn arrival_listener(mut self, listener: Arc<dyn ArrivalListener>) -> Self {
        self.listener = Some(listener);
        self
    }

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
        MessageStore::open_with(self)
    }
}

/// A RocketMQ-compatible message store. Share it between threads with an `Arc`; every
/// method takes `&self`.
#[derive(Debug)]
pub struct MessageStore {
    config: StoreConfig,
    log: Arc<CommitLog>,
    queues: Arc<ConsumeQueues>,
    index: Option<Arc<IndexFiles>>,
    dispatcher: Arc<Dispatcher>,
    checkpoints: Arc<Checkpoints>,
    /// Background threads, stopped in the order the module docs give.
    threads: Mutex<Threads>,
    /// Wakes the flusher from the put path without taking the `threads` lock.
    flush_waker: Waker,
    /// Wakes the dispatcher after each put.
    reput_waker: Waker,
    report: RecoveryReport,
    limits: TransferLimits,
    /// Holds the exclusive lock on `<root>/lock` for the store's life.
    lock_file: Mutex<Option<File>>,
    cleaner: Arc<Cleaner>,
    clean_waker: Waker,
    /// The background check of the newest records after a clean reopen.
    tail_check: Arc<Mutex<TailCheck>>,
}

#[derive(Debug, Default)]
struct Threads {
    tail_check: Option<ServiceThread>,
    cleaner: Option<ServiceThread>,
    flusher: Option<ServiceThread>,
    reput: Option<ServiceThread>,
    cq_flusher: Option<ServiceThread>,
}

impl Threads {
    /// Stops and joins whatever is still running, in dependency order.
    fn stop_all(&mut self) {
        for t in [
            &mut self.tail_check,
            &mut self.cleaner,
            &mut self.flusher,
            &mut self.reput,
            &mut self.cq_flusher,
        ] {
            if let Some(mut t) = t.take() {
                t.stop();
            }
        }
    }
}

impl MessageStore {
    /// A builder with RocketMQ's defaults rooted at `root`.
    pub fn builder(root: impl Into<PathBuf>) -> StoreBuilder {
        StoreBuilder {
            config: StoreConfig::new(root),
            clock: Arc::new(SystemClock),
            faults: FaultInjector::default(),
            listener: None,
            disk: Arc::new(FsDiskUsage),
        }
    }

    /// Opens (creating if needed) the store described by `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] before touching the disk; [`Error::Locked`] if another
    /// process holds the directory; [`Error::Corrupted`] naming file and offset if the
    /// files are inconsistent or corrupt in the middle; I/O errors.
    pub fn open(config: StoreConfig) -> Result<MessageStore> {
        Self::builder(PathBuf::new()).config(config).open()
    }

    fn open_with(builder: StoreBuilder) -> Result<MessageStore> {
        let StoreBuilder {
            config,
            clock,
            faults,
            listener,
            disk,
        } = builder;
        config.validate()?;
        let root = config.store_path_root_dir.clone();
        let lock_file = lock_dir(&root)?;
        let abort = root.join("abort");
        let abnormal = abort.exists();
        let recovered = crate::recovery::recover(&config, Arc::clone(&clock), &faults, abnormal)?;
        let log = recovered.log;
        let queues = Arc::new(ConsumeQueues::new(
            config.consume_queue_dir(),
            config.mapped_file_size_consume_queue,
            recovered.queues,
            faults.clone(),
        ));
        log.restore_queue_offsets(
            queues
                .all()
                .iter()
                .map(|q| (q.topic(), q.queue_id(), q.max_offset()))
                .collect::<Vec<_>>(),
        );
        // The abort file exists while the store runs; a clean shutdown removes it.
        crate::fault::guarded(&faults, crate::fault::IoOp::Write, || File::create(&abort))
            .map_err(|e| Error::io("create", &abort, e))?;
        crate::file::mmap::sync_dir(&root, &faults)?;
        let index = recovered.index.map(Arc::new);
        let checkpoints = Arc::new(recovered.checkpoints);
        let dispatcher = Arc::new(
            Dispatcher::new(
                Arc::clone(&log),
                Arc::clone(&queues),
                index.clone(),
                recovered.report.valid_end.0,
                recovered.last_timestamp,
                faults,
                listener,
            )
            .with_delay_levels(config.delay_levels()?),
        );
        let flusher = spawn_flusher(&config, &log)?;
        let reput = {
            let dispatcher = Arc::clone(&dispatcher);
            ServiceThread::spawn("rmq-reput", REPUT_TICK, move || {
                dispatcher.run_once();
            })
            .map_err(|e| Error::io("spawn dispatcher", &root, e))?
        };
        let cq_flusher = spawn_cq_flusher(
            &config,
            &dispatcher,
            &queues,
            index.as_ref(),
            &checkpoints,
            &log,
        )?;
        let cleaner = Arc::new(Cleaner::new(
            &config,
            CleanerParts {
                log: Arc::clone(&log),
                queues: Arc::clone(&queues),
                index: index.clone(),
                checkpoints: Arc::clone(&checkpoints),
                clock,
                disk,
            },
        )?);
        let clean_thread = {
            let cleaner = Arc::clone(&cleaner);
            ServiceThread::spawn_pausing(
                "rmq-clean",
                config.clean_resource_interval,
                move |pause| match cleaner.run_pass(pause) {
                    Ok(report) if !report.removed.is_empty() => tracing::info!(
                        files = report.removed.len(),
                        bytes = report.removed.iter().map(|r| r.bytes).sum::<u64>(),
                        min_offset = report.commit_log_min_offset.0,
                        "cleanup pass deleted files"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cleanup pass failed"),
                },
            )
            .map_err(|e| Error::io("spawn cleaner", &root, e))?
        };
        let deferred = DeferredCheck {
            log: Arc::clone(&log),
            queues: Arc::clone(&queues),
            tail: recovered
                .report
                .tail_deferred
                .map(|(from, to)| (from.0, to.0)),
            queue_units: recovered.report.queue_units_deferred,
            index: index
                .clone()
                .zip(recovered.report.index_file_deferred.clone()),
            mode: config.recovery_mode,
            max_record: config.max_record_len(),
        };
        let (tail_check, tail_thread) =
            if deferred.tail.is_some() || deferred.queue_units || deferred.index.is_some() {
                let state = Arc::new(Mutex::new(TailCheck::Running));
                let thread = spawn_tail_check(deferred, &state)
                    .map_err(|e| Error::io("spawn tail check", &root, e))?;
                (state, Some(thread))
            } else {
                (Arc::new(Mutex::new(TailCheck::NotDeferred)), None)
            };
        let memory_window = crate::file::mmap::physical_memory_bytes() / 100
            * u64::from(config.access_message_in_memory_max_ratio);
        let limits = TransferLimits {
            memory_window,
            bytes_in_memory: config.max_transfer_bytes_on_message_in_memory,
            count_in_memory: config.max_transfer_count_on_message_in_memory,
            bytes_in_disk: config.max_transfer_bytes_on_message_in_disk,
            count_in_disk: config.max_transfer_count_on_message_in_disk,
        };
        Ok(MessageStore {
            flush_waker: flusher.waker(),
            reput_waker: reput.waker(),
            clean_waker: clean_thread.waker(),
            cleaner,
            tail_check,
            threads: Mutex::new(Threads {
                tail_check: tail_thread,
                cleaner: Some(clean_thread),
                flusher: Some(flusher),
                reput: Some(reput),
                cq_flusher: Some(cq_flusher),
            }),
            config,
            log,
            queues,
            index,
            dispatcher,
            checkpoints,
            report: recovered.report,
            limits,
            lock_file: Mutex::new(Some(lock_file)),
        })
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Where the background check of the newest records stands (after a clean reopen with
    /// `checkTailInBackground`); [`TailCheck::NotDeferred`] when opening checked them.
    pub fn tail_check(&self) -> TailCheck {
        self.tail_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
        self.reput_waker.wake();
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

    /// Appends CommitLog bytes copied from a master, as received: `offset` must be where
    /// the previous call's bytes ended (see [`ReplicaProgress::received_end`]; on an empty
    /// store, any file boundary). Records are checked (structure, body CRC, the whole-record
    /// CRC property when present, their own offset) before they are written, become visible
    /// only whole, and are dispatched and flushed as on a master. A record cut by the end of
    /// `bytes` waits for the next call.
    ///
    /// # Errors
    /// [`Error::Replica`] for bytes that do not continue this log or are not valid
    /// records (the records before them are kept; the partial tail is dropped); I/O errors;
    /// [`Error::ShutDown`] after shutdown.
    pub fn append_replicated(
        &self,
        offset: PhysicalOffset,
        bytes: &[u8],
    ) -> Result<ReplicaProgress> {
        let before = self.log.max_offset();
        let progress = self.log.append_replicated(offset.0, bytes)?;
        if progress.visible_end.0 != before {
            self.reput_waker.wake();
            if self.config.flush_disk_type == FlushMode::Sync || !self.config.flush_commit_log_timed
            {
                self.wake_flusher();
            }
        }
        Ok(progress)
    }

    /// Forgets a partly received record (a new replication connection sends it again) and
    /// returns the end of the visible log: the offset to ask a master for.
    pub fn replica_resume(&self) -> PhysicalOffset {
        self.log.replica_resume()
    }

    /// Up to `max` raw CommitLog bytes from `offset` to the end of what is written in its
    /// file (a master's replication stream). `None` below the minimum offset or where
    /// nothing is written yet.
    pub fn read_raw(&self, offset: PhysicalOffset, max: usize) -> Option<LogBytes> {
        self.log.read_raw(offset.0, max)
    }

    /// The CommitLog file size.
    pub fn commit_log_file_size(&self) -> u64 {
        self.log.file_size()
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
            dispatch_behind_bytes: self.dispatch_behind_bytes(),
        }
    }

    /// CommitLog bytes not yet in ConsumeQueues and the index.
    pub fn dispatch_behind_bytes(&self) -> u64 {
        self.log
            .max_offset()
            .saturating_sub(self.dispatcher.reput_offset())
    }

    /// Everything below this CommitLog offset is in its ConsumeQueue and the index.
    pub fn dispatched_offset(&self) -> PhysicalOffset {
        PhysicalOffset(self.dispatcher.reput_offset())
    }

    /// Waits until every message stored before the call is visible to
    /// [`get_message`](Self::get_message) and [`query_message`](Self::query_message);
    /// false on timeout or if dispatch has failed.
    pub fn wait_dispatched(&self, timeout: Duration) -> bool {
        let target = self.log.max_offset();
        self.reput_waker.wake();
        self.dispatcher.wait_dispatched(target, timeout)
    }

    /// Up to `max_msgs` messages of `topic`/`queue_id` from queue offset `offset`, with
    /// RocketMQ's statuses, next-begin offsets and transfer limits. `group` is the
    /// consumer group (kept for API parity; the store does not use it). `filter` = `None`
    /// takes every message.
    ///
    /// # Errors
    /// [`Error::ShutDown`] after shutdown; [`Error::Corrupted`] if a ConsumeQueue unit or
    /// the record it points at is corrupt (such a message is never returned).
    pub fn get_message(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        offset: QueueOffset,
        max_msgs: u32,
        filter: Option<&dyn MessageFilter>,
    ) -> Result<GetMessageResult> {
        let _ = group;
        if self.log.is_closed() {
            return Err(Error::ShutDown);
        }
        let q = self.queues.get(topic, queue_id);
        read::get_message(
            &self.log,
            q.as_deref(),
            offset.0,
            max_msgs,
            filter,
            &self.limits,
        )
    }

    /// The first queue offset still readable (0 for an unknown queue).
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: u32) -> QueueOffset {
        QueueOffset(
            self.queues
                .get(topic, queue_id)
                .map_or(0, |q| q.min_offset()),
        )
    }

    /// One past the last queue offset (0 for an unknown queue).
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: u32) -> QueueOffset {
        QueueOffset(
            self.queues
                .get(topic, queue_id)
                .map_or(0, |q| q.max_offset()),
        )
    }

    /// The queue offset of the message stored at `timestamp` (ms), else the nearer
    /// neighbour; 0 for an empty or unknown queue.
    pub fn offset_in_queue_by_time(
        &self,
        topic: &str,
        queue_id: u32,
        timestamp: i64,
    ) -> QueueOffset {
        QueueOffset(
            self.queues
                .get(topic, queue_id)
                .map_or(0, |q| read::offset_by_time(&self.log, &q, timestamp)),
        )
    }

    /// A queue's unit at `offset` (position, size and tags code — for the schedule topic
    /// the time the message is due); `None` beyond the queue's ends or for a filler.
    pub fn queue_unit(&self, topic: &str, queue_id: u32, offset: QueueOffset) -> Option<CqUnit> {
        let unit = self.queues.get(topic, queue_id)?.unit(offset.0)?;
        (!unit.is_filler()).then_some(unit)
    }

    /// The CommitLog offset of a queue's message (`getCommitLogOffsetInQueue`).
    pub fn commit_log_offset_in_queue(
        &self,
        topic: &str,
        queue_id: u32,
        offset: QueueOffset,
    ) -> Option<PhysicalOffset> {
        let unit = self.queues.get(topic, queue_id)?.unit(offset.0)?;
        (!unit.is_filler()).then_some(PhysicalOffset(unit.physical_offset as u64))
    }

    /// Store time of a queue's message, -1 if there is none (`getMessageStoreTimeStamp`).
    pub fn message_store_timestamp(&self, topic: &str, queue_id: u32, offset: QueueOffset) -> i64 {
        self.commit_log_offset_in_queue(topic, queue_id, offset)
            .and_then(|p| self.read(p).ok().flatten())
            .and_then(|r| r.view().ok().map(|v| v.store_timestamp))
            .unwrap_or(-1)
    }

    /// Store time of the queue's first readable message, -1 if none.
    pub fn earliest_message_time_in_queue(&self, topic: &str, queue_id: u32) -> i64 {
        let min = self.min_offset_in_queue(topic, queue_id);
        self.message_store_timestamp(topic, queue_id, min)
    }

    /// Store time of the first message in the CommitLog, -1 if none.
    pub fn earliest_message_time(&self) -> i64 {
        self.records_from(self.min_offset())
            .next()
            .and_then(std::result::Result::ok)
            .and_then(|r| r.view().ok().map(|v| v.store_timestamp))
            .unwrap_or(-1)
    }

    /// Messages of `topic` carrying `key` (UNIQ_KEY or one of KEYS) stored within
    /// `[begin, end]` (ms), at most `max` (capped at 64), in CommitLog order. Every hit is
    /// read and its key checked, so hash collisions and damaged index entries never show.
    pub fn query_message(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
    ) -> QueryMessageResult {
        let max = max.min(MAX_MSGS_NUM_BATCH);
        let mut offsets = self
            .index
            .as_ref()
            .map(|i| i.query(topic, key, max * 2, begin, end))
            .unwrap_or_default();
        offsets.sort_unstable();
        offsets.dedup();
        let mut messages = Vec::new();
        for phys in offsets {
            match self.log.read(phys) {
                Ok(Some(rec)) if read::record_has_key(&rec, topic, key) => {
                    let t = rec.view().map_or(0, |v| v.store_timestamp);
                    if (begin..=end).contains(&t) {
                        messages.push(rec);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(offset = phys, error = %e, "index hit does not lead to a record");
                }
            }
        }
        if messages.len() > max {
            messages.drain(..messages.len() - max);
        }
        QueryMessageResult { messages }
    }

    /// Runs one cleanup pass now, on the calling thread, exactly as the `rmq-clean` thread
    /// does every `cleanResourceInterval`: deletes expired CommitLog files when
    /// triggered, files under disk pressure, then ConsumeQueue and index files below the new
    /// CommitLog minimum; sets or clears the disk-full mark. Passes never overlap.
    ///
    /// # Errors
    /// [`Error::ShutDown`] after shutdown; an I/O error renaming or removing a file (what
    /// was deleted before it stays deleted; the store stays consistent).
    pub fn run_cleanup(&self) -> Result<CleanupReport> {
        if self.log.is_closed() {
            return Err(Error::ShutDown);
        }
        self.cleaner.run_pass(&Pause::default())
    }

    /// Deletes every ConsumeQueue of `topic` (RocketMQ's `cleanUnusedTopic` for one
    /// topic): from now on no read finds one, a read in the middle of one finishes on the
    /// old bytes, and its files are renamed out of the namespace now and unmapped and
    /// unlinked (with their directories) once the last reader lets go. The topic's records
    /// stay in the CommitLog, and its keys in the IndexFiles, until they expire, as in
    /// RocketMQ; a message of the topic dispatched later starts a new queue at offset 0.
    /// Returns the files deleted.
    ///
    /// # Errors
    /// [`Error::ShutDown`] after shutdown; [`Error::DispatchBehind`] (nothing deleted) when
    /// dispatch does not reach the CommitLog's end within 10 s; an I/O error renaming a
    /// file (the queues are out
    /// of the store for this run either way; a file that kept its name is loaded again by
    /// the next open, and deleting the topic again removes it).
    pub fn delete_topic(&self, topic: &str) -> Result<Vec<RemovedFile>> {
        if self.log.is_closed() {
            return Err(Error::ShutDown);
        }
        // Every record of the topic appended so far must be in its queues before they go
        // (else the dispatcher would bring a queue back with old offsets), and nothing
        // may be appended meanwhile.
        let queues = self.log.forget_topic_with(topic, || {
            if !self.wait_dispatched(DELETE_TOPIC_DISPATCH_WAIT) {
                return Err(Error::DispatchBehind {
                    waited: DELETE_TOPIC_DISPATCH_WAIT,
                });
            }
            // Durable before any file goes: a restart after a crash re-dispatches the
            // newest records, and must leave the deleted topic's out.
            queue::write_tombstone(
                &self.config.consume_queue_dir(),
                topic,
                self.log.max_offset(),
                self.log.faults(),
            )?;
            Ok(self.queues.remove_topic(topic))
        })?;
        self.cleaner.delete_queues(queues)
    }

    /// Lets the next 20 cleanup passes delete expired files whatever the hour (RocketMQ
    /// `executeDeleteFilesManually`, the admin request DELETE_EXPIRED_COMMITLOG), and wakes
    /// the cleaner.
    pub fn delete_expired_files_manually(&self) {
        self.cleaner.arm_manual();
        self.clean_waker.wake();
    }

    /// The disk is fuller than `diskSpaceWarningLevelRatio`: puts get
    /// [`PutStatus::DiskFull`] until cleanup brings it below.
    pub fn is_disk_full(&self) -> bool {
        self.log.is_disk_full()
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

    /// Makes everything stored so far durable and vouched for: flushes the CommitLog, waits
    /// (up to 5 s) for dispatch, flushes ConsumeQueues and the index, and writes the
    /// checkpoint (which the `rmq-flush-cq` thread otherwise does every
    /// `flushIntervalConsumeQueue`). Cleanup only deletes what the checkpoint covers.
    ///
    /// # Errors
    /// A flush or checkpoint write error; [`Error::ShutDown`] after shutdown.
    pub fn checkpoint(&self) -> Result<()> {
        if self.log.is_closed() {
            return Err(Error::ShutDown);
        }
        self.flush()?;
        self.reput_waker.wake();
        self.dispatcher
            .wait_dispatched_while_progressing(self.log.max_offset(), SHUTDOWN_DISPATCH_WAIT);
        checkpoint_derived(
            &self.dispatcher,
            &self.queues,
            self.index.as_deref(),
            &self.checkpoints,
            &self.log,
        )
    }

    /// Refuses new puts, flushes everything, stops and joins the background threads and
    /// releases the directory lock.
    ///
    /// # Errors
    /// The final flush's error; the threads are stopped and the lock released regardless.
    pub fn shutdown(self) -> Result<()> {
        self.close()
    }

    /// Stops every thread without flushing, checkpointing or removing the abort file, as
    /// if the process had been killed (the page cache keeps what was written). The next
    /// open runs abnormal recovery. For crash tests and tools.
    #[cfg(feature = "testing")]
    pub fn halt(self) {
        self.log.close();
        self.threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop_all();
        self.lock_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// [`shutdown`](Self::shutdown) through a shared reference, for a store held in an
    /// `Arc` by several owners (a server's request handlers). Idempotent: later calls
    /// return `Ok(())`; puts after it get `SERVICE_NOT_AVAILABLE`, reads `Error::ShutDown`.
    ///
    /// # Errors
    /// As [`shutdown`](Self::shutdown).
    pub fn close(&self) -> Result<()> {
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
        let mut threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(mut check) = threads.tail_check.take() {
            check.stop();
        }
        // No deletion while shutting down.
        if let Some(mut cleaner) = threads.cleaner.take() {
            cleaner.stop();
        }
        if let Some(mut flusher) = threads.flusher.take() {
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
        // Let the dispatcher catch up, then stop it and the CQ flusher, and checkpoint.
        let caught_up = self
            .dispatcher
            .wait_dispatched_while_progressing(self.log.max_offset(), SHUTDOWN_DISPATCH_WAIT);
        threads.stop_all();
        let clean = caught_up
            && outcome.is_ok()
            && match checkpoint_derived(
                &self.dispatcher,
                &self.queues,
                self.index.as_deref(),
                &self.checkpoints,
                &self.log,
            ) {
                Ok(()) => true,
                Err(e) => {
                    outcome = outcome.and(Err(e));
                    false
                }
            };
        // Damage found in the newest records: the next open checks them before it
        // returns (as after a crash) and refuses to open, naming the spot.
        let damaged = self.log.is_damaged()
            || matches!(
                self.tail_check(),
                TailCheck::QueueDamaged { .. } | TailCheck::IndexDamaged { .. }
            );
        if clean && !self.log.group.is_poisoned() && !damaged {
            let abort = self.config.store_path_root_dir.join("abort");
            if let Err(e) = crate::fault::remove_file(self.log.faults(), &abort) {
                tracing::warn!(error = %e, "could not remove the abort file");
            }
        } else {
            tracing::warn!("shutdown left the abort file: the next open recovers as after a crash");
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

/// Flushes ConsumeQueues and the index up to what was dispatched when called, then writes
/// both checkpoints (offsets only vouch for flushed data).
fn checkpoint_derived(
    dispatcher: &Dispatcher,
    queues: &ConsumeQueues,
    index: Option<&IndexFiles>,
    checkpoints: &Checkpoints,
    log: &CommitLog,
) -> Result<()> {
    let dispatched = dispatcher.reput_offset();
    let timestamp = dispatcher.last_timestamp();
    let last = checkpoints.last();
    let durable = log.group.durable();
    if dispatched == last.dispatched_durable && durable == last.commit_log_durable {
        return Ok(());
    }
    queues.flush()?;
    if let Some(index) = index {
        index.flush()?;
    }
    let stamps = TimestampCheckpoint {
        physic_msg_timestamp: if durable >= dispatched { timestamp } else { 0 },
        logics_msg_timestamp: timestamp,
        index_msg_timestamp: index.map_or(0, IndexFiles::newest_full_end_timestamp),
    };
    checkpoints.write(durable, dispatched, stamps)
}

fn spawn_cq_flusher(
    config: &StoreConfig,
    dispatcher: &Arc<Dispatcher>,
    queues: &Arc<ConsumeQueues>,
    index: Option<&Arc<IndexFiles>>,
    checkpoints: &Arc<Checkpoints>,
    log: &Arc<CommitLog>,
) -> Result<ServiceThread> {
    let dispatcher = Arc::clone(dispatcher);
    let queues = Arc::clone(queues);
    let index = index.cloned();
    let checkpoints = Arc::clone(checkpoints);
    let log = Arc::clone(log);
    ServiceThread::spawn(
        "rmq-flush-cq",
        config.flush_interval_consume_queue,
        move || {
            if let Err(e) =
                checkpoint_derived(&dispatcher, &queues, index.as_deref(), &checkpoints, &log)
            {
                tracing::error!(error = %e, "flushing consume queues / checkpoint failed");
            }
        },
    )
    .map_err(|e| {
        Error::io(
            "spawn consume queue flusher",
            &config.store_path_root_dir,
            e,
        )
    })
}

/// What a clean reopen left to the background check (see [`TailCheck`]).
struct DeferredCheck {
    log: Arc<CommitLog>,
    queues: Arc<ConsumeQueues>,
    /// CommitLog records `[from, to)` to check.
    tail: Option<(u64, u64)>,
    /// Walk every ConsumeQueue unit (the open read only each queue's first and last file).
    queue_units: bool,
    /// The IndexFile whose structural check is left to this pass.
    index: Option<(Arc<IndexFiles>, PathBuf)>,
    mode: crate::config::RecoveryMode,
    max_record: u64,
}

impl DeferredCheck {
    fn run(&self, stopped: &dyn Fn() -> bool) -> TailCheck {
        let mut outcome = TailCheck::Clean { records: 0 };
        if let Some((from, to)) = self.tail {
            outcome = self.log.check_records(from, to, self.mode, stopped);
            if !matches!(outcome, TailCheck::Clean { .. }) {
                return outcome;
            }
        }
        if self.queue_units {
            for q in self.queues.all() {
                if stopped() {
                    return TailCheck::Interrupted;
                }
                if let Some((at, problem)) = q.check_units(self.max_record) {
                    tracing::error!(
                        topic = q.topic(),
                        queue_id = q.queue_id(),
                        queue_offset = at,
                        ?problem,
                        "a consume queue unit is damaged; the next open rebuilds the queue"
                    );
                    return TailCheck::QueueDamaged {
                        topic: q.topic().to_owned(),
                        queue_id: q.queue_id(),
                        queue_offset: at,
                    };
                }
            }
        }
        if let Some((index, path)) = &self.index {
            if stopped() {
                return TailCheck::Interrupted;
            }
            if index.check_file(path) == Some(false) {
                tracing::error!(path = %path.display(), "an index file fails its structural check; the next open rebuilds it");
                return TailCheck::IndexDamaged { path: path.clone() };
            }
        }
        outcome
    }
}

/// Runs the deferred check once, in the background.
fn spawn_tail_check(
    check: DeferredCheck,
    state: &Arc<Mutex<TailCheck>>,
) -> std::io::Result<ServiceThread> {
    let state = Arc::clone(state);
    let mut done = false;
    let thread = ServiceThread::spawn_pausing("rmq-tail-check", TAIL_CHECK_IDLE, move |pause| {
        if done {
            return;
        }
        done = true;
        let started = Instant::now();
        let outcome = check.run(&|| pause.stopped());
        tracing::info!(tail = ?check.tail, took_ms = started.elapsed().as_millis() as u64, outcome = ?outcome, "checked what the clean reopen deferred");
        *state.lock().unwrap_or_else(PoisonError::into_inner) = outcome;
    })?;
    thread.waker().wake();
    Ok(thread)
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
pub(crate) fn lock_dir(root: &Path) -> Result<File> {
    crate::file::mmap::create_dir_durable(root, &FaultInjector::default())?;
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
