//! Append latency while cleanup deletes 1 GiB CommitLog files, against the same appends
//! without cleanup (issue goal: p99.9 at most 2x). Also prints what deleting a file costs
//! (rename + directory sync, unmap, unlink) on the cleaner's thread.
//!
//! `cargo bench --bench cleanup` (needs ~7 GiB free under `target/`; `MQ_BENCH_DIR=/path`
//! puts the store elsewhere). A latency distribution, not a throughput, so this is a plain
//! `harness = false` program rather than a criterion group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqstore::{ManualClock, ManualDiskUsage, Message, MessageStore, PutStatus};

const H: i64 = 3_600_000;
/// 2026-01-01T03:00:00Z: +73 h is 04:00 UTC, RocketMQ's default delete hour.
const T0: i64 = 1_767_236_400_000;
const OLD_FILES: usize = 4;
const WINDOW: Duration = Duration::from_secs(3);

/// Per-put latencies (ns) with the time each put started, relative to `origin`.
struct Samples {
    at: Vec<Duration>,
    ns: Vec<u64>,
}

fn append_for(
    store: &MessageStore,
    body: &[u8],
    until: impl Fn() -> bool,
    origin: Instant,
) -> Samples {
    let mut s = Samples {
        at: Vec::with_capacity(4_000_000),
        ns: Vec::with_capacity(4_000_000),
    };
    let mut q = 0u32;
    while !until() {
        let msg = Message::new("BenchCleanup", q % 8, body.to_vec());
        q = q.wrapping_add(1);
        let started = Instant::now();
        let put = store.put(&msg).expect("put");
        let took = started.elapsed();
        assert_eq!(put.status, PutStatus::PutOk);
        s.at.push(started - origin);
        s.ns.push(took.as_nanos() as u64);
    }
    s
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(label: &str, mut ns: Vec<u64>) -> u64 {
    ns.sort_unstable();
    let p999 = percentile(&ns, 0.999);
    println!(
        "{label:<34} {:>9} puts  p50 {:>6.1} us  p99 {:>7.1} us  p99.9 {:>8.1} us  max {:>9.1} us",
        ns.len(),
        percentile(&ns, 0.5) as f64 / 1e3,
        percentile(&ns, 0.99) as f64 / 1e3,
        p999 as f64 / 1e3,
        ns.last().copied().unwrap_or(0) as f64 / 1e3,
    );
    p999
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not use.
    let base = std::env::var_os("MQ_BENCH_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let disk = Arc::new(ManualDiskUsage::new(20));
    let store = MessageStore::builder(dir.path())
        .configure(|c| {
            c.delete_file_batch_max = 2;
            c.clean_resource_interval = Duration::from_secs(3600);
            // Small index files: this measures CommitLog deletion.
            c.max_hash_slot_num = 100_000;
            c.max_index_num = 400_000;
        })
        .clock(Arc::clone(&clock) as _)
        .disk_usage(Arc::clone(&disk) as _)
        .open()
        .expect("open");
    let file_size = store.config().mapped_file_size_commit_log;

    let started = Instant::now();
    let big = vec![b'o'; 16 * 1024];
    let mut n = 0u32;
    while store.commit_log_file_count() <= OLD_FILES {
        let put = store
            .put(&Message::new("BenchCleanupOld", n % 8, big.clone()))
            .expect("prefill");
        assert_eq!(put.status, PutStatus::PutOk);
        n += 1;
    }
    store.checkpoint().expect("checkpoint");
    println!(
        "prefilled {OLD_FILES} x {} MiB CommitLog files in {:.1?}",
        file_size >> 20,
        started.elapsed()
    );
    // Three days later, at 04:00: the old files have expired.
    clock.set(T0 + 73 * H);
    let body = vec![b'n'; 1024];

    let mut baseline = Vec::new();
    let mut during = Vec::new();
    for round in 0..OLD_FILES / 2 {
        let origin = Instant::now();
        let s = append_for(&store, &body, || origin.elapsed() >= WINDOW, origin);
        baseline.extend_from_slice(&s.ns);
        summary(&format!("round {round}: no cleanup"), s.ns);

        // Same appender; a pass deletes two 1 GiB files meanwhile (100 ms pause between).
        let done = Arc::new(AtomicBool::new(false));
        let origin = Instant::now();
        let cleaner = {
            let done = &done;
            let store = &store;
            std::thread::scope(|scope| {
                let h = scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    let from = origin.elapsed();
                    let r = store.run_cleanup().expect("cleanup");
                    let to = origin.elapsed();
                    std::thread::sleep(Duration::from_millis(300));
                    done.store(true, Ordering::Release);
                    (from, to, r)
                });
                let s = append_for(store, &body, || done.load(Ordering::Acquire), origin);
                let (from, to, r) = h.join().expect("cleaner");
                (s, from, to, r)
            })
        };
        let (s, from, to, report) = cleaner;
        let log_files = report
            .removed
            .iter()
            .filter(|f| f.bytes == file_size)
            .count();
        assert_eq!(log_files, 2, "{:?}", report.removed);
        let inside: Vec<u64> =
            s.at.iter()
                .zip(&s.ns)
                .filter(|(at, _)| **at >= from && **at <= to)
                .map(|(_, ns)| *ns)
                .collect();
        during.extend_from_slice(&inside);
        summary(&format!("round {round}: while deleting"), inside);
        println!(
            "  pass deleted {} files ({} x 1 GiB) in {:.1?}: unmap {:.2?}, unlink {:.2?} (cleaner thread)",
            report.removed.len(),
            log_files,
            to.saturating_sub(from),
            report.unmap_time,
            report.unlink_time
        );
    }
    let base = summary("all rounds: no cleanup", baseline);
    let del = summary("all rounds: while deleting", during);
    println!(
        "p99.9 while deleting / without: {:.2}x (goal <= 2x)",
        del as f64 / base.max(1) as f64
    );
    store.shutdown().expect("shutdown");
}
