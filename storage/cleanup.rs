//! Expiry cleanup: what to delete is decided by pure functions of the files, the
//! clock and the disk usage ([`plan_commit_log`], [`queue::files_to_remove`],
//! [`index::files_to_remove`]); the [`Cleaner`] gathers those facts, applies the decision,
//! and runs on the `rmq-clean` thread every `cleanResourceInterval`.
//!
//! Deleting a file that readers may hold, oldest first, in this order:
//! 1. take it out of its queue: new reads no longer find it and get a clean "removed"
//!    status (OFFSET_TOO_SMALL, MESSAGE_WAS_REMOVING), while readers that already hold it
//!    keep reading the old bytes through their `Arc`;
//! 2. rename it to `<name>.deleted` and sync the directory (if that fails it goes back to
//!    the queue): the names left on disk stay contiguous whatever happens next, and a
//!    leftover is removed at the next open;
//! 3. park it in the cleaner's graveyard; each pass unmaps and unlinks (on this thread, off
//!    every append and read path) the parked files nobody holds any more. A file is never
//!    unmapped under a reader: RocketMQ's forced destroy after 120 s would be a
//!    use-after-unmap here, so a file held that long is reported instead, and goes when
//!    its last holder lets go.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::checkpoint::Checkpoints;
use crate::clock::{local_hour, Clock};
use crate::config::StoreConfig;
use crate::error::Result;
use crate::fault::{self, FaultInjector};
use crate::file::disk::DiskUsage;
use crate::file::mapped_file_queue::MappedFileQueue;
use crate::file::mmap::MappedFile;
use crate::format::CqUnit;
use crate::index::IndexFiles;
use crate::log::CommitLog;
use crate::put::PhysicalOffset;
use crate::queue::ConsumeQueue;
use crate::queue::{self, ConsumeQueues};
use crate::service::Pause;

/// How many passes a manual trigger arms (RocketMQ `executeDeleteFilesManually`).
const MANUAL_DELETE_RUNS: u32 = 20;

/// Why a pass was allowed to delete CommitLog files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CleanTrigger {
    /// The local hour is one of `deleteWhen`.
    DeleteWhen {
        /// The hour of day.
        hour: u32,
    },
    /// Disk usage above `diskMaxUsedSpaceRatio`, or not measurable (`None`).
    DiskUsage {
        /// Percentage in use.
        used_percent: Option<u32>,
    },
    /// [`MessageStore::delete_expired_files_manually`](crate::MessageStore::delete_expired_files_manually).
    Manual,
}

/// Why a file was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemovalReason {
    /// The newest message in the CommitLog file is older than `fileReservedTime`.
    Expired {
        /// What allowed the pass to delete.
        trigger: CleanTrigger,
        /// Store time (ms) of the newest message in the file.
        newest_store_timestamp: i64,
    },
    /// Disk usage above `diskSpaceCleanForciblyRatio`: the oldest CommitLog file went
    /// before it expired.
    DiskPressure {
        /// Percentage in use.
        used_percent: u32,
    },
    /// A ConsumeQueue file or IndexFile whose entries all point below the CommitLog
    /// minimum.
    BelowCommitLogMin {
        /// The CommitLog minimum at the time.
        min_offset: u64,
    },
    /// A ConsumeQueue file of a topic deleted with
    /// [`MessageStore::delete_topic`](crate::MessageStore::delete_topic).
    TopicDeleted,
}

/// One file a cleanup pass deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemovedFile {
    /// The file's path in the store.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Why it went.
    pub reason: RemovalReason,
}

/// What one cleanup pass saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// What allowed CommitLog deletion in this pass (`None`: nothing did).
    pub trigger: Option<CleanTrigger>,
    /// Usage of the CommitLog disk, percent (`None`: not measurable).
    pub disk_used_percent: Option<u32>,
    /// The store refuses puts because the disk is fuller than `diskSpaceWarningLevelRatio`.
    pub disk_full: bool,
    /// Files deleted, oldest first: CommitLog files, then ConsumeQueue files, then
    /// IndexFiles.
    pub removed: Vec<RemovedFile>,
    /// The CommitLog minimum after the pass.
    pub commit_log_min_offset: PhysicalOffset,
    /// Deleted files still mapped by a reader; each is unmapped and unlinked by a later
    /// pass once its last reader lets go.
    pub held_by_readers: usize,
    /// Time this pass spent unmapping deleted files (on the cleaner's thread).
    pub unmap_time: Duration,
    /// Time this pass spent unlinking deleted files (on the cleaner's thread).
    pub unlink_time: Duration,
}

/// The retention rules of a store, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CleanPolicy {
    /// `fileReservedTime` in ms.
    pub reserved_ms: i64,
    pub delete_hours: Vec<u32>,
    pub max_used_percent: u32,
    pub forcibly_percent: u32,
    pub warning_percent: u32,
    pub clean_forcibly_enable: bool,
    pub batch_max: usize,
}

impl CleanPolicy {
    pub(crate) fn from_config(cfg: &StoreConfig) -> Result<Self> {
        Ok(CleanPolicy {
            reserved_ms: i64::try_from(cfg.file_reserved_time.as_millis()).unwrap_or(i64::MAX),
            delete_hours: cfg.delete_hours()?,
            max_used_percent: cfg.disk_max_used_space_ratio,
            forcibly_percent: cfg.disk_space_clean_forcibly_ratio,
            warning_percent: cfg.disk_space_warning_level_ratio,
            clean_forcibly_enable: cfg.clean_file_forcibly_enable,
            batch_max: cfg.delete_file_batch_max as usize,
        })
    }
}

/// What a pass knows when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Situation {
    pub now_ms: i64,
    pub local_hour: u32,
    /// Usage of the CommitLog disk and of the ConsumeQueue disk (percent; `None`: unknown).
    pub log_used: Option<u32>,
    pub cq_used: Option<u32>,
    /// A manual trigger is armed.
    pub manual: bool,
    /// CommitLog bytes below this are flushed and dispatched, as the checkpoint vouches.
    pub safe_end: u64,
}

/// The CommitLog part of a pass's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitLogPlan {
    /// The store must refuse puts.
    pub disk_full: bool,
    pub trigger: Option<CleanTrigger>,
    /// Files to delete, oldest first, by start offset.
    pub remove: Vec<(u64, RemovalReason)>,
}

/// Decides which CommitLog files go. `files` are `(start, end)` offsets, oldest
/// first, the last one the active file; `newest(i)` is the newest store time in file `i`
/// (asked only for files the walk reaches, since finding it may read the file).
///
/// Rules: a pass deletes only when triggered (a `deleteWhen` hour, disk usage above
/// `diskMaxUsedSpaceRatio` or unknown, a manual trigger); it walks the files oldest first,
/// never the active one, never one reaching past `safe_end`; a file goes if
/// `now >= newest + fileReservedTime`, or, above `diskSpaceCleanForciblyRatio` with
/// `cleanFileForciblyEnable`, regardless; the walk stops at the first file that stays and
/// after `deleteFileBatchMax` files. A clock behind the files' store times expires
/// nothing.
pub(crate) fn plan_commit_log(
    files: &[(u64, u64)],
    mut newest: impl FnMut(usize) -> Option<i64>,
    s: &Situation,
    p: &CleanPolicy,
) -> CommitLogPlan {
    let worst = s.log_used.max(s.cq_used);
    let disk_full = s.log_used.is_some_and(|u| u > p.warning_percent);
    let clean_immediately = disk_full || worst.is_some_and(|u| u > p.forcibly_percent);
    let space = [s.log_used, s.cq_used]
        .iter()
        .any(|u| u.is_none_or(|u| u > p.max_used_percent));
    let trigger = if p.delete_hours.contains(&s.local_hour) {
        Some(CleanTrigger::DeleteWhen { hour: s.local_hour })
    } else if space || clean_immediately {
        Some(CleanTrigger::DiskUsage {
            used_percent: worst,
        })
    } else if s.manual {
        Some(CleanTrigger::Manual)
    } else {
        None
    };
    let mut remove = Vec::new();
    if let Some(trigger) = trigger {
        let at_once = p.clean_forcibly_enable && clean_immediately;
        let candidates = files.len().saturating_sub(1);
        for (i, &(start, end)) in files.iter().enumerate().take(candidates) {
            if remove.len() >= p.batch_max || end > s.safe_end {
                break;
            }
            let stored = newest(i);
            let reason = match stored {
                Some(t) if s.now_ms >= t.saturating_add(p.reserved_ms) => RemovalReason::Expired {
                    trigger,
                    newest_store_timestamp: t,
                },
                _ if at_once => RemovalReason::DiskPressure {
                    used_percent: worst.unwrap_or(100),
                },
                _ => break,
            };
            remove.push((start, reason));
        }
    }
    CommitLogPlan {
        disk_full,
        trigger,
        remove,
    }
}

/// A deleted file waiting for its last reader.
#[derive(Debug)]
struct Parked {
    file: Arc<MappedFile>,
    since: Instant,
    reported: bool,
}

#[derive(Debug)]
struct CleanState {
    graveyard: Vec<Parked>,
    /// Deleted files whose unlink failed; retried every `redeleteHangedFileInterval`.
    unremoved: Vec<PathBuf>,
    /// CommitLog minimum at the last complete ConsumeQueue pass.
    queues_cleaned_at: u64,
    last_redelete: Instant,
}

/// Applies the cleanup decisions to a store.
#[derive(Debug)]
pub(crate) struct Cleaner {
    parts: CleanerParts,
    policy: CleanPolicy,
    log_dir: PathBuf,
    cq_dir: PathBuf,
    delete_pause: Duration,
    queue_pause: Duration,
    report_held_after: Duration,
    redelete_every: Duration,
    manual_runs: AtomicU32,
    state: Mutex<CleanState>,
}

/// The parts of the store a cleanup pass reads and changes.
#[derive(Debug)]
pub(crate) struct CleanerParts {
    pub log: Arc<CommitLog>,
    pub queues: Arc<ConsumeQueues>,
    pub index: Option<Arc<IndexFiles>>,
    pub checkpoints: Arc<Checkpoints>,
    pub clock: Arc<dyn Clock>,
    pub disk: Arc<dyn DiskUsage>,
}

impl Cleaner {
    pub(crate) fn new(cfg: &StoreConfig, parts: CleanerParts) -> Result<Cleaner> {
        Ok(Cleaner {
            parts,
            policy: CleanPolicy::from_config(cfg)?,
            log_dir: cfg.commit_log_dir(),
            cq_dir: cfg.consume_queue_dir(),
            delete_pause: cfg.delete_commit_log_files_interval,
            queue_pause: cfg.delete_consume_queue_files_interval,
            report_held_after: cfg.destroy_mapped_file_interval_forcibly,
            redelete_every: cfg.redelete_hanged_file_interval,
            manual_runs: AtomicU32::new(0),
            state: Mutex::new(CleanState {
                graveyard: Vec::new(),
                unremoved: Vec::new(),
                queues_cleaned_at: 0,
                last_redelete: Instant::now(),
            }),
        })
    }

    /// Arms the manual trigger for the next passes.
    pub(crate) fn arm_manual(&self) {
        self.manual_runs
            .store(MANUAL_DELETE_RUNS, Ordering::Release);
    }

    /// One cleanup pass. Passes are serialized (the thread's and callers').
    pub(crate) fn run_pass(&self, pause: &Pause) -> Result<CleanupReport> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut report = CleanupReport::default();
        let outcome = self.clean(&mut st, pause, &mut report);
        self.release(&mut st, &mut report);
        report.commit_log_min_offset = PhysicalOffset(self.parts.log.min_offset());
        outcome.map(|()| report)
    }

    fn clean(&self, st: &mut CleanState, pause: &Pause, report: &mut CleanupReport) -> Result<()> {
        let now_ms = self.parts.clock.now_millis();
        let durable = self.parts.checkpoints.last();
        let situation = Situation {
            now_ms,
            local_hour: local_hour(now_ms, self.parts.clock.utc_offset_seconds(now_ms)),
            log_used: self.parts.disk.used_percent(&self.log_dir),
            cq_used: self.parts.disk.used_percent(&self.cq_dir),
            manual: self
                .manual_runs
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok(),
            safe_end: durable.dispatched_durable.min(durable.commit_log_durable),
        };
        let files = self.parts.log.files();
        let bounds: Vec<(u64, u64)> = files
            .iter()
            .map(|f| (f.start_offset(), f.start_offset() + f.size()))
            .collect();
        let plan = plan_commit_log(
            &bounds,
            |i| self.parts.log.newest_store_time(&files[i]),
            &situation,
            &self.policy,
        );
        self.note_disk_state(&plan, situation.log_used);
        report.trigger = plan.trigger;
        report.disk_used_percent = situation.log_used;
        report.disk_full = plan.disk_full;

        for (n, &(start, reason)) in plan.remove.iter().enumerate() {
            if n > 0 && !pause.sleep(self.delete_pause) {
                return Ok(());
            }
            let Some(file) = files.iter().find(|f| f.start_offset() == start) else {
                break;
            };
            let removed = park(st, file, reason, self.parts.log.file_queue())?;
            self.parts.log.forget_file(start);
            if matches!(reason, RemovalReason::Expired { .. }) {
                tracing::info!(path = %removed.path.display(), bytes = removed.bytes, reason = ?reason, "deleted expired commit log file");
            } else {
                tracing::warn!(path = %removed.path.display(), bytes = removed.bytes, reason = ?reason, "deleted commit log file before expiry: disk nearly full");
            }
            report.removed.push(removed);
        }
        drop(files);

        // ConsumeQueues and IndexFiles, once the CommitLog minimum moved.
        let log_min = self.parts.log.min_offset();
        if log_min > st.queues_cleaned_at {
            let reason = RemovalReason::BelowCommitLogMin {
                min_offset: log_min,
            };
            for q in self.parts.queues.all() {
                // Readers see OFFSET_TOO_SMALL before the files go.
                q.correct_min_offset(log_min);
                let files = q.files();
                let lasts: Vec<Option<CqUnit>> =
                    files.iter().map(|f| ConsumeQueue::last_unit(f)).collect();
                let n = queue::files_to_remove(&lasts, log_min);
                for file in files.iter().take(n) {
                    let removed = park(st, file, reason, q.file_queue())?;
                    tracing::info!(path = %removed.path.display(), bytes = removed.bytes, min_offset = q.min_offset(), "deleted consume queue file below the commit log minimum");
                    report.removed.push(removed);
                }
                drop(files);
                if n > 0 && !pause.sleep(self.queue_pause) {
                    return Ok(());
                }
            }
            if let Some(index) = &self.parts.index {
                for (path, bytes) in index.remove_below(log_min)? {
                    tracing::info!(path = %path.display(), bytes, "deleted index file below the commit log minimum");
                    report.removed.push(RemovedFile {
                        path,
                        bytes,
                        reason,
                    });
                }
            }
            st.queues_cleaned_at = log_min;
        }
        Ok(())
    }

    /// Deletes every file of `queues` (already out of the registry) the way a pass deletes
    /// one: renamed out of the namespace now, unmapped and unlinked by this or a later pass
    /// once no reader holds it; the emptied directories go with the last file.
    pub(crate) fn delete_queues(&self, queues: Vec<Arc<ConsumeQueue>>) -> Result<Vec<RemovedFile>> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut removed = Vec::new();
        for q in queues {
            for file in q.files() {
                file.retire()?;
                removed.push(RemovedFile {
                    path: file.path().to_owned(),
                    bytes: file.size(),
                    reason: RemovalReason::TopicDeleted,
                });
                st.graveyard.push(Parked {
                    file,
                    since: Instant::now(),
                    reported: false,
                });
            }
        }
        let mut report = CleanupReport::default();
        self.release(&mut st, &mut report);
        Ok(removed)
    }

    /// Unmaps and unlinks parked files nobody holds; reports long-held ones; retries
    /// unlinks that failed.
    fn release(&self, st: &mut CleanState, report: &mut CleanupReport) {
        for parked in std::mem::take(&mut st.graveyard) {
            match Arc::try_unwrap(parked.file) {
                Ok(file) => {
                    let unmap_started = Instant::now();
                    let retired = file.destroy();
                    let unmapped = unmap_started.elapsed();
                    report.unmap_time += unmapped;
                    if let Some(path) = retired {
                        let unlink_started = Instant::now();
                        let unlinked = fault::remove_file(self.parts.log.faults(), &path);
                        report.unlink_time += unlink_started.elapsed();
                        if let Err(e) = unlinked {
                            tracing::warn!(path = %path.display(), error = %e, "could not remove a deleted file; retrying later");
                            st.unremoved.push(path);
                        } else {
                            tracing::debug!(path = %path.display(), unmap_us = unmapped.as_micros() as u64, unlink_us = unlink_started.elapsed().as_micros() as u64, "released deleted file");
                            // The last file of a deleted topic's queue takes its directory.
                            if let Some(dir) = path.parent() {
                                self.parts.queues.prune_empty_dirs(dir);
                            }
                        }
                    }
                }
                Err(file) => {
                    let mut parked = Parked { file, ..parked };
                    if !parked.reported && parked.since.elapsed() >= self.report_held_after {
                        parked.reported = true;
                        tracing::warn!(
                            path = %parked.file.retired_path().unwrap_or(parked.file.path()).display(),
                            readers = Arc::strong_count(&parked.file) - 1,
                            held_for_s = parked.since.elapsed().as_secs(),
                            "deleted file still held by readers; it is removed when they let go"
                        );
                    }
                    st.graveyard.push(parked);
                }
            }
        }
        if !st.unremoved.is_empty() && st.last_redelete.elapsed() >= self.redelete_every {
            st.last_redelete = Instant::now();
            let faults = self.parts.log.faults();
            st.unremoved.retain(|path| retry_remove(path, faults));
        }
        report.held_by_readers = st.graveyard.len();
    }

    fn note_disk_state(&self, plan: &CommitLogPlan, used: Option<u32>) {
        let was_full = self.parts.log.set_disk_full(plan.disk_full);
        if plan.disk_full && !was_full {
            tracing::error!(used_percent = ?used, limit = self.policy.warning_percent, "disk nearly full: puts are refused until cleanup frees space");
        } else if was_full && !plan.disk_full {
            tracing::info!(used_percent = ?used, "disk usage back below the limit: puts accepted again");
        }
    }
}

/// Renames `file` away, takes it out of its queue and parks it. The rename comes first:
/// if it fails nothing changed, and readers never saw the file go (the queue's minimum
/// only ever moves forward).
fn park(
    st: &mut CleanState,
    file: &Arc<MappedFile>,
    reason: RemovalReason,
    queue: &MappedFileQueue,
) -> Result<RemovedFile> {
    let path = file.path().to_owned();
    let not_first = || {
        crate::error::Error::io(
            "delete",
            &path,
            std::io::Error::other("not the first file of its queue"),
        )
    };
    // Never expected to fail: the cleaner alone removes files, and queues only grow at
    // the other end, so the first of several files stays first and not last.
    if !queue.is_first_of_several(file.start_offset()) {
        return Err(not_first());
    }
    file.retire()?;
    let Some(taken) = queue.take_first(file.start_offset()) else {
        return Err(not_first());
    };
    st.graveyard.push(Parked {
        file: taken,
        since: Instant::now(),
        reported: false,
    });
    Ok(RemovedFile {
        path,
        bytes: file.size(),
        reason,
    })
}

/// Removes a deleted file again; false (keep trying) only if it still exists.
fn retry_remove(path: &Path, faults: &FaultInjector) -> bool {
    match fault::remove_file(faults, path) {
        Ok(()) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "still cannot remove a deleted file");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const SIZE: u64 = 100;

    fn policy() -> CleanPolicy {
        CleanPolicy::from_config(&StoreConfig::new("/x")).expect("defaults")
    }

    /// `n` files of SIZE bytes; file `i`'s newest message was stored at `i` hours.
    fn files(n: u64) -> Vec<(u64, u64)> {
        (0..n).map(|i| (i * SIZE, (i + 1) * SIZE)).collect()
    }

    fn situation(now_ms: i64, hour: u32) -> Situation {
        Situation {
            now_ms,
            local_hour: hour,
            log_used: Some(10),
            cq_used: Some(10),
            manual: false,
            safe_end: u64::MAX,
        }
    }

    fn plan(n: u64, s: &Situation, p: &CleanPolicy) -> CommitLogPlan {
        plan_commit_log(&files(n), |i| Some(i as i64 * H), s, p)
    }

    fn removed(plan: &CommitLogPlan) -> Vec<u64> {
        plan.remove.iter().map(|(start, _)| start / SIZE).collect()
    }

    #[test]
    fn exactly_the_reserved_time_expires_and_a_millisecond_less_does_not() {
        let p = policy();
        // File 0's newest message is at 0 h; file 1's at 1 h.
        assert!(removed(&plan(4, &situation(72 * H - 1, 4), &p)).is_empty());
        assert_eq!(removed(&plan(4, &situation(72 * H, 4), &p)), vec![0]);
        assert_eq!(removed(&plan(4, &situation(73 * H, 4), &p)), vec![0, 1]);
        let pl = plan(4, &situation(72 * H, 4), &p);
        assert_eq!(
            pl.remove[0].1,
            RemovalReason::Expired {
                trigger: CleanTrigger::DeleteWhen { hour: 4 },
                newest_store_timestamp: 0
            }
        );
    }

    #[test]
    fn nothing_goes_outside_the_delete_hours_without_pressure() {
        let p = policy();
        for hour in [0, 3, 5, 23] {
            let pl = plan(4, &situation(100 * H, hour), &p);
            assert_eq!(pl.trigger, None, "hour {hour}");
            assert!(pl.remove.is_empty());
        }
        let mut p = policy();
        p.delete_hours = vec![1, 4];
        assert_eq!(removed(&plan(4, &situation(100 * H, 1), &p)), vec![0, 1, 2]);
        assert!(removed(&plan(4, &situation(100 * H, 2), &p)).is_empty());
    }

    #[test]
    fn never_the_active_file_never_undispatched_data_and_at_most_a_batch() {
        let p = policy();
        assert!(
            plan(0, &situation(1000 * H, 4), &p).remove.is_empty(),
            "empty store"
        );
        assert!(
            plan(1, &situation(1000 * H, 4), &p).remove.is_empty(),
            "only the active file"
        );
        assert_eq!(removed(&plan(3, &situation(1000 * H, 4), &p)), vec![0, 1]);
        let mut s = situation(1000 * H, 4);
        s.safe_end = 2 * SIZE - 1;
        assert_eq!(
            removed(&plan(5, &s, &p)),
            vec![0],
            "file 1 is not wholly dispatched"
        );
        assert_eq!(removed(&plan(30, &situation(1000 * H, 4), &p)).len(), 10);
        let mut small = policy();
        small.batch_max = 3;
        assert_eq!(
            removed(&plan(30, &situation(1000 * H, 4), &small)),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn a_clock_behind_the_data_expires_nothing_but_pressure_still_works() {
        let p = policy();
        // Files stored at 0..4 h; the clock jumped back a year.
        let back = -365 * 24 * H;
        assert!(plan(5, &situation(back, 4), &p).remove.is_empty());
        let mut s = situation(back, 4);
        s.log_used = Some(86);
        assert_eq!(removed(&plan(5, &s, &p)), vec![0, 1, 2, 3]);
        // A file whose newest message is unknown never expires by time.
        let pl = plan_commit_log(&files(3), |_| None, &situation(1000 * H, 4), &p);
        assert!(pl.remove.is_empty());
    }

    #[test]
    fn the_walk_stops_at_the_first_file_that_stays() {
        let p = policy();
        // File 1 was written later than file 2 (a clock step): it is not expired yet, so
        // file 2 waits too.
        let newest = [0, 50 * H, 1, 2];
        let pl = plan_commit_log(&files(5), |i| Some(newest[i]), &situation(73 * H, 4), &p);
        assert_eq!(removed(&pl), vec![0]);
    }

    #[test]
    fn disk_usage_levels_give_rocketmq_behaviour() {
        let p = policy();
        let now = 10 * H; // nothing expired by time
        let at = |used: Option<u32>| {
            let mut s = situation(now, 12);
            s.log_used = used;
            plan(5, &s, &p)
        };
        let pl = at(Some(75));
        assert_eq!(
            (pl.trigger, pl.disk_full, pl.remove.len()),
            (None, false, 0),
            "75 % is not above 75"
        );
        let pl = at(Some(76));
        assert_eq!(
            pl.trigger,
            Some(CleanTrigger::DiskUsage {
                used_percent: Some(76)
            })
        );
        assert!(pl.remove.is_empty(), "only expired files go below 85 %");
        let pl = at(Some(86));
        assert!(!pl.disk_full);
        assert_eq!(removed(&pl), vec![0, 1, 2, 3], "forced above 85 %");
        assert_eq!(
            pl.remove[0].1,
            RemovalReason::DiskPressure { used_percent: 86 }
        );
        let pl = at(Some(91));
        assert!(pl.disk_full, "puts refused above 90 %");
        assert_eq!(removed(&pl), vec![0, 1, 2, 3]);
        let mut s = situation(now, 12);
        (s.log_used, s.cq_used) = (None, None);
        let pl = plan(5, &s, &p);
        assert_eq!(
            pl.trigger,
            Some(CleanTrigger::DiskUsage { used_percent: None }),
            "unknown usage triggers"
        );
        assert!(!pl.disk_full && pl.remove.is_empty());
        // The ConsumeQueue disk counts too.
        let mut s = situation(now, 12);
        s.cq_used = Some(88);
        assert_eq!(removed(&plan(3, &s, &p)), vec![0, 1]);
        // Forced deletion can be switched off.
        let mut off = policy();
        off.clean_forcibly_enable = false;
        let mut s = situation(now, 12);
        s.log_used = Some(95);
        let pl = plan(5, &s, &off);
        assert!(pl.disk_full && pl.remove.is_empty());
    }

    #[test]
    fn manual_trigger_deletes_expired_files_at_any_hour() {
        let p = policy();
        let mut s = situation(80 * H, 13);
        assert!(plan(4, &s, &p).remove.is_empty());
        s.manual = true;
        let pl = plan(4, &s, &p);
        assert_eq!(pl.trigger, Some(CleanTrigger::Manual));
        assert_eq!(removed(&pl), vec![0, 1, 2]);
    }

    #[test]
    fn a_failed_unlink_is_kept_for_retry_until_it_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("00000000000000000000.deleted");
        assert!(
            !retry_remove(&gone, &FaultInjector::default()),
            "already gone: nothing to retry"
        );
        // Unlinking a directory fails (EISDIR): kept for the next retry.
        let stuck = dir.path().join("00000000000000004096.deleted");
        std::fs::create_dir(&stuck).expect("mkdir");
        assert!(retry_remove(&stuck, &FaultInjector::default()));
        std::fs::remove_dir(&stuck).expect("rmdir");
        std::fs::write(&stuck, b"x").expect("file");
        assert!(
            !retry_remove(&stuck, &FaultInjector::default()),
            "removed on retry"
        );
        assert!(!stuck.exists());
    }
}
