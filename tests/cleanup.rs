//! Expiry cleanup end to end: retention by time and hour under a manual clock, disk
//! pressure through a manual probe, readers holding deleted files, and a
//! restart after a crash in the middle of a cleanup pass.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqstore::format::{self, Decoded};
use mqstore::{
    CleanTrigger, GetMessageStatus, ManualClock, ManualDiskUsage, Message, MessageStore, PutStatus,
    QueueOffset, RemovalReason, StoreConfig,
};

const H: i64 = 3_600_000;
/// 2026-01-01T05:00:00Z: +71 h is 04:00, +72 h is 05:00, +95 h is 04:00 again.
const T0: i64 = 1_767_243_600_000;
const TOPIC: &str = "Retained";
const LOG_FILE: u64 = 64 * 1024;

fn small(c: &mut StoreConfig) {
    c.mapped_file_size_commit_log = LOG_FILE;
    c.mapped_file_size_consume_queue = 100 * 20;
    c.max_hash_slot_num = 64;
    c.max_index_num = 200;
    c.delete_commit_log_files_interval = Duration::ZERO;
    c.delete_consume_queue_files_interval = Duration::ZERO;
    // Tests run the passes themselves.
    c.clean_resource_interval = Duration::from_secs(3600);
}

fn open(
    root: &Path,
    clock: &Arc<ManualClock>,
    disk: &Arc<ManualDiskUsage>,
    adjust: impl FnOnce(&mut StoreConfig),
) -> MessageStore {
    MessageStore::builder(root)
        .configure(|c| {
            small(c);
            adjust(c);
        })
        .clock(Arc::clone(clock) as _)
        .disk_usage(Arc::clone(disk) as _)
        .open()
        .expect("open store")
}

/// A store directory with a manual clock at `start` and a disk `percent` full, its store
/// holding `per_queue` messages per queue stored at `start`, checkpointed.
fn filled(
    start: i64,
    percent: u32,
    per_queue: u64,
) -> (
    tempfile::TempDir,
    Arc<ManualClock>,
    Arc<ManualDiskUsage>,
    MessageStore,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(start));
    let disk = Arc::new(ManualDiskUsage::new(percent));
    let store = open(dir.path(), &clock, &disk, |_| {});
    fill(&store, per_queue);
    store.checkpoint().expect("checkpoint");
    (dir, clock, disk, store)
}

/// The body of queue `q`'s message at `offset`: names itself, 300 bytes.
fn body(q: u32, offset: u64) -> Vec<u8> {
    let mut b = format!("{TOPIC}/{q}/{offset}/").into_bytes();
    b.resize(300, b'a' + (offset % 26) as u8);
    b
}

/// Appends `n` messages per queue (2 queues) and returns the next offsets.
fn fill(store: &MessageStore, per_queue: u64) {
    for _ in 0..per_queue {
        for q in 0..2 {
            let next = store.next_queue_offset(TOPIC, q).0;
            let msg = Message::new(TOPIC, q, body(q, next))
                .with_property("KEYS", &format!("key-{q}-{next}"));
            let put = store.put(&msg).expect("put");
            assert_eq!(put.status, PutStatus::PutOk);
            assert_eq!(put.appended.expect("stored").queue_offset.0, next);
        }
    }
}

/// Every message of queue `q` from `from` on is readable with the right bytes.
fn assert_intact_from(store: &MessageStore, q: u32, from: u64) {
    let max = store.max_offset_in_queue(TOPIC, q).0;
    let mut at = from;
    while at < max {
        let got = store
            .get_message("g", TOPIC, q, QueueOffset(at), 32, None)
            .expect("get");
        assert_eq!(got.status, GetMessageStatus::Found, "queue {q} offset {at}");
        for rec in &got.messages {
            let v = rec.view().expect("record");
            assert_eq!(v.body, body(q, v.queue_offset as u64).as_slice());
        }
        at = got.next_begin_offset.0;
    }
}

/// Queue `q` starts above 0 at the first message in the CommitLog from `log_min` on;
/// offset 0 reads as OFFSET_TOO_SMALL pointing at that minimum; everything from it to the
/// end (`max`) reads back intact. Returns the queue's minimum.
fn assert_removed_below(store: &MessageStore, q: u32, log_min: u64, max: u64) -> u64 {
    let qmin = store.min_offset_in_queue(TOPIC, q).0;
    assert!(qmin > 0, "queue {q} lost nothing");
    let first = store
        .get_message("g", TOPIC, q, QueueOffset(qmin), 1, None)
        .expect("get");
    assert!(first.messages[0].physical_offset().0 >= log_min);
    let gone = store
        .get_message("g", TOPIC, q, QueueOffset(0), 32, None)
        .expect("get");
    assert_eq!(gone.status, GetMessageStatus::OffsetTooSmall);
    assert_eq!(gone.next_begin_offset.0, qmin);
    assert_eq!(gone.min_offset.0, qmin);
    assert_intact_from(store, q, qmin);
    assert_eq!(
        store.max_offset_in_queue(TOPIC, q).0,
        max,
        "nothing newer lost"
    );
    qmin
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn cq_dir(root: &Path, q: u32) -> PathBuf {
    root.join("consumequeue").join(TOPIC).join(q.to_string())
}

#[test]
fn files_go_after_72_hours_at_the_delete_hour_and_reads_see_offset_too_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let disk = Arc::new(ManualDiskUsage::new(20));
    let store = open(dir.path(), &clock, &disk, |_| {});
    fill(&store, 300); // ~250 KB at T0: 3+ files
    clock.set(T0 + 30 * H);
    fill(&store, 150); // newer messages, expiring at T0 + 102 h
    store.checkpoint().expect("checkpoint");
    let log_dir = dir.path().join("commitlog");
    let files_before = files_in(&log_dir);
    assert!(files_before.len() >= 5, "{files_before:?}");
    let cq_before = files_in(&cq_dir(dir.path(), 0));

    // +71 h, at 04:00: inside deleteWhen but nothing has expired.
    clock.set(T0 + 71 * H);
    let r = store.run_cleanup().expect("pass");
    assert_eq!(r.trigger, Some(CleanTrigger::DeleteWhen { hour: 4 }));
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    // +72 h, 05:00: expired, but outside deleteWhen with a disk 20 % full.
    clock.set(T0 + 72 * H);
    let r = store.run_cleanup().expect("pass");
    assert_eq!(r.trigger, None);
    assert!(r.removed.is_empty());
    assert_eq!(store.min_offset().0, 0);

    // +95 h, 04:00: the files holding only T0 messages go; the rest stays.
    clock.set(T0 + 95 * H);
    let r = store.run_cleanup().expect("pass");
    let log_removed: Vec<_> = r
        .removed
        .iter()
        .filter(|f| f.path.starts_with(&log_dir))
        .collect();
    assert!(log_removed.len() >= 3, "{:?}", r.removed);
    for f in &log_removed {
        assert_eq!(f.bytes, LOG_FILE);
        assert!(matches!(
            f.reason,
            RemovalReason::Expired { newest_store_timestamp, .. } if newest_store_timestamp == T0
        ));
    }
    let min = store.min_offset().0;
    assert_eq!(min, log_removed.len() as u64 * LOG_FILE);
    assert_eq!(r.commit_log_min_offset.0, min);
    assert_eq!(
        files_in(&log_dir).len(),
        files_before.len() - log_removed.len(),
        "no .deleted leftovers either"
    );
    assert_eq!(r.held_by_readers, 0);

    for q in 0..2 {
        let qmin = assert_removed_below(&store, q, min, 450);
        assert!(qmin < 300, "queue {q} min {qmin}");
    }
    // ConsumeQueue files wholly below the new minimum went (100 units each).
    let cq_after = files_in(&cq_dir(dir.path(), 0));
    let qmin = store.min_offset_in_queue(TOPIC, 0).0;
    assert_eq!(cq_before.len() - cq_after.len(), (qmin / 100) as usize);
    assert!(r.removed.iter().any(|f| matches!(
        f.reason,
        RemovalReason::BelowCommitLogMin { min_offset } if min_offset == min
    )));
    // Index: keys of deleted messages find nothing, newer keys still do.
    let found = |key: &str| {
        store
            .query_message(TOPIC, key, 4, 0, i64::MAX)
            .messages
            .len()
    };
    assert_eq!(found("key-0-0"), 0);
    assert_eq!(found(&format!("key-0-{}", 449)), 1);

    // Puts still work and land after the old end.
    fill(&store, 1);
    assert!(store.wait_dispatched(Duration::from_secs(10)));
    assert_eq!(store.max_offset_in_queue(TOPIC, 1).0, 451);
    store.shutdown().expect("shutdown");

    // After a restart the minimum offsets are the same.
    let store = open(dir.path(), &clock, &disk, |_| {});
    assert_eq!(store.min_offset().0, min);
    assert_eq!(store.min_offset_in_queue(TOPIC, 0).0, qmin);
    assert_intact_from(&store, 0, qmin);
}

#[test]
fn a_clock_jumping_back_deletes_nothing_and_one_jumping_far_ahead_deletes_in_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let disk = Arc::new(ManualDiskUsage::new(20));
    let store = open(dir.path(), &clock, &disk, |c| {
        c.delete_when = "04;05".to_owned();
        c.delete_file_batch_max = 2;
    });
    fill(&store, 600);
    store.checkpoint().expect("checkpoint");
    let files = store.commit_log_file_count();
    assert!(files >= 6);
    // A year back, at 05:00: every file's messages look like they come from the future.
    clock.set(T0 - 365 * 24 * H);
    let r = store.run_cleanup().expect("pass");
    assert!(matches!(
        r.trigger,
        Some(CleanTrigger::DeleteWhen { hour: 5 })
    ));
    assert!(r.removed.is_empty());
    // Ten years ahead: everything but the active file expires, two files per pass.
    clock.set(T0 + 10 * 365 * 24 * H);
    let mut passes = 0;
    while store.commit_log_file_count() > 1 {
        let r = store.run_cleanup().expect("pass");
        let log_files = r
            .removed
            .iter()
            .filter(|f| f.path.starts_with(dir.path().join("commitlog")))
            .count();
        assert!(log_files <= 2, "batch max");
        passes += 1;
        assert!(passes <= files, "no progress");
    }
    assert_eq!(passes, (files - 1).div_ceil(2));
    for q in 0..2 {
        assert_intact_from(&store, q, store.min_offset_in_queue(TOPIC, q).0);
    }
    // Space pressure still works with the clock back.
    fill(&store, 300);
    store.checkpoint().expect("checkpoint");
    clock.set(T0 - 365 * 24 * H);
    disk.set(Some(86));
    let r = store.run_cleanup().expect("pass");
    assert!(!r.removed.is_empty());
}

#[test]
fn disk_usage_above_75_85_and_90_percent() {
    // 12:00, not a delete hour.
    let (dir, clock, disk, store) = filled(T0 + 7 * H, 76, 400);
    let files = store.commit_log_file_count();

    // 76 %: cleanup is triggered at any hour, but nothing has expired.
    let r = store.run_cleanup().expect("pass");
    assert_eq!(
        r.trigger,
        Some(CleanTrigger::DiskUsage {
            used_percent: Some(76)
        })
    );
    assert!(r.removed.is_empty());
    assert!(!r.disk_full);
    // ... and expired files go at 12:00.
    clock.set(T0 + 7 * H + 72 * H);
    let r = store.run_cleanup().expect("pass");
    assert!(!r.removed.is_empty());
    assert!(matches!(
        r.removed[0].reason,
        RemovalReason::Expired {
            trigger: CleanTrigger::DiskUsage { .. },
            ..
        }
    ));
    fill(&store, 400);
    store.checkpoint().expect("checkpoint");
    let before = store.commit_log_file_count();

    // 86 %: the oldest files go before they expire, at most 10 per pass.
    disk.set(Some(86));
    let r = store.run_cleanup().expect("pass");
    let log_removed = r
        .removed
        .iter()
        .filter(|f| f.path.starts_with(dir.path().join("commitlog")))
        .count();
    assert_eq!(log_removed, (before - 1).min(10), "{:?}", r.removed);
    assert!(r
        .removed
        .iter()
        .any(|f| matches!(f.reason, RemovalReason::DiskPressure { used_percent: 86 })));
    assert!(!r.disk_full);
    fill(&store, 10);

    // 91 %: puts are refused with a clear status and nothing is written.
    disk.set(Some(91));
    let r = store.run_cleanup().expect("pass");
    assert!(r.disk_full && store.is_disk_full());
    let end = store.max_offset();
    let put = store
        .put(&Message::new(TOPIC, 0, b"refused".to_vec()))
        .expect("put");
    assert_eq!(put.status, PutStatus::DiskFull);
    assert!(put.appended.is_none());
    assert_eq!(store.max_offset(), end);
    // Below 90 % again: accepted.
    disk.set(Some(80));
    let r = store.run_cleanup().expect("pass");
    assert!(!r.disk_full && !store.is_disk_full());
    fill(&store, 1);
    assert!(store.max_offset() > end);
    assert!(files > 1);
}

#[test]
fn manual_trigger_deletes_expired_files_at_any_hour() {
    let (_dir, clock, _disk, store) = filled(T0 + 7 * H, 10, 300);
    clock.set(T0 + 7 * H + 80 * H); // 15:00
    assert!(store.run_cleanup().expect("pass").removed.is_empty());
    let files = store.commit_log_file_count();
    assert!(files > 2);
    store.delete_expired_files_manually();
    let mut manual_passes = 0;
    for _ in 0..25 {
        let r = store.run_cleanup().expect("pass");
        if r.trigger == Some(CleanTrigger::Manual) {
            manual_passes += 1;
        }
    }
    // Every file but the active one expired; the woken thread may have deleted them.
    assert_eq!(store.commit_log_file_count(), 1);
    // The thread may have taken one of the armed runs itself (it was woken).
    assert!((19..=20).contains(&manual_passes), "{manual_passes}");
}

/// Lines of /proc/self/maps and links in /proc/self/fd naming files under `dir`.
fn still_referenced(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out: Vec<String> = std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle) && l.contains(".deleted"))
        .map(str::to_owned)
        .collect();
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if t.contains(&needle) && t.contains(".deleted") {
                    out.push(t.into_owned());
                }
            }
        }
    }
    out
}

/// Readers hold records of the oldest files across their deletion, over
/// 10 000 cleanup passes with a fast-forwarded clock.
#[test]
fn readers_holding_the_oldest_files_while_they_are_deleted() {
    const PASSES: u64 = 10_000;
    // tmpfs when there is one: each pass checkpoints (fsyncs), which tmpfs makes free.
    let base = Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base).expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    };
    let clock = Arc::new(ManualClock::new(T0 - H)); // 04:00
    let disk = Arc::new(ManualDiskUsage::new(20));
    let store = Arc::new(open(dir.path(), &clock, &disk, |c| {
        c.mapped_file_size_commit_log = 8 * 4096; // ~90 messages per file
        c.delete_when = (0..24).map(|h| h.to_string()).collect::<Vec<_>>().join(";");
        c.flush_interval_consume_queue = Duration::from_secs(3600);
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let removed_seen = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2u32)
        .map(|q| {
            let store = Arc::clone(&store);
            let stop = Arc::clone(&stop);
            let reads = Arc::clone(&reads);
            let removed_seen = Arc::clone(&removed_seen);
            std::thread::spawn(move || {
                // Guards kept across passes: their files get deleted while held.
                let mut held: std::collections::VecDeque<_> = std::collections::VecDeque::new();
                let mut at = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let got = store
                        .get_message("g", TOPIC, q, QueueOffset(at), 8, None)
                        .expect("a read never fails");
                    match got.status {
                        GetMessageStatus::Found => {
                            for rec in got.messages {
                                held.push_back(rec);
                            }
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        GetMessageStatus::OffsetTooSmall
                        | GetMessageStatus::MessageWasRemoving
                        | GetMessageStatus::OffsetFoundNull => {
                            removed_seen.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    // Read from the oldest offset again, or go on past what was returned.
                    at = if at.is_multiple_of(3) {
                        got.min_offset.0
                    } else {
                        got.next_begin_offset.0
                    };
                    at += 1;
                    while held.len() > 64 {
                        let rec = held.pop_front().expect("held");
                        let v = rec.view().expect("a held record still decodes");
                        assert_eq!(v.body, body(q, v.queue_offset as u64).as_slice());
                        assert!(
                            matches!(
                                format::decode_record(rec.bytes(), true),
                                Ok(Decoded::Message(_))
                            ),
                            "CRC of a held record"
                        );
                    }
                }
                for rec in held {
                    let v = rec.view().expect("record");
                    assert_eq!(v.body, body(q, v.queue_offset as u64).as_slice());
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut deleted = 0usize;
    let mut max_held = 0usize;
    for pass in 0..PASSES {
        fill(&store, 2);
        if pass % 20 == 0 {
            store.checkpoint().expect("checkpoint");
        }
        clock.advance(73 * H);
        let r = store.run_cleanup().expect("pass");
        deleted += r.removed.len();
        max_held = max_held.max(r.held_by_readers);
    }
    stop.store(true, Ordering::Release);
    for r in readers {
        r.join().expect("reader panicked");
    }
    let r = store.run_cleanup().expect("final pass");
    assert_eq!(r.held_by_readers, 0, "readers let go");
    let refs = still_referenced(dir.path());
    assert!(
        refs.is_empty(),
        "deleted files still mapped or open: {refs:?}"
    );
    let leftovers: Vec<String> = files_in(&dir.path().join("commitlog"))
        .into_iter()
        .filter(|n| n.ends_with(".deleted"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The disk space is returned: what is left is the few files still in use.
    assert!(store.commit_log_file_count() <= 4);
    let on_disk: u64 = std::fs::read_dir(dir.path().join("commitlog"))
        .expect("dir")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum();
    assert!(on_disk <= 4 * 8 * 4096, "{on_disk} bytes left");
    assert!(deleted > 100, "only {deleted} files deleted");
    assert!(max_held > 0, "readers never held a deleted file");
    assert!(reads.load(Ordering::Relaxed) > 0);
    for q in 0..2 {
        assert_intact_from(&store, q, store.min_offset_in_queue(TOPIC, q).0);
    }
    eprintln!(
        "{PASSES} passes in {:?}: {deleted} files deleted, up to {max_held} held by readers at once, {} reads, {} removed statuses",
        started.elapsed(),
        reads.load(Ordering::Relaxed),
        removed_seen.load(Ordering::Relaxed)
    );
}

/// The space of a deleted file comes back when its last reader lets go, not before.
#[test]
fn a_deleted_file_keeps_its_space_until_the_last_reader_lets_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0 - H));
    let disk = Arc::new(ManualDiskUsage::new(20));
    let store = open(dir.path(), &clock, &disk, |c| {
        c.mapped_file_size_commit_log = 1 << 20;
    });
    fill(&store, 2000); // ~1.6 MB: two files
    store.checkpoint().expect("checkpoint");
    let oldest = store
        .get_message("g", TOPIC, 0, QueueOffset(0), 1, None)
        .expect("get")
        .messages
        .pop()
        .expect("first message");
    clock.advance(72 * H);
    let r = store.run_cleanup().expect("pass");
    assert_eq!(
        r.removed[0].path,
        dir.path().join("commitlog/00000000000000000000")
    );
    assert_eq!(r.held_by_readers, 1);
    let parked = dir.path().join("commitlog/00000000000000000000.deleted");
    assert!(parked.exists(), "renamed, kept while held");
    assert!(!still_referenced(dir.path()).is_empty(), "still mapped");
    assert_eq!(oldest.view().expect("view").body, body(0, 0).as_slice());
    drop(oldest);
    let r = store.run_cleanup().expect("pass");
    assert_eq!(r.held_by_readers, 0);
    assert!(!parked.exists());
    assert!(still_referenced(dir.path()).is_empty());
}

#[cfg(feature = "testing")]
mod crash {
    use super::*;

    /// A pass cut short: the two oldest CommitLog files are gone (one unlinked, one only
    /// renamed), the ConsumeQueues and the index still point into them, and the checkpoint
    /// is older. Opening is clean and consistent, and the next pass finishes the job.
    #[test]
    fn restart_after_a_crash_in_the_middle_of_a_cleanup_pass() {
        let (dir, clock, disk, store) = filled(T0, 20, 400);
        fill(&store, 50);
        store.halt();
        let log = dir.path().join("commitlog");
        let names = files_in(&log);
        assert!(names.len() >= 5);
        std::fs::remove_file(log.join(&names[0])).expect("unlink");
        std::fs::rename(
            log.join(&names[1]),
            log.join(format!("{}.deleted", names[1])),
        )
        .expect("rename");

        let store = open(dir.path(), &clock, &disk, |_| {});
        // Counted after the open: records the dispatcher had not reached before the crash
        // are dispatched again by recovery, which may add a ConsumeQueue file.
        let cq_files = files_in(&cq_dir(dir.path(), 0)).len();
        assert!(store.recovery_report().abnormal_exit);
        let min = 2 * LOG_FILE;
        assert_eq!(store.min_offset().0, min);
        assert!(!files_in(&log).iter().any(|n| n.ends_with(".deleted")));
        for q in 0..2 {
            assert_removed_below(&store, q, min, 450);
        }
        // No trigger now (12:00 would be T0 + 7 h; this is 05:00), but the derived files
        // below the minimum go in the next pass.
        let r = store.run_cleanup().expect("pass");
        assert!(r
            .removed
            .iter()
            .all(|f| matches!(f.reason, RemovalReason::BelowCommitLogMin { .. })));
        let qmin = store.min_offset_in_queue(TOPIC, 0).0;
        assert_eq!(
            cq_files - files_in(&cq_dir(dir.path(), 0)).len(),
            (qmin / 100) as usize
        );
        store.shutdown().expect("shutdown");
    }

    /// Files deleted by a pass, then a crash before the checkpoint caught up: the same
    /// minimums after recovery.
    #[test]
    fn crash_right_after_a_pass() {
        let (dir, clock, disk, store) = filled(T0, 20, 400);
        clock.set(T0 + 95 * H);
        let r = store.run_cleanup().expect("pass");
        assert!(!r.removed.is_empty());
        let mins = (
            store.min_offset().0,
            store.min_offset_in_queue(TOPIC, 0).0,
            store.min_offset_in_queue(TOPIC, 1).0,
        );
        fill(&store, 20);
        store.halt();
        let store = open(dir.path(), &clock, &disk, |_| {});
        assert_eq!(
            (
                store.min_offset().0,
                store.min_offset_in_queue(TOPIC, 0).0,
                store.min_offset_in_queue(TOPIC, 1).0,
            ),
            mins
        );
        for q in 0..2 {
            assert_intact_from(&store, q, store.min_offset_in_queue(TOPIC, q).0);
            assert_eq!(store.max_offset_in_queue(TOPIC, q).0, 420);
        }
    }
}

#[test]
fn the_clean_thread_deletes_on_its_own_and_stops_with_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0 - H)); // 04:00
    let disk = Arc::new(ManualDiskUsage::new(20));
    let store = open(dir.path(), &clock, &disk, |c| {
        c.clean_resource_interval = Duration::from_millis(20);
        // Longer than the test: shutdown must not wait for it.
        c.delete_commit_log_files_interval = Duration::from_secs(60);
    });
    fill(&store, 400);
    store.checkpoint().expect("checkpoint");
    let files = store.commit_log_file_count();
    assert!(files >= 4);
    clock.advance(72 * H);
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.commit_log_file_count() == files {
        assert!(
            Instant::now() < deadline,
            "rmq-clean never deleted anything"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The thread is now pausing 60 s before its next deletion.
    let stopping = Instant::now();
    store.shutdown().expect("shutdown");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown waited for the pause"
    );
    let store = open(dir.path(), &clock, &disk, |_| {});
    assert_eq!(store.commit_log_file_count(), files - 1);
}
