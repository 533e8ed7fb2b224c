//! Dispatch (RocketMQ's reput, `ReputMessageService` in DefaultMessageStore.java): one thread tails the CommitLog from the reput
//! offset and writes each record's ConsumeQueue unit and index keys, in CommitLog order.
//! Puts wake it; readers wait on [`Dispatcher::wait_dispatched`].
//!
//! Why a thread and not inline on append: inline dispatch would put the ConsumeQueue
//! append and the index insert (a random write into a 420 MB mapping) inside the put
//! lock's critical section; the thread keeps puts as they were and still makes a message
//! visible well within a millisecond.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::fault::FaultInjector;
use crate::file::mmap::MappedFile;
use crate::format::{self, Decoded, RecordView};
use crate::index::IndexFiles;
use crate::log::CommitLog;
use crate::put::QueueOffset;
use crate::queue::{unit_of, ConsumeQueues};

/// Records dispatched per call before the thread checks for a stop request.
const DISPATCH_BATCH: usize = 4096;

/// A message that has just become readable through its ConsumeQueue.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The queue.
    pub queue_id: u32,
    /// The message's queue offset (the queue's max offset is now one more).
    pub queue_offset: QueueOffset,
    /// The ConsumeQueue tags code (hash of the TAGS property).
    pub tags_code: i64,
    /// STORETIMESTAMP.
    pub store_timestamp: i64,
}

/// Told by the dispatcher thread about every message entering a ConsumeQueue, right after
/// it became readable (RocketMQ's `MessageArrivingListener`, used for long polling). Runs on
/// the dispatcher thread: it must be quick and must not call back into the store's write path.
pub trait ArrivalListener: Send + Sync + std::fmt::Debug {
    /// One message arrived.
    fn arrived(&self, arrival: &Arrival<'_>);
}

/// The reput state: how far the CommitLog has been dispatched.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    log: Arc<CommitLog>,
    queues: Arc<ConsumeQueues>,
    index: Option<Arc<IndexFiles>>,
    reput: AtomicU64,
    /// Store time of the last dispatched record (checkpoint `logicsMsgTimestamp`).
    last_timestamp: AtomicI64,
    /// Set when published CommitLog bytes do not decode; dispatch stops for good.
    failed: AtomicBool,
    /// Dispatch attempts that failed (I/O), for rate-limited logging.
    errors: AtomicU64,
    progress: Mutex<()>,
    progressed: Condvar,
    faults: FaultInjector,
    /// Told about every message that enters a ConsumeQueue (long polling).
    listener: Option<Arc<dyn ArrivalListener>>,
    /// Delay per level, for the schedule topic's tags codes (due times).
    delay_levels: Vec<i64>,
}

impl Dispatcher {
    pub(crate) fn new(
        log: Arc<CommitLog>,
        queues: Arc<ConsumeQueues>,
        index: Option<Arc<IndexFiles>>,
        from: u64,
        last_timestamp: i64,
        faults: FaultInjector,
        listener: Option<Arc<dyn ArrivalListener>>,
    ) -> Self {
        Dispatcher {
            log,
            queues,
            index,
            reput: AtomicU64::new(from),
            last_timestamp: AtomicI64::new(last_timestamp),
            failed: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            progress: Mutex::new(()),
            progressed: Condvar::new(),
            faults,
            listener,
            delay_levels: Vec::new(),
        }
    }

    /// Sets the delay per level the schedule topic's due times are computed with.
    pub(crate) fn with_delay_levels(mut self, delay_levels: Vec<i64>) -> Self {
        self.delay_levels = delay_levels;
        self
    }

    /// Everything below this offset is in its ConsumeQueue and the index.
    pub(crate) fn reput_offset(&self) -> u64 {
        self.reput.load(Ordering::Acquire)
    }

    pub(crate) fn last_timestamp(&self) -> i64 {
        self.last_timestamp.load(Ordering::Acquire)
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Dispatches up to [`DISPATCH_BATCH`] records; returns whether more may be waiting.
    pub(crate) fn run_once(&self) -> bool {
        if self.has_failed() {
            return false;
        }
        let mut at = self.reput_offset();
        let mut done = 0;
        // The file of the previous record: consecutive records cost no locked lookup.
        let mut current: Option<Arc<MappedFile>> = None;
        let more = loop {
            if done == DISPATCH_BATCH {
                break true;
            }
            if current
                .as_ref()
                .is_none_or(|f| at.wrapping_sub(f.start_offset()) >= f.size())
            {
                current = self.log.file_at(at);
            }
            let Some(file) = current.as_ref() else {
                // A replica's log may start above where dispatch stands (its first file is
                // the master's last): nothing below the log's start exists to dispatch.
                let min = self.log.min_offset();
                if at < min && self.log.file_count() > 0 {
                    at = min;
                    continue;
                }
                break false;
            };
            let pos = at - file.start_offset();
            let bytes = file.readable_from(pos);
            if bytes.is_empty() {
                if file.is_full() {
                    at = file.start_offset() + file.size();
                    continue;
                }
                break false;
            }
            match format::decode_record(bytes, false) {
                Ok(Decoded::Message(v)) => {
                    if let Err(e) = self.dispatch(at, &v) {
                        // Retried on the next round (e.g. after a full disk has room again);
                        // the record is never skipped.
                        let n = self.errors.fetch_add(1, Ordering::Relaxed);
                        if n.is_power_of_two() || n == 0 {
                            tracing::error!(offset = at, error = %e, failures = n + 1, "dispatch failed; retrying");
                        }
                        break false;
                    }
                    self.last_timestamp
                        .store(v.store_timestamp, Ordering::Release);
                    at += u64::from(v.total_size);
                    done += 1;
                }
                Ok(Decoded::Blank { .. }) => at = file.start_offset() + file.size(),
                Err(e) => {
                    // Bytes the store itself published do not decode: never skip them.
                    tracing::error!(offset = at, error = %e, "undecodable record at the reput offset; dispatch stops");
                    self.failed.store(true, Ordering::Release);
                    break false;
                }
            }
            self.reput.store(at, Ordering::Release);
        };
        self.reput.store(at, Ordering::Release);
        let _guard = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        self.progressed.notify_all();
        more
    }

    fn dispatch(&self, phys: u64, v: &RecordView<'_>) -> Result<()> {
        if let Some((offset, unit)) = unit_of(phys, v, &self.delay_levels) {
            let queue_id = v.queue_id as u32;
            self.queues
                .get_or_create(v.topic, queue_id)?
                .append(offset, unit, &self.faults)?;
            if let Some(index) = &self.index {
                index.put(phys, v)?;
            }
            if let Some(listener) = &self.listener {
                listener.arrived(&Arrival {
                    topic: v.topic,
                    queue_id,
                    queue_offset: QueueOffset(offset),
                    tags_code: unit.tags_code,
                    store_timestamp: v.store_timestamp,
                });
            }
        } else if let Some(index) = &self.index {
            index.put(phys, v)?;
        }
        Ok(())
    }

    /// Waits until everything below `offset` is dispatched, for at most `timeout`, giving
    /// up early once dispatch keeps failing (an error since the wait began and no progress
    /// for 100 ms): false then, or on timeout or failure. For shutdown and checkpoints,
    /// which must not sit out the whole timeout on a disk that refuses every write.
    pub(crate) fn wait_dispatched_while_progressing(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let errors_before = self.errors.load(Ordering::Relaxed);
        loop {
            let reput = self.reput_offset();
            let now = Instant::now();
            if now >= deadline {
                return self.reput_offset() >= offset;
            }
            if self.wait_dispatched(offset, (deadline - now).min(Duration::from_millis(100))) {
                return true;
            }
            let failing = self.errors.load(Ordering::Relaxed) > errors_before;
            if self.has_failed() || (failing && self.reput_offset() == reput) {
                return false;
            }
        }
    }

    /// Waits until everything below `offset` is dispatched; false on timeout or failure.
    pub(crate) fn wait_dispatched(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.reput_offset() >= offset {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.has_failed() {
                return false;
            }
            // Short waits: a notification between the check and the wait is not lost for long.
            let wait = (deadline - now).min(Duration::from_millis(1));
            guard = self
                .progressed
                .wait_timeout(guard, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
