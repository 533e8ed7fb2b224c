//! Opening a store directory (RocketMQ's DefaultMessageStore.recover, made stricter): checkpoints, ConsumeQueues and
//! IndexFiles are loaded first so that the CommitLog scan can start where the durable
//! derived state ends; the scan validates every record from there (CRCs, structure,
//! PHYSICALOFFSET), compares or rewrites each record's ConsumeQueue unit, re-indexes what the
//! index lacks, and cuts what points past the end of valid data.
//!
//! Recovery trusts offsets, never timestamps (RocketMQ #678), and never deletes an IndexFile
//! without indexing its records again (RocketMQ #8007). Running it twice gives the same
//! state: everything it changes is flushed and the offsets checkpoint written before the
//! store takes writes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::checkpoint::{Checkpoints, LoadedCheckpoints};
use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::error::Result;
use crate::fault::FaultInjector;
use crate::file::mapped_file_queue;
use crate::format::{RecordView, TimestampCheckpoint};
use crate::index::IndexFiles;
use crate::log::{CommitLog, RecoveryReport, ScanPlan};
use crate::put::PhysicalOffset;
use crate::queue::unit_of;
use crate::queue::{self, ConsumeQueue, OwnedQueue};

/// Everything a store needs after recovery.
pub(crate) struct Recovered {
    pub log: Arc<CommitLog>,
    pub queues: Vec<ConsumeQueue>,
    pub index: Option<IndexFiles>,
    pub checkpoints: Checkpoints,
    pub report: RecoveryReport,
    pub last_timestamp: i64,
}

type QueueKey = (String, u32);

/// CommitLog files at the end verified at every open: RocketMQ's normal recovery re-reads
/// 3; one more covers the empty file the allocator keeps ready.
const VERIFY_TAIL_FILES: usize = 4;

/// ConsumeQueues being recovered plus what the scan learned about them.
struct QueueRepair<'a> {
    cfg: &'a StoreConfig,
    faults: &'a FaultInjector,
    queues: HashMap<QueueKey, OwnedQueue>,
    /// Next queue offset per queue, from the records scanned.
    expected_next: HashMap<QueueKey, u64>,
    /// Queues missing units below the scan start: rebuilt by a second pass from the first
    /// CommitLog record.
    backfill: HashSet<QueueKey>,
    /// The scan began at the first stored byte: a first unit above 0 means earlier
    /// offsets were removed, not lost.
    from_log_start: bool,
    units_rebuilt: u64,
    delay_levels: Vec<i64>,
    /// Deleted topics: their records below the recorded offset enter no queue.
    tombstones: HashMap<String, u64>,
}

impl QueueRepair<'_> {
    fn visit(
        &mut self,
        phys: u64,
        v: &RecordView<'_>,
        only: Option<&HashSet<QueueKey>>,
    ) -> Result<()> {
        let Some((offset, unit)) = unit_of(phys, v, &self.delay_levels) else {
            return Ok(());
        };
        if queue::is_deleted(&self.tombstones, v.topic, phys) {
            return Ok(());
        }
        let key = (v.topic.to_owned(), v.queue_id as u32);
        if only.is_some_and(|set| !set.contains(&key)) {
            return Ok(());
        }
        let q = self.queues.entry(key.clone()).or_insert_with(|| {
            OwnedQueue::empty(
                &self.cfg.consume_queue_dir(),
                v.topic,
                v.queue_id as u32,
                self.cfg.mapped_file_size_consume_queue,
                self.faults,
            )
        });
        if offset > q.end() && !self.from_log_start && only.is_none() {
            // Units below this record are missing from a queue that should hold them.
            self.backfill.insert(key);
            return Ok(());
        }
        if q.put(offset, unit, self.faults)? {
            self.units_rebuilt += 1;
        }
        self.expected_next.insert(key, offset + 1);
        Ok(())
    }
}

/// Loads and repairs everything under the store root. `abnormal`: the abort file was there.
pub(crate) fn recover(
    cfg: &StoreConfig,
    clock: Arc<dyn Clock>,
    faults: &FaultInjector,
    abnormal: bool,
) -> Result<Recovered> {
    let root = &cfg.store_path_root_dir;
    let (
        checkpoints,
        LoadedCheckpoints {
            offsets,
            timestamps,
        },
    ) = Checkpoints::open(root, faults.clone())?;
    let mut from = offsets.map_or(0, |o| o.dispatched_durable.min(o.commit_log_durable));
    let mut trimmed = Vec::new();
    // A clean shutdown left everything flushed and dispatched: what every open re-checks
    // (the newest CommitLog files, every ConsumeQueue unit) can be checked by a background
    // pass once the store is open (`checkTailInBackground`), so a reopen does not cost
    // O(data). Skipping damaged stretches (`TolerateAnyCorruption`) needs the open's scan.
    let clean_checkpoint =
        !abnormal && offsets.is_some_and(|o| o.commit_log_durable == o.dispatched_durable);
    let check_later = clean_checkpoint
        && cfg.check_tail_in_background
        && cfg.check_crc_on_recover
        && cfg.recovery_mode != crate::config::RecoveryMode::TolerateAnyCorruption;

    // ConsumeQueues: keep the structurally valid prefix of each.
    let max_record = cfg.max_record_len();
    let cq_root = cfg.consume_queue_dir();
    let mut queues = HashMap::new();
    for (topic, queue_id) in queue::list_queues(&cq_root)? {
        let (mut q, file_problem) = OwnedQueue::load(
            &cq_root,
            &topic,
            queue_id,
            cfg.mapped_file_size_consume_queue,
            faults,
        )?;
        let unit_problem = q.scan(max_record, abnormal, check_later)?;
        if file_problem.is_some() || unit_problem.is_some() {
            // Units before the bad one may be wrong too (a flipped offset can still look
            // plausible): the whole queue is rebuilt from the first CommitLog record.
            tracing::warn!(topic = %topic, queue_id, ?file_problem, ?unit_problem, "consume queue damaged; rebuilding it from the commit log");
            q.truncate(0)?;
            from = 0;
            trimmed.push((topic.clone(), queue_id));
        }
        queues.insert((topic, queue_id), q);
    }

    // IndexFiles: drop those with items beyond the durable point; index those records again.
    let mut index_unchecked = None;
    let index = if cfg.message_index_enable {
        // Without our checkpoint (a directory RocketMQ wrote, or both slots damaged) a
        // cleanly closed index is kept after its structural check; after a crash it is
        // rebuilt.
        let durable = match offsets {
            Some(o) => o.dispatched_durable,
            None if !abnormal => u64::MAX,
            None => 0,
        };
        let (index, load) = IndexFiles::load(
            &cfg.index_dir(),
            cfg.max_hash_slot_num,
            cfg.max_index_num,
            durable,
            Arc::clone(&clock),
            faults.clone(),
            check_later,
        )?;
        from = from.min(load.reindex_from);
        index_unchecked = load.unchecked;
        Some((index, load.removed))
    } else {
        None
    };

    let log_files = mapped_file_queue::file_offsets(&cfg.commit_log_dir())?;
    let log_start = log_files.first().copied();
    // Like RocketMQ, always CRC-verify the last files, whatever the checkpoint says: bitrot
    // there refuses to open instead of waiting for a reader to find it (or, after a clean
    // shutdown, stops writes when the background pass finds it). Deferring needs nothing
    // to replay, and queues that look whole: the newest unit ends where dispatch says it
    // got to (a deleted queue directory, or a last record that advances no queue, such as
    // a prepared transaction, makes the open check the tail itself).
    let newest_unit_end = queues.values().map(OwnedQueue::last_unit_end).max();
    let defer_tail = check_later
        && offsets.is_some_and(|o| {
            from == o.commit_log_durable && newest_unit_end == Some(o.dispatched_durable)
        });
    let mut tail_deferred = None;
    if let Some(&tail) = log_files
        .iter()
        .rev()
        .nth(VERIFY_TAIL_FILES - 1)
        .or(log_start.as_ref())
    {
        if defer_tail && tail < from {
            tail_deferred = Some((tail, from));
        } else {
            from = from.min(tail);
        }
    }
    let plan = ScanPlan {
        from,
        durable: offsets.map(|o| o.commit_log_durable),
        mode: cfg.recovery_mode,
        abnormal,
    };
    let mut repair = QueueRepair {
        cfg,
        faults,
        queues,
        expected_next: HashMap::new(),
        backfill: HashSet::new(),
        from_log_start: log_start.is_none_or(|s| from <= s),
        units_rebuilt: 0,
        delay_levels: cfg.delay_levels()?,
        tombstones: queue::load_tombstones(&cq_root)?,
    };
    let mut last_timestamp = 0;
    let index_ref = index.as_ref().map(|(i, _)| i);
    let (log, mut report) = CommitLog::open(cfg, clock, faults.clone(), &plan, &mut |phys, v| {
        last_timestamp = v.store_timestamp;
        repair.visit(phys, v, None)?;
        if let Some(index) = index_ref {
            index.put(phys, v)?;
        }
        Ok(())
    })?;
    let log = Arc::new(log);
    let valid_end = report.valid_end.0;
    let log_min = log.min_offset();

    if !repair.backfill.is_empty() {
        let only = std::mem::take(&mut repair.backfill);
        tracing::warn!(queues = only.len(), "consume queues lost units below the checkpoint; rebuilding them from the first commit log record");
        repair.from_log_start = true;
        for rec in crate::log::Records::new(Arc::clone(&log), log_min) {
            let rec = rec?;
            let v = rec.view().map_err(|e| crate::error::Error::Corrupted {
                path: cfg.commit_log_dir(),
                offset: rec.physical_offset().0,
                kind: crate::error::CorruptionKind::Record(e),
            })?;
            repair.visit(rec.physical_offset().0, &v, Some(&only))?;
        }
        trimmed.extend(only);
    }

    // Cut units whose records are gone; units of unscanned queues at or past the scan start
    // have no record at all.
    let mut shared = Vec::with_capacity(repair.queues.len());
    for (key, mut q) in repair.queues {
        let mut cut = q.cut_beyond(valid_end)?;
        match repair.expected_next.get(&key) {
            Some(&next) if q.end() > next => {
                q.truncate(next)?;
                cut = true;
            }
            Some(_) => {}
            None => cut |= q.cut_beyond(report.scanned_from.0.max(from))?,
        }
        if cut && !trimmed.contains(&key) {
            trimmed.push(key.clone());
        }
        for &(gap_from, gap_to) in &report.gaps {
            if q.fill_gap(gap_from.0, gap_to.0) > 0 && !trimmed.contains(&key) {
                trimmed.push(key.clone());
            }
        }
        q.correct_min_offset(log_min);
        shared.push(q.into_shared()?);
    }
    trimmed.sort();

    // Make what recovery vouches for durable, then say so.
    if abnormal || report.records > 0 {
        log.flush_all_from(report.scanned_from.0)?;
    }
    let index = match index {
        Some((index, removed)) => {
            index.flush()?;
            report.index_files_rebuilt = removed;
            Some(index)
        }
        None => None,
    };
    let stamps = if report.records > 0 {
        TimestampCheckpoint {
            physic_msg_timestamp: last_timestamp,
            logics_msg_timestamp: last_timestamp,
            index_msg_timestamp: index
                .as_ref()
                .map_or(0, IndexFiles::newest_full_end_timestamp),
        }
    } else {
        timestamps
    };
    checkpoints.write(valid_end, valid_end, stamps)?;
    report.abnormal_exit = abnormal;
    report.tail_deferred = tail_deferred.map(|(a, b)| (PhysicalOffset(a), PhysicalOffset(b)));
    report.queue_units_deferred = check_later;
    report.index_file_deferred = index_unchecked;
    report.consume_queue_units_rebuilt = repair.units_rebuilt;
    report.consume_queues_trimmed = trimmed
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if report.records > 0 || !report.consume_queues_trimmed.is_empty() {
        tracing::info!(
            abnormal,
            scanned_from = report.scanned_from.0,
            valid_end,
            records = report.records,
            units_rebuilt = report.consume_queue_units_rebuilt,
            "recovered"
        );
    }
    Ok(Recovered {
        log,
        queues: shared,
        index,
        checkpoints,
        report,
        last_timestamp: if last_timestamp > 0 {
            last_timestamp
        } else {
            timestamps.logics_msg_timestamp
        },
    })
}
