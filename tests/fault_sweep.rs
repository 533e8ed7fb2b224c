//! Fault countdown: run a fixed sequence of store
//! operations with the Nth I/O call failing, for N = 1, 2, … until the sequence completes
//! without the fault firing. Every run must end in `Ok` or a typed `Err` (a panic fails the
//! test), and the store must then reopen, without faults, to a consistent state holding every
//! acknowledged message. After a failed flush no put is ever acknowledged again
//! (SYNC_FLUSH): data above the last good flush is never vouched for.
//!
//! Each failing N prints its context; reproduce one with
//! `MQSTORE_SWEEP_ONLY=<scenario>:<once|forever>:<N> cargo test --all-features --test fault_sweep -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mqstore::{
    FaultInjector, FlushMode, ManualClock, ManualDiskUsage, Message, MessageStore, PutStatus,
};

const FILE_SIZE: u64 = 16 * 1024;
const HOUR_MS: i64 = 3_600_000;
const START_MS: i64 = 1_700_000_000_000;

const ENOSPC: i32 = 28;
const EIO: i32 = 5;
const EFBIG: i32 = 27;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Open an empty directory, put across several file rolls, checkpoint, shut down.
    Appends,
    /// As `Appends`, then expire the oldest files and delete them (renames, unlinks,
    /// directory syncs), put more, shut down.
    AppendsAndCleanup,
    /// `Appends` with ASYNC_FLUSH: acknowledged before the flush, which the background
    /// flusher and shutdown do.
    AsyncAppends,
}

impl Scenario {
    fn flush_mode(self) -> FlushMode {
        if self == Scenario::AsyncAppends {
            FlushMode::Async
        } else {
            FlushMode::Sync
        }
    }

    /// Nothing is deleted in this scenario: the queues must be complete from offset 0.
    fn keeps_everything(self) -> bool {
        self != Scenario::AppendsAndCleanup
    }
}

fn body(seq: u64) -> Vec<u8> {
    let len = 200 + (seq * 7919 % 1500) as usize;
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

fn open(
    root: &Path,
    mode: FlushMode,
    faults: &FaultInjector,
    clock: &Arc<ManualClock>,
) -> mqstore::Result<MessageStore> {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.flush_disk_type = mode;
            c.mapped_file_size_consume_queue = 20 * 50;
            c.max_hash_slot_num = 64;
            c.max_index_num = 256;
            // Keep background passes out of the sequence so N means the same call each run.
            c.flush_interval_consume_queue = std::time::Duration::from_secs(3600);
            c.clean_resource_interval = std::time::Duration::from_secs(3600);
        })
        .clock(clock.clone())
        .disk_usage(Arc::new(ManualDiskUsage::new(10)))
        .fault_injector(faults.clone())
        .open()
}

/// What one faulty run did.
#[derive(Default)]
struct Run {
    /// Acknowledged `(physical offset, seq)`.
    acked: Vec<(u64, u64)>,
    /// Errors seen (Display), for the report.
    errors: Vec<String>,
}

fn run_sequence(root: &Path, scenario: Scenario, faults: &FaultInjector, context: &str) -> Run {
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut run = Run::default();
    let store = match open(root, scenario.flush_mode(), faults, &clock) {
        Ok(s) => s,
        Err(e) => {
            run.errors.push(format!("open: {e}"));
            return run;
        }
    };
    // Set once a put reports that a flush of the CommitLog failed (its own, or an earlier
    // one that poisoned the store): from then on nothing may be acknowledged.
    let mut flush_failed = false;
    let mut put = |store: &MessageStore, seq: u64, run: &mut Run| {
        let failed_before = flush_failed;
        let msg = Message::new("sweep", (seq % 3) as u32, body(seq))
            .with_property("KEYS", &format!("k{seq}"));
        match store.put(&msg) {
            Ok(r) if r.status == PutStatus::PutOk => {
                assert!(
                    !failed_before,
                    "{context}: put {seq} acknowledged after a failed flush"
                );
                let at = r.appended.expect("PutOk has a position").physical_offset.0;
                run.acked.push((at, seq));
            }
            Ok(r) => run.errors.push(format!("put {seq}: status {:?}", r.status)),
            Err(e) => {
                if matches!(
                    e,
                    mqstore::Error::Poisoned | mqstore::Error::Io { op: "msync", .. }
                ) {
                    flush_failed = true;
                }
                run.errors.push(format!("put {seq}: {e}"));
            }
        }
    };
    for seq in 0..40 {
        put(&store, seq, &mut run);
    }
    if let Err(e) = store.checkpoint() {
        run.errors.push(format!("checkpoint: {e}"));
    }
    if scenario == Scenario::AppendsAndCleanup {
        clock.advance(100 * HOUR_MS);
        store.delete_expired_files_manually();
        if let Err(e) = store.run_cleanup() {
            run.errors.push(format!("cleanup: {e}"));
        }
        // A second pass releases what the first parked (and retries failed unlinks).
        if let Err(e) = store.run_cleanup() {
            run.errors.push(format!("cleanup: {e}"));
        }
        // While running, too: every acknowledged record at or above the minimum reads back
        // (a file whose deletion failed half-way is back in its queue, not lost to readers).
        let min = store.min_offset().0;
        for &(at, seq) in run.acked.iter().filter(|&&(at, _)| at >= min) {
            match store.read(mqstore::PhysicalOffset(at)) {
                Ok(Some(rec)) => assert_eq!(
                    rec.view().expect("decodes").body,
                    body(seq).as_slice(),
                    "{context}: live read {at}"
                ),
                other => panic!(
                    "{context}: live read {at} above min {min} (max {}, first fault {:?}): {other:?}; errors {:?}",
                    store.max_offset().0,
                    faults.injected().first(),
                    run.errors
                ),
            }
        }
        for seq in 40..55 {
            put(&store, seq, &mut run);
        }
    }
    if let Err(e) = store.shutdown() {
        run.errors.push(format!("shutdown: {e}"));
    }
    run
}

/// Reopens without faults and checks I1–I4 for what `run` acknowledged.
fn check_after(root: &Path, scenario: Scenario, run: &Run, context: &str) {
    let clock = Arc::new(ManualClock::new(START_MS + 200 * HOUR_MS));
    let store = open(root, scenario.flush_mode(), &FaultInjector::new(), &clock)
        .unwrap_or_else(|e| panic!("{context}: reopen after {:?}: {e}", run.errors));
    let min = store.min_offset().0;
    assert_eq!(
        min % FILE_SIZE,
        0,
        "{context}: min offset on a file boundary"
    );
    if scenario.keeps_everything() {
        assert_eq!(min, 0, "{context}: nothing deleted");
    }
    let kept: Vec<(u64, u64)> = run
        .acked
        .iter()
        .copied()
        .filter(|&(at, _)| at >= min)
        .collect();
    if scenario == Scenario::AppendsAndCleanup {
        // Cleanup never deletes the active file: the newest acknowledged record stays.
        if let Some(last) = run.acked.last() {
            assert!(last.0 >= min, "{context}: newest acked record deleted");
        }
    }
    common::assert_acked_present(&store, &kept, body, context);
    assert!(
        store.wait_dispatched(std::time::Duration::from_secs(10)),
        "{context}: dispatched"
    );
    for &(at, seq) in &kept {
        let q = (seq % 3) as u32;
        let qmin = store.min_offset_in_queue("sweep", q).0;
        let qmax = store.max_offset_in_queue("sweep", q).0;
        let mut found = false;
        let mut next = qmin;
        while next < qmax && !found {
            let r = store
                .get_message("check", "sweep", q, mqstore::QueueOffset(next), 32, None)
                .unwrap_or_else(|e| panic!("{context}: get: {e}"));
            found = r.messages.iter().any(|m| m.physical_offset().0 == at);
            next = r.next_begin_offset.0.max(next + 1);
        }
        assert!(found, "{context}: acked {at} (seq {seq}) in queue {q}");
        let hits = store.query_message("sweep", &format!("k{seq}"), 4, 0, i64::MAX);
        assert!(
            hits.messages.iter().any(|m| m.physical_offset().0 == at),
            "{context}: key k{seq} finds acked {at}"
        );
    }
    if scenario.keeps_everything() {
        common::assert_queues_consistent(&store, "sweep", context);
    }
    let r = store
        .put(&Message::new("sweep", 0, b"after".to_vec()))
        .unwrap_or_else(|e| panic!("{context}: put after reopen: {e}"));
    assert_eq!(r.status, PutStatus::PutOk, "{context}: writable");
    store
        .shutdown()
        .unwrap_or_else(|e| panic!("{context}: clean shutdown: {e}"));
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// Sweeps N for one scenario; returns how many points were swept and which op failed how often.
fn sweep(scenario: Scenario, forever: bool) -> (u64, BTreeMap<String, u64>) {
    let only = std::env::var("MQSTORE_SWEEP_ONLY").ok();
    let mut hit: BTreeMap<String, u64> = BTreeMap::new();
    let mut n = 1u64;
    loop {
        let errno = [ENOSPC, EIO, EFBIG][(n % 3) as usize];
        let name = format!(
            "{scenario:?}:{}:{n}",
            if forever { "forever" } else { "once" }
        );
        let wanted = only
            .as_deref()
            .is_none_or(|o| o.eq_ignore_ascii_case(&name));
        let dir = scratch();
        let faults = FaultInjector::new();
        faults.fail_nth_call(n, errno, forever);
        let context = format!("{name} errno {errno}");
        let run = run_sequence(dir.path(), scenario, &faults, &context);
        let injected = faults.injected();
        let Some(first) = injected.first() else {
            // The sequence made fewer than N calls: every point has been swept.
            assert!(
                run.errors.is_empty(),
                "{context}: errors without a fault: {:?}",
                run.errors
            );
            return (n - 1, hit);
        };
        *hit.entry(format!("{:?}", first.op)).or_default() += 1;
        if wanted {
            if only.is_some() {
                eprintln!("{context}: failed {first:?}; errors {:?}", run.errors);
            }
            check_after(dir.path(), scenario, &run, &context);
        }
        n += 1;
        assert!(n < 5000, "{context}: the sequence never completes");
    }
}

fn report(label: &str, points: u64, hit: &BTreeMap<String, u64>) {
    eprintln!("fault sweep {label}: {points} points, first failure by op: {hit:?}");
    for op in [
        "Allocate", "Map", "Write", "Flush", "Rename", "Unlink", "DirSync",
    ] {
        assert!(
            hit.get(op).copied().unwrap_or(0) > 0,
            "{label}: no point failed a {op}: the seam misses it"
        );
    }
}

/// Both scenarios, failing once or forever from the Nth call; checks every op class was hit.
fn sweep_all(forever: bool) {
    let (a, mut hit) = sweep(Scenario::Appends, forever);
    let mut points = a;
    for scenario in [Scenario::AppendsAndCleanup, Scenario::AsyncAppends] {
        let (n, more) = sweep(scenario, forever);
        points += n;
        for (k, v) in more {
            *hit.entry(k).or_default() += v;
        }
    }
    report(if forever { "forever" } else { "once" }, points, &hit);
}

#[test]
fn every_io_call_failing_once_leaves_a_consistent_store() {
    sweep_all(false);
}

#[test]
fn every_io_call_failing_forever_leaves_a_consistent_store() {
    sweep_all(true);
}
