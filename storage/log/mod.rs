//! The CommitLog: appends records in RocketMQ's format straight into the mapping, keeps the
//! per topic-queue offsets (`topicQueueTable`), reads and iterates records, and finds the
//! end of valid data when a store is opened.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub(crate) mod flush;
mod replica;
pub use replica::ReplicaProgress;
pub(crate) mod scan;

use scan::{LogEnd, LogFiles, ScanRules};

use crate::clock::Clock;
use crate::config::{RecoveryMode, StoreConfig};
use crate::error::{CorruptionKind, Error, Result};
use crate::fault::FaultInjector;
use crate::file::allocate::Allocator;
use crate::file::mapped_file_queue::{self, MappedFileQueue};
use crate::file::mmap::{self, CreateOptions, MappedFile, SegmentWriter};
use crate::format::Message;
use crate::format::{self, Decoded, EncodeError, RecordError, RecordPlan, RecordView, StoreFields};
use crate::log::flush::GroupCommit;
use crate::put::{Appended, PhysicalOffset, PutResult, PutStatus, QueueOffset};

/// How long an append waits for the allocator to hand over the next file (RocketMQ: 5 s).
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lock holds longer than this count as "page cache busy" only below RocketMQ's sanity bound.
const BUSY_UPPER_BOUND_MS: i64 = 10_000_000;

/// `topicQueueTable`: next queue offset per topic and queue id. Topics map to an index so
/// that a put hashes its topic at most once and allocates its name only the first time;
/// the topic of the previous put is remembered, so a run of puts to one topic hashes
/// nothing. Queue ids (small in practice: RocketMQ topics have a few to a few hundred
/// queues) index a vector.
#[derive(Debug, Default)]
struct QueueTable {
    topics: HashMap<String, usize>,
    queues: Vec<TopicQueues>,
    /// The topic index of the last `slot` call.
    last: Option<usize>,
}

/// Next offsets of one topic's queues.
#[derive(Debug, Default)]
struct TopicQueues {
    name: String,
    /// By queue id, below [`DENSE_QUEUE_IDS`].
    dense: Vec<Option<u64>>,
    /// Larger queue ids.
    sparse: HashMap<u32, u64>,
}

/// Queue ids below this are kept in a vector.
const DENSE_QUEUE_IDS: u32 = 1024;

impl TopicQueues {
    fn slot(&mut self, queue_id: u32) -> &mut u64 {
        if queue_id >= DENSE_QUEUE_IDS {
            return self.sparse.entry(queue_id).or_insert(0);
        }
        let i = queue_id as usize;
        if self.dense.len() <= i {
            self.dense.resize(i + 1, None);
        }
        self.dense[i].get_or_insert(0)
    }

    fn get(&self, queue_id: u32) -> Option<u64> {
        if queue_id >= DENSE_QUEUE_IDS {
            return self.sparse.get(&queue_id).copied();
        }
        self.dense.get(queue_id as usize).copied().flatten()
    }
}

impl QueueTable {
    /// The next-offset slot of a queue, created at 0.
    fn slot(&mut self, topic: &str, queue_id: u32) -> &mut u64 {
        let index = match self.last {
            Some(i) if self.queues[i].name == topic => i,
            _ => {
                let i = if let Some(&i) = self.topics.get(topic) {
                    i
                } else {
                    self.queues.push(TopicQueues {
                        name: topic.to_owned(),
                        ..TopicQueues::default()
                    });
                    self.topics.insert(topic.to_owned(), self.queues.len() - 1);
                    self.queues.len() - 1
                };
                self.last = Some(i);
                i
            }
        };
        self.queues[index].slot(queue_id)
    }

    fn get(&self, topic: &str, queue_id: u32) -> Option<u64> {
        let &i = self.topics.get(topic)?;
        self.queues[i].get(queue_id)
    }

    /// Forgets every queue of `topic`: its next put starts at queue offset 0 (the topic
    /// keeps its index, so no other index moves).
    fn forget(&mut self, topic: &str) {
        if let Some(&i) = self.topics.get(topic) {
            self.queues[i].dense.clear();
            self.queues[i].sparse.clear();
        }
    }
}

/// What opening found and changed at the end of the CommitLog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// End of valid data: the first append goes here.
    pub valid_end: PhysicalOffset,
    /// Records found valid.
    pub records: u64,
    /// A torn record cut off at the tail: file, offset in it, and what was wrong.
    pub truncated: Option<(PathBuf, u64, RecordError)>,
    /// Files after the end of valid data that were removed (empty or torn).
    pub removed_files: Vec<PathBuf>,
    /// Where the CommitLog scan started (bytes below it were trusted).
    pub scanned_from: PhysicalOffset,
    /// Corrupt stretches `[from, to)` skipped in `TolerateAnyCorruption` mode.
    pub gaps: Vec<(PhysicalOffset, PhysicalOffset)>,
    /// The previous run did not shut down cleanly (the `abort` file was present).
    pub abnormal_exit: bool,
    /// ConsumeQueue units written or rewritten from the CommitLog.
    pub consume_queue_units_rebuilt: u64,
    /// ConsumeQueue units cut because their records no longer exist or they were invalid.
    pub consume_queues_trimmed: Vec<(String, u32)>,
    /// IndexFiles removed to be rebuilt (they held entries beyond the durable point).
    pub index_files_rebuilt: Vec<PathBuf>,
    /// `[from, to)`: the newest records, left after a clean shutdown to the background
    /// check (see [`TailCheck`]) instead of being re-read before open returned.
    pub tail_deferred: Option<(PhysicalOffset, PhysicalOffset)>,
    /// ConsumeQueue files between each queue's first and last were not walked unit by
    /// unit at open (a clean reopen): the background check walks them.
    pub queue_units_deferred: bool,
    /// The newest IndexFile, whose structural check (every slot and item) a clean reopen
    /// left to the background check.
    pub index_file_deferred: Option<PathBuf>,
}

/// The background check of the newest CommitLog records after a clean reopen
/// (`checkTailInBackground`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TailCheck {
    /// Nothing was left to it: opening checked the tail itself (or there was none).
    NotDeferred,
    /// Still reading.
    Running,
    /// Every record in the range was valid.
    Clean {
        /// Records checked.
        records: u64,
    },
    /// A bad record (or bytes that are not one) where valid data should be: writes are
    /// refused from then on with this as an [`Error::Corrupted`], the shutdown leaves the
    /// abort file so that the next open re-checks (and refuses to open), and reads never
    /// served the record (they check each one).
    Damaged {
        /// The file holding the damage.
        path: PathBuf,
        /// Offset of the damage within that file.
        offset: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// The CommitLog records were valid, but a ConsumeQueue unit breaks the queue's rule
    /// (impossible offset or size, out of order, or units after a hole): messages from
    /// there on may not be served. Writes go on; shutdown leaves the abort file, so the
    /// next open walks every unit and rebuilds the queue from the CommitLog.
    QueueDamaged {
        /// The queue's topic.
        topic: String,
        /// The queue id.
        queue_id: u32,
        /// Queue offset of the bad unit.
        queue_offset: u64,
    },
    /// The newest IndexFile fails its structural check: queries by key may miss
    /// messages (every hit is verified against its record, so none is wrong). Writes go
    /// on; shutdown leaves the abort file, so the next open rebuilds the file from the
    /// CommitLog.
    IndexDamaged {
        /// The IndexFile.
        path: PathBuf,
    },
    /// Shutdown came first; the next clean open checks again.
    Interrupted,
}

struct PutState {
    writer: Option<SegmentWriter>,
    /// Newest store time written into the current file, if the whole file was written by
    /// this process (else `None`: cleanup reads it from the data when it needs it).
    newest_in_file: Option<i64>,
    /// Start offset of the file the next roll-over takes.
    next_file_offset: u64,
    queue_table: QueueTable,
    /// Replicated bytes received but not yet written (see `replica.rs`).
    replica: replica::ReplicaTail,
    /// Records encoded here before a `pwrite` (SYNC_FLUSH), reused across puts.
    encode_buf: Vec<u8>,
}

pub(crate) struct CommitLog {
    dir: PathBuf,
    file_size: u64,
    max_body: u32,
    with_crc: bool,
    store_host: SocketAddr,
    busy_timeout_ms: i64,
    /// A slave's log takes only replicated bytes.
    replica_only: bool,
    /// Appends go through the file descriptor, not the mapping (SYNC_FLUSH).
    write_through_fd: bool,
    queue: MappedFileQueue,
    put: Mutex<PutState>,
    /// Wall-clock ms when the put lock was taken; 0 while free (OS_PAGECACHE_BUSY check).
    lock_since_ms: AtomicI64,
    allocator: Allocator,
    pub(crate) group: GroupCommit,
    clock: Arc<dyn Clock>,
    faults: FaultInjector,
    closed: AtomicBool,
    /// Set by cleanup while the disk is fuller than `diskSpaceWarningLevelRatio`.
    disk_full: AtomicBool,
    /// Newest store time per full file (by start offset), for expiry decisions.
    newest_by_file: Mutex<HashMap<u64, i64>>,
    /// Damage found by the background tail check: writes are refused with it.
    damage: std::sync::OnceLock<(PathBuf, u64, CorruptionKind)>,
}

impl std::fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitLog")
            .field("dir", &self.dir)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl CommitLog {
    /// Opens (creating if needed) the CommitLog directory, finds the end of valid data,
    /// rebuilds the queue table and starts the allocator.
    pub(crate) fn open(
        cfg: &StoreConfig,
        clock: Arc<dyn Clock>,
        faults: FaultInjector,
        plan: &ScanPlan,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<(CommitLog, RecoveryReport)> {
        let dir = cfg.commit_log_dir();
        let file_size = cfg.mapped_file_size_commit_log;
        let mut files = mapped_file_queue::load_dir(&dir, file_size, &faults)?;
        let report = recover(&dir, &mut files, cfg.check_crc_on_recover, plan, visit)?;
        let queue_table = QueueTable::default();
        let valid_end = report.valid_end.0;
        let mut writer = None;
        let mut shared = Vec::with_capacity(files.len());
        let last_index = files.len().checked_sub(1);
        for (i, file) in files.into_iter().enumerate() {
            let (file, w) = file.into_shared();
            if Some(i) == last_index && !file.is_full() {
                writer = Some(w);
            }
            shared.push(file);
        }
        let next_file_offset = shared
            .last()
            .map_or(valid_end - valid_end % file_size, |f| {
                f.start_offset() + file_size
            });
        let opts = CreateOptions {
            warm: cfg.warm_mapped_file_enable,
            mlock: cfg.mlock_mapped_file,
        };
        let allocator = Allocator::start(dir.clone(), file_size, opts, faults.clone())
            .map_err(|e| Error::io("spawn allocator", &dir, e))?;
        // Have the next file ready before anyone needs it.
        allocator.prepare(next_file_offset);
        let log = CommitLog {
            dir,
            file_size,
            max_body: cfg.max_message_size,
            with_crc: cfg.enabled_append_prop_crc,
            store_host: cfg.store_host,
            busy_timeout_ms: i64::try_from(cfg.os_page_cache_busy_timeout.as_millis())
                .unwrap_or(i64::MAX),
            replica_only: cfg.broker_role == crate::config::BrokerRole::Slave,
            write_through_fd: cfg.flush_disk_type == crate::config::FlushMode::Sync,
            queue: MappedFileQueue::new(file_size, shared),
            put: Mutex::new(PutState {
                writer,
                newest_in_file: None,
                next_file_offset,
                queue_table,
                replica: replica::ReplicaTail::default(),
                encode_buf: Vec::new(),
            }),
            lock_since_ms: AtomicI64::new(0),
            allocator,
            group: GroupCommit::new(valid_end),
            clock,
            faults,
            closed: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
            newest_by_file: Mutex::new(HashMap::new()),
            damage: std::sync::OnceLock::new(),
        };
        Ok((log, report))
    }

    fn lock_put(&self) -> MutexGuard<'_, PutState> {
        self.put.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Status to return before encoding anything, if the log cannot take writes now.
    fn precheck(&self) -> Result<Option<PutStatus>> {
        if self.closed.load(Ordering::Acquire) || self.replica_only {
            return Ok(Some(PutStatus::ServiceNotAvailable));
        }
        if self.disk_full.load(Ordering::Acquire) {
            return Ok(Some(PutStatus::DiskFull));
        }
        if self.group.is_poisoned() {
            return Err(Error::Poisoned);
        }
        if let Some((path, offset, kind)) = self.damage.get() {
            return Err(Error::Corrupted {
                path: path.clone(),
                offset: *offset,
                kind: kind.clone(),
            });
        }
        let since = self.lock_since_ms.load(Ordering::Relaxed);
        if since != 0 {
            let held = self.clock.now_millis() - since;
            if held > self.busy_timeout_ms && held < BUSY_UPPER_BOUND_MS {
                return Ok(Some(PutStatus::OsPageCacheBusy));
            }
        }
        Ok(None)
    }

    /// Appends one message. Validation happens before any byte is written.
    pub(crate) fn put(&self, msg: &Message) -> Result<PutResult> {
        if let Some(status) = self.precheck()? {
            return Ok(PutResult::rejected(status));
        }
        let plan = match self.plan(msg) {
            Ok(plan) => plan,
            Err(e) => return Ok(PutResult::rejected(e.status())),
        };
        let total = plan.len() as u64;
        self.append(
            std::slice::from_ref(&plan),
            &msg.topic,
            msg.queue_id,
            msg.advances_queue(),
            total,
        )
    }

    /// Appends a batch (same topic and queue, no delay, not transactional) as consecutive
    /// records in one file with consecutive queue offsets.
    pub(crate) fn put_batch(&self, msgs: &[Message]) -> Result<PutResult> {
        if let Some(status) = self.precheck()? {
            return Ok(PutResult::rejected(status));
        }
        let Some(first) = msgs.first() else {
            return Ok(PutResult::rejected(PutStatus::MessageIllegal));
        };
        // The batch body as a client sends it: per message 4+4+4+4 + 4+body + 2+properties.
        let mut batch_body: u64 = 0;
        for m in msgs {
            let legal = m.topic == first.topic
                && m.queue_id == first.queue_id
                && m.sys_flag & format::TRANSACTION_TYPE_MASK == format::TRANSACTION_NOT_TYPE
                && m.property(format::keys::DELAY).is_none();
            if !legal {
                return Ok(PutResult::rejected(EncodeError::IllegalBatch.status()));
            }
            batch_body += 22 + m.body.len() as u64 + m.properties.len() as u64;
        }
        if batch_body > u64::from(self.max_body) {
            return Ok(PutResult::rejected(PutStatus::MessageIllegal));
        }
        let mut plans = Vec::with_capacity(msgs.len());
        let mut total = 0u64;
        for m in msgs {
            match self.plan(m) {
                Ok(plan) => {
                    total += plan.len() as u64;
                    plans.push(plan);
                }
                Err(e) => return Ok(PutResult::rejected(e.status())),
            }
        }
        if total + format::END_FILE_MIN_BLANK_LENGTH > self.file_size {
            return Ok(PutResult::rejected(PutStatus::MessageIllegal));
        }
        self.append(&plans, &first.topic, first.queue_id, true, total)
    }

    fn plan<'m>(&self, msg: &'m Message) -> Result<RecordPlan<'m>, EncodeError> {
        let plan = RecordPlan::new(msg, self.store_host, self.max_body, self.with_crc)?;
        if plan.len() as u64 + format::END_FILE_MIN_BLANK_LENGTH > self.file_size {
            return Err(EncodeError::RecordTooLarge {
                size: plan.len(),
                max: self.file_size - 8,
            });
        }
        Ok(plan)
    }

    fn append(
        &self,
        plans: &[RecordPlan<'_>],
        topic: &str,
        queue_id: u32,
        advances_queue: bool,
        total: u64,
    ) -> Result<PutResult> {
        let mut st = self.lock_put();
        let now = self.clock.now_millis();
        self.lock_since_ms.store(now.max(1), Ordering::Relaxed);
        let result =
            self.append_locked(&mut st, plans, topic, queue_id, advances_queue, total, now);
        self.lock_since_ms.store(0, Ordering::Relaxed);
        drop(st);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn append_locked(
        &self,
        st: &mut PutState,
        plans: &[RecordPlan<'_>],
        topic: &str,
        queue_id: u32,
        advances_queue: bool,
        total: u64,
        store_timestamp: i64,
    ) -> Result<PutResult> {
        // `close` takes this lock after setting the flag: a put that passed the precheck
        // before that must not append once shutdown has begun.
        if self.closed.load(Ordering::Acquire) {
            return Ok(PutResult::rejected(PutStatus::ServiceNotAvailable));
        }
        // Find room: the record (or whole batch) plus 8 bytes for a future BLANK.
        loop {
            match &mut st.writer {
                Some(w) if w.remaining() >= total + format::END_FILE_MIN_BLANK_LENGTH => break,
                Some(_) => self.finish_file(st),
                None => {
                    if !self.open_next_file(st)? {
                        return Ok(PutResult::rejected(PutStatus::CreateMappedFileFailed));
                    }
                }
            }
        }
        // One lookup: the slot is read now and advanced after the write (the topic's key
        // is allocated only the first time the topic is seen).
        let slot = advances_queue.then(|| st.queue_table.slot(topic, queue_id));
        let queue_offset = slot.as_deref().copied().unwrap_or(0);
        let Some(writer) = st.writer.as_mut() else {
            return Ok(PutResult::rejected(PutStatus::UnknownError));
        };
        let base = writer.file().start_offset() + writer.write_pos();
        let store_host = self.store_host;
        let encode = |buf: &mut [u8]| {
            let mut at = 0usize;
            let mut later = Vec::new();
            for (i, plan) in plans.iter().enumerate() {
                let len = plan.len();
                let fields = StoreFields {
                    queue_offset: if advances_queue {
                        (queue_offset + i as u64) as i64
                    } else {
                        0
                    },
                    physical_offset: (base + at as u64) as i64,
                    store_timestamp,
                    store_host,
                };
                plan.write(&mut buf[at..at + len], &fields);
                if i > 0 {
                    later.push(base + at as u64);
                }
                at += len;
            }
            later
        };
        let later_offsets = if self.write_through_fd {
            // Every SYNC_FLUSH put is flushed at once: writing it with pwrite leaves the
            // mapping's page-table entries clean, so the flush's writeback has no mapped
            // dirty page to write-protect (a TLB shootdown each) and the next record in the
            // same page takes no write fault. Readers see the bytes through the mapping,
            // which shares the page cache.
            let scratch = &mut st.encode_buf;
            scratch.clear();
            scratch.resize(total as usize, 0);
            let later = encode(scratch);
            writer.write_through_fd(scratch)?;
            later
        } else {
            writer.append(total as usize, encode)
        };
        if let Some(newest) = st.newest_in_file.as_mut() {
            *newest = (*newest).max(store_timestamp);
        }
        let count = plans.len() as u64;
        if let Some(slot) = slot {
            *slot = queue_offset + count;
        }
        Ok(PutResult {
            status: PutStatus::PutOk,
            appended: Some(Appended {
                physical_offset: PhysicalOffset(base),
                wrote_bytes: total,
                queue_offset: QueueOffset(queue_offset),
                msg_count: count as u32,
                store_timestamp,
                later_offsets,
                store_host,
            }),
        })
    }

    /// Ends the active file with a BLANK and remembers its newest store time.
    fn finish_file(&self, st: &mut PutState) {
        let Some(mut w) = st.writer.take() else {
            return;
        };
        w.finish_with_blank();
        let start = w.file().start_offset();
        if let Some(newest) = st.newest_in_file.take().filter(|&t| t != i64::MIN) {
            self.newest_by_file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(start, newest);
        }
    }

    /// Takes the next file from the allocator as the active one; false if none came in time.
    fn open_next_file(&self, st: &mut PutState) -> Result<bool> {
        let offset = st.next_file_offset;
        let Some(file) = self.allocator.take(offset, ALLOCATE_TIMEOUT)? else {
            return Ok(false);
        };
        let (file, writer) = file.into_shared();
        self.queue.push(file);
        st.writer = Some(writer);
        st.newest_in_file = Some(i64::MIN);
        st.next_file_offset = offset + self.file_size;
        self.allocator.prepare(st.next_file_offset);
        Ok(true)
    }

    /// The injector the store's file I/O goes through.
    pub(crate) fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// Flushes published data: each file from the durable offset on, by the page rule.
    /// Returns the new durable offset. Call through [`GroupCommit`] only.
    pub(crate) fn flush_files(&self, least_pages: u32) -> Result<u64> {
        let durable = self.group.durable();
        let mut reached = durable;
        for file in self.queue.files_from(durable) {
            file.flush(least_pages)?;
            let flushed = file.flushed();
            reached = file.start_offset() + flushed;
            if flushed < file.size() {
                break;
            }
        }
        Ok(reached.max(durable))
    }

    /// Flushes every file from the one holding `offset` wholly, whatever the recorded flush
    /// positions (recovery: data found after an abnormal exit may be only in the page cache).
    pub(crate) fn flush_all_from(&self, offset: u64) -> Result<()> {
        for file in self.queue.files_from(offset) {
            file.flush_all()?;
        }
        Ok(())
    }

    /// Flushes through the group-commit lock, as the background flusher does.
    pub(crate) fn flush(&self, least_pages: u32) -> Result<()> {
        self.group.flush_with(|| self.flush_files(least_pages))
    }

    pub(crate) fn min_offset(&self) -> u64 {
        self.queue.min_offset()
    }

    pub(crate) fn max_offset(&self) -> u64 {
        self.queue.max_offset()
    }

    pub(crate) fn file_count(&self) -> usize {
        self.queue.file_count()
    }

    /// Every file, oldest first (the last one is the active file).
    pub(crate) fn files(&self) -> Vec<Arc<MappedFile>> {
        self.queue.all()
    }

    /// The log's files, for cleanup to take the oldest.
    pub(crate) fn file_queue(&self) -> &MappedFileQueue {
        &self.queue
    }

    /// Forgets what is known about a deleted file.
    pub(crate) fn forget_file(&self, start: u64) {
        self.newest_by_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&start);
    }

    /// The newest store time in a full file: remembered when this process filled it, else
    /// read once from the records (never from the file's mtime, which copies and restores
    /// change). `None` if the file holds no readable record.
    pub(crate) fn newest_store_time(&self, file: &MappedFile) -> Option<i64> {
        let start = file.start_offset();
        if let Some(&t) = self
            .newest_by_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&start)
        {
            return Some(t);
        }
        let newest = newest_in(file.readable_from(0))?;
        if file.is_full() {
            self.newest_by_file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(start, newest);
        }
        Some(newest)
    }

    /// Marks the disk full (puts get [`PutStatus::DiskFull`]) or clears the mark.
    pub(crate) fn set_disk_full(&self, full: bool) -> bool {
        self.disk_full.swap(full, Ordering::AcqRel)
    }

    pub(crate) fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Acquire)
    }

    /// Sets the next queue offset of each queue (from the recovered ConsumeQueues) before
    /// the first put.
    pub(crate) fn restore_queue_offsets<'a>(
        &self,
        queues: impl IntoIterator<Item = (&'a str, u32, u64)>,
    ) {
        let mut st = self.lock_put();
        for (topic, queue_id, next) in queues {
            let slot = st.queue_table.slot(topic, queue_id);
            *slot = (*slot).max(next);
        }
    }

    /// Runs `f` while no put is in progress and none can start, then, if it succeeded,
    /// forgets `topic`'s next queue offsets (RocketMQ's `removeQueueFromTopicQueueTable`):
    /// the topic's next message starts its queue again at 0.
    pub(crate) fn forget_topic_with<R>(
        &self,
        topic: &str,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let mut st = self.lock_put();
        let out = f()?;
        st.queue_table.forget(topic);
        Ok(out)
    }

    /// The file holding `offset` and the published bytes from it (for the dispatcher).
    pub(crate) fn file_at(&self, offset: u64) -> Option<Arc<MappedFile>> {
        self.queue.find(offset)
    }

    pub(crate) fn file_size(&self) -> u64 {
        self.file_size
    }

    pub(crate) fn next_queue_offset(&self, topic: &str, queue_id: u32) -> u64 {
        let st = self.lock_put();
        st.queue_table.get(topic, queue_id).unwrap_or(0)
    }

    /// The record starting at `offset`, CRC-checked. `None` past the end, below the
    /// minimum, or at an end-of-file blank.
    pub(crate) fn read(&self, offset: u64) -> Result<Option<RecordGuard>> {
        match self.read_checked(offset, &mut None, |_| Ok(true))? {
            Checked::Accepted(g) => Ok(Some(g)),
            Checked::Absent | Checked::Rejected => Ok(None),
        }
    }

    /// The record starting at `offset`, checked (structure, CRC, its own PHYSICALOFFSET) and
    /// decoded once; `accept` sees the decoded record and says whether it is wanted (or
    /// refuses it with an error). `file` carries the file of the previous read of a batch:
    /// consecutive records of one file then cost no lookup.
    pub(crate) fn read_checked(
        &self,
        offset: u64,
        file: &mut Option<Arc<MappedFile>>,
        accept: impl FnOnce(&RecordView<'_>) -> Result<bool>,
    ) -> Result<Checked> {
        let cached = file
            .as_ref()
            .filter(|f| offset.wrapping_sub(f.start_offset()) < self.file_size);
        let file = if let Some(f) = cached {
            Arc::clone(f)
        } else {
            let Some(found) = self.queue.find(offset) else {
                return Ok(Checked::Absent);
            };
            *file = Some(Arc::clone(&found));
            found
        };
        let pos = offset - file.start_offset();
        let bytes = file.readable_from(pos);
        if bytes.is_empty() {
            return Ok(Checked::Absent);
        }
        match format::decode_record(bytes, true) {
            Ok(Decoded::Message(v)) if v.physical_offset as u64 == offset => {
                if !accept(&v)? {
                    return Ok(Checked::Rejected);
                }
                let len = v.total_size;
                Ok(Checked::Accepted(RecordGuard { file, pos, len }))
            }
            Ok(Decoded::Message(v)) => Err(Error::Corrupted {
                path: file.path().to_owned(),
                offset: pos,
                kind: CorruptionKind::MisplacedRecord {
                    stored: v.physical_offset as u64,
                },
            }),
            Ok(Decoded::Blank { .. }) => Ok(Checked::Absent),
            Err(e) => Err(Error::Corrupted {
                path: file.path().to_owned(),
                offset: pos,
                kind: CorruptionKind::Record(e),
            }),
        }
    }

    /// Checks the records in `[from, to)` (record boundaries below the end at open) by the
    /// same rule opening applies, against bytes that are trusted as durable. Damage makes
    /// the log refuse writes. `stopped` is polled between records: shutdown interrupts.
    pub(crate) fn check_records(
        &self,
        from: u64,
        to: u64,
        mode: RecoveryMode,
        stopped: &dyn Fn() -> bool,
    ) -> TailCheck {
        let snapshot = Snapshot {
            files: self
                .files()
                .into_iter()
                .filter(|f| f.start_offset() < to && f.start_offset() + f.size() > from)
                .collect(),
            to,
        };
        let rules = ScanRules {
            from,
            durable: Some(to),
            mode,
            check_crc: true,
        };
        let mut records = 0u64;
        let mut visit = |_: u64, _: &RecordView<'_>| {
            records += 1;
            if records.is_multiple_of(1024) && stopped() {
                return Err(Error::ShutDown);
            }
            Ok(())
        };
        let outcome = scan::scan_log(&snapshot, &rules, &mut visit);
        let damage = match outcome {
            Ok(Some(scan)) => {
                let (i, pos) = scan.end;
                let reached = snapshot.files[i].start_offset() + pos;
                if scan.log_end == LogEnd::Clean && reached >= to {
                    None
                } else {
                    let kind = scan
                        .found
                        .map_or(CorruptionKind::Record(RecordError::ZeroHeader), |f| {
                            f.kind()
                        });
                    Some((snapshot.files[i].path().to_owned(), pos, kind))
                }
            }
            Ok(None) => None,
            Err(Error::ShutDown) => return TailCheck::Interrupted,
            Err(Error::Corrupted { path, offset, kind }) => Some((path, offset, kind)),
            Err(e) => {
                // Not damage in the data (an I/O error reading it): report, keep writing.
                tracing::error!(error = %e, "the background check of the newest records could not read them");
                return TailCheck::Interrupted;
            }
        };
        let Some((path, offset, kind)) = damage else {
            return TailCheck::Clean { records };
        };
        tracing::error!(path = %path.display(), offset, error = %kind, "the newest commit log records are damaged; writes are refused from now on");
        let _ = self.damage.set((path.clone(), offset, kind.clone()));
        TailCheck::Damaged { path, offset, kind }
    }

    /// Whether the background tail check found damage (the next open must check again).
    pub(crate) fn is_damaged(&self) -> bool {
        self.damage.get().is_some()
    }

    /// Up to `max` published bytes from `offset` to the end of the written part of its file;
    /// `None` if no file holds `offset` or nothing is written there yet.
    pub(crate) fn read_raw(&self, offset: u64, max: usize) -> Option<LogBytes> {
        let file = self.queue.find(offset)?;
        let pos = offset - file.start_offset();
        let len = file.readable_from(pos).len().min(max);
        (len > 0).then_some(LogBytes { file, pos, len })
    }

    /// Stops taking writes and stops the allocator.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Taking the lock waits for an append in progress to finish.
        drop(self.lock_put());
        self.allocator.stop();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The newest store time among the records at the start of `bytes` (up to a blank or the
/// first undecodable bytes).
fn newest_in(bytes: &[u8]) -> Option<i64> {
    let mut pos = 0usize;
    let mut newest = None;
    while pos < bytes.len() {
        match format::decode_record(&bytes[pos..], false) {
            Ok(Decoded::Message(v)) => {
                newest = Some(newest.map_or(v.store_timestamp, |n: i64| n.max(v.store_timestamp)));
                pos += v.total_size as usize;
            }
            _ => break,
        }
    }
    newest
}

/// What [`CommitLog::read_checked`] found.
pub(crate) enum Checked {
    /// No record there (past the end, below the minimum, an end-of-file blank).
    Absent,
    /// A sound record the caller did not want.
    Rejected,
    /// A sound record the caller wanted.
    Accepted(RecordGuard),
}

/// A record in the CommitLog, kept mapped while the guard lives.
#[derive(Debug, Clone)]
pub struct RecordGuard {
    file: Arc<MappedFile>,
    pos: u64,
    len: u32,
}

impl RecordGuard {
    /// Where the record starts.
    pub fn physical_offset(&self) -> PhysicalOffset {
        PhysicalOffset(self.file.start_offset() + self.pos)
    }

    /// The raw record bytes (what a pull response carries).
    pub fn bytes(&self) -> &[u8] {
        let all = self.file.readable_from(self.pos);
        &all[..(self.len as usize).min(all.len())]
    }

    /// The decoded record.
    ///
    /// # Errors
    /// Only if the file was changed behind the store's back since the guard was made (the
    /// bytes were CRC-checked then, and the store never rewrites published bytes).
    pub fn view(&self) -> std::result::Result<RecordView<'_>, RecordError> {
        match format::decode_record(self.bytes(), false)? {
            Decoded::Message(v) => Ok(v),
            Decoded::Blank { .. } => Err(RecordError::BadMagic(format::BLANK_MAGIC_CODE as u32)),
        }
    }

    /// Offset just past this record.
    pub fn next_offset(&self) -> PhysicalOffset {
        PhysicalOffset(self.physical_offset().0 + u64::from(self.len))
    }
}

/// Raw CommitLog bytes from one offset to (at most) the end of the written part of its
/// file, kept mapped while this lives: what a master sends its slaves.
#[derive(Debug, Clone)]
pub struct LogBytes {
    file: Arc<MappedFile>,
    pos: u64,
    len: usize,
}

impl LogBytes {
    /// Where the bytes start.
    pub fn offset(&self) -> PhysicalOffset {
        PhysicalOffset(self.file.start_offset() + self.pos)
    }

    /// The bytes (never crossing a file boundary).
    pub fn bytes(&self) -> &[u8] {
        let all = self.file.readable_from(self.pos);
        &all[..self.len.min(all.len())]
    }
}

/// Iterator over the records from an offset to the current end, skipping blanks.
#[derive(Debug)]
pub struct Records {
    log: Arc<CommitLog>,
    next: u64,
    done: bool,
}

impl Records {
    pub(crate) fn new(log: Arc<CommitLog>, from: u64) -> Self {
        let next = from.max(log.min_offset());
        Records {
            log,
            next,
            done: false,
        }
    }
}

impl Iterator for Records {
    type Item = Result<RecordGuard>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(file) = self.log.queue.find(self.next) else {
                // Cleanup deleted the file under the iteration: go on from the new minimum.
                let min = self.log.min_offset();
                if self.next < min {
                    self.next = min;
                    continue;
                }
                self.done = true;
                break;
            };
            let pos = self.next - file.start_offset();
            if file.readable_from(pos).is_empty() {
                if file.is_full() {
                    self.next = file.start_offset() + file.size();
                    continue;
                }
                self.done = true;
                break;
            }
            match self.log.read(self.next) {
                Ok(Some(rec)) => {
                    self.next = rec.next_offset().0;
                    return Some(Ok(rec));
                }
                // A blank: the rest of this file is filler.
                Ok(None) => self.next = file.start_offset() + file.size(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Where and how opening scans the CommitLog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanPlan {
    /// First offset to validate and hand to the visitor (a record or file boundary).
    /// Bytes below it are trusted: they were validated by an earlier recovery and flushed.
    pub from: u64,
    /// Everything below this offset was flushed (from the offset checkpoint). See
    /// [`scan::judge`] for what a bad record means on either side of it.
    pub durable: Option<u64>,
    /// What to do with a bad record.
    pub mode: RecoveryMode,
    /// The previous run did not shut down cleanly: bytes past the end of valid data may be
    /// left over from lost writes and are zeroed.
    pub abnormal: bool,
}

/// Receives each valid record found by the scan, in CommitLog order.
pub(crate) type RecordVisitor<'v> = dyn FnMut(u64, &RecordView<'_>) -> Result<()> + 'v;

/// The shared files a background check reads, the last one cut at the end it checks to.
struct Snapshot {
    files: Vec<Arc<MappedFile>>,
    to: u64,
}

impl LogFiles for Snapshot {
    fn count(&self) -> usize {
        self.files.len()
    }

    fn start(&self, i: usize) -> u64 {
        self.files[i].start_offset()
    }

    fn size(&self, i: usize) -> u64 {
        self.files[i].size()
    }

    fn bytes(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        let bytes = self.files[i].readable_from(0);
        let wanted = self.to.saturating_sub(self.files[i].start_offset());
        let len = usize::try_from(wanted).map_or(bytes.len(), |w| w.min(bytes.len()));
        Ok(Cow::Borrowed(&bytes[..len]))
    }
}

impl LogFiles for [MappedFile] {
    fn count(&self) -> usize {
        self.len()
    }

    fn start(&self, i: usize) -> u64 {
        self[i].start_offset()
    }

    fn size(&self, i: usize) -> u64 {
        self[i].size()
    }

    fn bytes(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(self[i].readable_from(0)))
    }
}

/// Scans the records from `plan.from` on (handing each to `visit`) and acts on the verdict
/// of [`scan::scan_log`]: corruption is an error; a torn tail is cut; files past the end
/// are removed.
fn recover(
    dir: &std::path::Path,
    files: &mut Vec<MappedFile>,
    check_crc: bool,
    plan: &ScanPlan,
    visit: &mut RecordVisitor<'_>,
) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let rules = ScanRules {
        from: plan.from,
        durable: plan.durable,
        mode: plan.mode,
        check_crc,
    };
    let Some(scan) = scan::scan_log(files.as_slice(), &rules, visit)? else {
        return Ok(report);
    };
    report.records = scan.records;
    report.scanned_from = PhysicalOffset(
        files
            .iter()
            .find(|f| f.start_offset() + f.size() > plan.from)
            .map_or(plan.from, |f| plan.from.max(f.start_offset())),
    );
    report.gaps = scan
        .gaps
        .iter()
        .map(|&(a, b)| (PhysicalOffset(a), PhysicalOffset(b)))
        .collect();
    let (end_index, end_pos) = scan.end;
    match (scan.log_end, scan.found) {
        (LogEnd::Corrupt { .. }, found) => {
            return Err(Error::Corrupted {
                path: files[end_index].path().to_owned(),
                offset: end_pos,
                kind: found.map_or(CorruptionKind::Record(RecordError::ZeroHeader), |f| {
                    f.kind()
                }),
            });
        }
        (LogEnd::TornTail { .. }, Some(found)) => {
            let kind = found.kind();
            let err = match &kind {
                CorruptionKind::Record(e) => e.clone(),
                _ => RecordError::BadMagic(0),
            };
            tracing::warn!(path = %files[end_index].path().display(), offset = end_pos, error = %kind, "truncating a torn tail");
            report.truncated = Some((files[end_index].path().to_owned(), end_pos, err));
        }
        _ => {}
    }
    let count = files.len();
    // A full last file: the next append opens a new one. A full file followed by an
    // (empty) file: that one is the active file.
    let (end_index, end_pos) = if end_pos == files[end_index].size() && end_index + 1 < count {
        (end_index + 1, 0)
    } else {
        (end_index, end_pos)
    };
    for file in files.drain(end_index + 1..) {
        let path = file.remove()?;
        report.removed_files.push(path);
    }
    if !report.removed_files.is_empty() {
        mmap::sync_dir(dir, files[end_index].faults())?;
    }
    let last = &mut files[end_index];
    if end_pos < last.size() && (report.truncated.is_some() || plan.abnormal) {
        last.zero_from(end_pos)?;
    }
    last.set_wrote(end_pos);
    report.valid_end = PhysicalOffset(last.start_offset() + end_pos);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn queue_table_keeps_each_topic_and_queue_apart() {
        let mut t = QueueTable::default();
        for (topic, queue, bump) in [("a", 0, 3), ("b", 0, 5), ("a", 7, 1), ("a", 5000, 2)] {
            *t.slot(topic, queue) += bump;
        }
        *t.slot("a", 0) += 1; // back to a topic after another one
        assert_eq!(t.get("a", 0), Some(4));
        assert_eq!(t.get("b", 0), Some(5));
        assert_eq!(t.get("a", 7), Some(1));
        assert_eq!(t.get("a", 5000), Some(2));
        assert_eq!(t.get("a", 6), None, "never used");
        assert_eq!(t.get("b", 7), None);
        assert_eq!(t.get("c", 0), None);
    }

    #[test]
    fn put_lock_held_too_long_is_os_pagecache_busy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = StoreConfig::new(dir.path());
        cfg.mapped_file_size_commit_log = 64 * 1024;
        let clock = Arc::new(ManualClock::new(1_000_000));
        let plan = ScanPlan {
            from: 0,
            durable: None,
            mode: RecoveryMode::default(),
            abnormal: false,
        };
        let (log, _) = CommitLog::open(
            &cfg,
            clock.clone(),
            FaultInjector::default(),
            &plan,
            &mut |_, _| Ok(()),
        )
        .expect("open");
        let msg = Message::new("t", 0, b"x".to_vec());
        // Pretend another put took the lock 1.5 s ago and still holds it.
        log.lock_since_ms.store(1_000_000 - 1500, Ordering::Relaxed);
        assert_eq!(
            log.put(&msg).expect("put").status,
            PutStatus::OsPageCacheBusy
        );
        log.lock_since_ms.store(0, Ordering::Relaxed);
        assert_eq!(log.put(&msg).expect("put").status, PutStatus::PutOk);
        // Within the timeout it is not busy.
        log.lock_since_ms.store(1_000_000 - 900, Ordering::Relaxed);
        let r = log.precheck().expect("precheck");
        assert_eq!(r, None);
        log.close();
    }
}
