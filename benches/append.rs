//! Append throughput and latency, next to the raw limits of this machine.
//!
//! `cargo bench --bench append` measures, in one run:
//! - raw limits: memcpy of an encoded record plus one crc32 of its body into an already
//!   faulted mapping; on this disk, a 4 KiB append + fdatasync, 1 KiB records appended
//!   with pwrite + fdatasync each, and 4 KiB blocks written with O_DIRECT | O_DSYNC (the
//!   fastest single-writer durable path);
//! - puts: 128 B / 1 KiB / 4 KiB bodies; ASYNC_FLUSH with 1 and 4 threads; SYNC_FLUSH with 1
//!   and 16 threads;
//! - per-put latency across many file roll-overs (p50 / p99 / p99.9 / max), with and
//!   without pre-faulted (warmed) files;
//!
//! and prints a summary with every result as a fraction of its raw limit.
//!
//! `MQSTORE_BENCH_SUSTAINED_SECS=60 cargo bench --bench append` instead runs only
//! the sustained mode: one thread appends 1 KiB messages (ASYNC_FLUSH, dispatch on,
//! RocketMQ's 1 GiB files, cleanup deleting what is written so the disk stays bounded) for
//! that long, next to the disk's raw sequential write rate measured in the same run, and
//! prints the rate per 10 s and how much CPU each thread took.
//! `MQSTORE_BENCH_QUICK=1` shortens every measurement (a smoke run).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use mqstore::format::{RecordPlan, StoreFields};
use mqstore::{FlushMode, Message, MessageStore, PutStatus};

const SIZES: [(usize, &str); 3] = [(128, "128B"), (1024, "1KiB"), (4096, "4KiB")];
/// Bench stores use 64 MiB files and are replaced after this many bytes (bounded disk use).
const BENCH_FILE_SIZE: u64 = 64 << 20;
const RESET_AFTER_BYTES: u64 = 256 << 20;

/// ns per message of each measured sample, by benchmark name.
static RESULTS: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());
/// (puts, group-commit flushes) per SYNC_FLUSH benchmark, for the average group size.
static GROUPS: Mutex<BTreeMap<String, (u64, u64)>> = Mutex::new(BTreeMap::new());

fn record(name: &str, elapsed: Duration, msgs: u64) {
    let ns = elapsed.as_nanos() as f64 / msgs.max(1) as f64;
    RESULTS
        .lock()
        .expect("results")
        .entry(name.to_owned())
        .or_default()
        .push(ns);
}

fn median(name: &str) -> Option<f64> {
    let results = RESULTS.lock().expect("results");
    let mut v = results.get(name)?.clone();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn quick() -> bool {
    std::env::var_os("MQSTORE_BENCH_QUICK").is_some()
}

fn message(body_len: usize, queue: u32) -> Message {
    Message::new("BenchTopic", queue, vec![0x5A; body_len])
        .with_property("UNIQ_KEY", "7F0000010001B4AAC2E9114AC4D10000")
        .with_property("TAGS", "TagA")
        .with_property("KEYS", "order-12345")
}

/// A store that is replaced by a fresh one once it has taken `RESET_AFTER_BYTES`.
struct BenchStore {
    mode: FlushMode,
    warm: bool,
    dir: Option<tempfile::TempDir>,
    store: Option<Arc<MessageStore>>,
}

impl BenchStore {
    fn new(mode: FlushMode, warm: bool) -> Self {
        let mut s = BenchStore {
            mode,
            warm,
            dir: None,
            store: None,
        };
        s.reset();
        s
    }

    fn reset(&mut self) {
        if let Some(store) = self.store.take() {
            Arc::into_inner(store)
                .expect("no other holders")
                .shutdown()
                .expect("shutdown");
        }
        let dir = tempfile::tempdir_in(
            std::env::var("MQSTORE_BENCH_DIR").unwrap_or_else(|_| "target".into()),
        )
        .expect("tempdir");
        let (mode, warm) = (self.mode, self.warm);
        let store = MessageStore::builder(dir.path())
            .configure(|c| {
                c.mapped_file_size_commit_log = BENCH_FILE_SIZE;
                c.flush_disk_type = mode;
                c.warm_mapped_file_enable = warm;
            })
            .open()
            .expect("open");
        // Let the allocator finish the first spare file before timing starts.
        std::thread::sleep(Duration::from_millis(100));
        self.dir = Some(dir);
        self.store = Some(Arc::new(store));
    }

    fn get(&mut self) -> Arc<MessageStore> {
        if self
            .store
            .as_ref()
            .is_some_and(|s| s.max_offset().0 > RESET_AFTER_BYTES)
        {
            self.reset();
        }
        Arc::clone(self.store.as_ref().expect("store"))
    }
}

/// Runs `iters` puts spread over `threads` threads; returns the wall time.
fn put_many(store: &Arc<MessageStore>, threads: u64, iters: u64, msg: &Message) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (store, mut msg) = (Arc::clone(store), msg.clone());
            msg.queue_id = t as u32 % 8;
            s.spawn(move || {
                for _ in 0..per_thread {
                    let r = store.put(black_box(&msg)).expect("put");
                    debug_assert_eq!(r.status, PutStatus::PutOk);
                    black_box(r);
                }
            });
        }
    });
    start.elapsed()
}

fn raw_limits(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw");
    let region: usize = 64 << 20;
    let mut map = memmap2::MmapOptions::new()
        .len(region)
        .map_anon()
        .expect("anonymous map");
    map.fill(1); // fault every page in
    for (size, label) in SIZES {
        let msg = message(size, 0);
        let host = "127.0.0.1:10911".parse().expect("addr");
        let plan = RecordPlan::new(&msg, host, 4 << 20, true).expect("plan");
        let mut encoded = vec![0u8; plan.len()];
        plan.write(
            &mut encoded,
            &StoreFields {
                queue_offset: 0,
                physical_offset: 0,
                store_timestamp: 0,
                store_host: host,
            },
        );
        let name = format!("raw/copy_crc/{label}");
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("copy_crc", label), |b| {
            b.iter_custom(|iters| {
                let mut at = 0usize;
                let start = Instant::now();
                for _ in 0..iters {
                    if at + encoded.len() > region {
                        at = 0;
                    }
                    map[at..at + encoded.len()].copy_from_slice(black_box(&encoded));
                    black_box(crc32fast::hash(black_box(&msg.body)));
                    at += encoded.len();
                }
                let e = start.elapsed();
                record(&name, e, iters);
                e
            });
        });
    }
    // One 4 KiB write + fdatasync at the end of a pre-allocated file on this disk.
    let dir = tempfile::tempdir_in("target").expect("tempdir");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("raw"))
        .expect("file");
    // Really allocated and written once, like the store's pre-allocated files.
    let chunk = vec![0u8; 1 << 20];
    for i in 0..256u64 {
        file.write_all_at(&chunk, i << 20).expect("pre-write");
    }
    file.sync_all().expect("sync");
    let page = vec![0x33u8; 4096];
    durable_appends(&mut g, "fdatasync_4KiB", 4096, |at| {
        file.write_all_at(&page, at).expect("write");
        file.sync_data().expect("fdatasync");
    });
    // What a durable 1 KiB append can cost on this disk by each path: records written one
    // after another, so consecutive ones share a page, as in the CommitLog.
    let record_1k = vec![0x44u8; 1024];
    durable_appends(&mut g, "pwrite_fdatasync_1KiB", 1024, |at| {
        file.write_all_at(&record_1k, at).expect("write");
        file.sync_data().expect("fdatasync");
    });
    // O_DIRECT | O_DSYNC: the fastest single-writer path on this disk (the device write
    // without the page cache), one 4 KiB block per record.
    let direct = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(dir.path().join("raw"))
        .expect("O_DIRECT open");
    let mut block = memmap2::MmapOptions::new()
        .len(4096)
        .map_anon()
        .expect("aligned block");
    block.fill(0x55);
    durable_appends(&mut g, "odirect_dsync_4KiB", 4096, |at| {
        direct.write_all_at(&block, at).expect("O_DIRECT write");
    });
    g.finish();
}

/// Benchmarks `append(at)` at consecutive offsets `step` apart in the 256 MiB raw file.
fn durable_appends(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    step: u64,
    mut append: impl FnMut(u64),
) {
    let mut at = 0u64;
    let full_name = format!("raw/{name}");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                if at + step > 256 << 20 {
                    at = 0;
                }
                append(at);
                at += step;
            }
            let e = start.elapsed();
            record(&full_name, e, iters);
            e
        });
    });
}

fn puts(
    c: &mut Criterion,
    mode: FlushMode,
    thread_counts: &[u64],
    sizes: &[(usize, &str)],
    warm: bool,
) {
    let mode_name = match (mode, warm) {
        (FlushMode::Async, true) => "async",
        (FlushMode::Async, false) => "async_cold",
        (FlushMode::Sync, _) => "sync",
    };
    let mut g = c.benchmark_group(format!("put_{mode_name}"));
    if mode == FlushMode::Sync {
        g.sample_size(10);
    }
    let mut bench_store = BenchStore::new(mode, warm);
    for &threads in thread_counts {
        for &(size, label) in sizes {
            let msg = message(size, 0);
            let name = format!("{mode_name}/{threads}t/{label}");
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new(format!("{threads}t"), label), |b| {
                b.iter_custom(|iters| {
                    let store = bench_store.get();
                    let flushes_before = store.stats().group_commit_flushes;
                    let e = put_many(&store, threads, iters, &msg);
                    let puts = iters.div_ceil(threads) * threads;
                    record(&name, e, puts);
                    let flushes = store.stats().group_commit_flushes - flushes_before;
                    let mut groups = GROUPS.lock().expect("groups");
                    let entry = groups.entry(name.clone()).or_default();
                    entry.0 += puts;
                    entry.1 += flushes;
                    e
                });
            });
        }
    }
    g.finish();
}

fn async_puts(c: &mut Criterion) {
    puts(c, FlushMode::Async, &[1, 4], &SIZES, true);
    puts(c, FlushMode::Async, &[1], &SIZES[1..2], false);
}

fn sync_puts(c: &mut Criterion) {
    puts(c, FlushMode::Sync, &[1, 16], &SIZES, false);
}

struct Latency {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    rollovers: usize,
}

/// Per-put latency of single-thread ASYNC 1 KiB appends across many file roll-overs.
fn latency_across_rollovers(warm: bool) -> Latency {
    let dir = tempfile::tempdir_in("target").expect("tempdir");
    let file_size = 16u64 << 20;
    let store = MessageStore::builder(dir.path())
        .configure(|c| {
            c.mapped_file_size_commit_log = file_size;
            c.warm_mapped_file_enable = warm;
        })
        .open()
        .expect("open");
    std::thread::sleep(Duration::from_millis(100));
    let msg = message(1024, 0);
    let n = if quick() { 50_000 } else { 300_000 };
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        black_box(store.put(black_box(&msg)).expect("put"));
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let rollovers = store.commit_log_file_count() - 1;
    store.shutdown().expect("shutdown");
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Latency {
        p50: pct(0.5),
        p99: pct(0.99),
        p999: pct(0.999),
        max: lat[lat.len() - 1],
        rollovers,
    }
}

fn summary() {
    let rate = |name: &str| median(name).map(|ns| 1e9 / ns);
    println!("\n=== append summary (median of criterion samples; msgs/s) ===");
    let fsync = rate("raw/fdatasync_4KiB");
    if let Some(f) = fsync {
        println!(
            "raw fdatasync of a 4 KiB append: {f:>12.0} /s ({:.1} us each)",
            1e6 / f
        );
    }
    let best_durable = ["raw/pwrite_fdatasync_1KiB", "raw/odirect_dsync_4KiB"]
        .into_iter()
        .filter_map(|name| rate(name).map(|r| (name, r)))
        .inspect(|(name, r)| println!("{name:<30} {r:>12.0} /s ({:.1} us each)", 1e6 / r))
        .map(|(_, r)| r)
        .reduce(f64::max);
    if let (Some(best), Some(sync1)) = (best_durable, rate("sync/1t/1KiB")) {
        println!(
            "sync/1t/1KiB = {:.0} % of the best raw durable path ({best:.0} /s)",
            100.0 * sync1 / best
        );
    }
    for (_, label) in SIZES {
        let raw = rate(&format!("raw/copy_crc/{label}"));
        println!("--- {label} body ---");
        if let Some(r) = raw {
            println!("  raw copy+crc                  {r:>12.0} /s");
        }
        for name in [
            format!("async/1t/{label}"),
            format!("async/4t/{label}"),
            format!("async_cold/1t/{label}"),
        ] {
            if let (Some(v), Some(r)) = (rate(&name), raw) {
                println!(
                    "  {name:<28}  {v:>12.0} /s  = {:>5.1} % of raw copy+crc",
                    100.0 * v / r
                );
            }
        }
        let sync1 = rate(&format!("sync/1t/{label}"));
        for name in [format!("sync/1t/{label}"), format!("sync/16t/{label}")] {
            if let (Some(v), Some(f)) = (rate(&name), fsync) {
                let vs1 = sync1.map_or(String::new(), |s| format!(", {:.1}x sync/1t", v / s));
                let (puts, flushes) = GROUPS
                    .lock()
                    .expect("groups")
                    .get(&name)
                    .copied()
                    .unwrap_or_default();
                let per_flush = puts as f64 / flushes.max(1) as f64;
                println!(
                    "  {name:<28}  {v:>12.0} /s  = {:>5.2}x raw fdatasync rate{vs1}, {per_flush:.1} records/flush",
                    v / f
                );
            }
        }
    }
    for warm in [true, false] {
        let l = latency_across_rollovers(warm);
        println!(
            "latency async 1t 1KiB, {} files, {} roll-overs: p50 {} ns, p99 {} ns, p99.9 {} ns ({:.1}x p50), max {} us",
            if warm { "warmed" } else { "cold" },
            l.rollovers,
            l.p50,
            l.p99,
            l.p999,
            l.p999 as f64 / l.p50 as f64,
            l.max / 1000
        );
    }
}

fn config() -> Criterion {
    let (warm, measure) = if quick() { (200, 500) } else { (1000, 3000) };
    Criterion::default()
        .warm_up_time(Duration::from_millis(warm))
        .measurement_time(Duration::from_millis(measure))
        .sample_size(20)
        .configure_from_args()
}

criterion_group! { name = raw; config = config(); targets = raw_limits }
criterion_group! { name = async_group; config = config(); targets = async_puts }
criterion_group! { name = sync_group; config = config(); targets = sync_puts }

/// A thread's name and CPU time (user + system, in clock ticks) from its `stat` file.
fn thread_cpu(stat_path: &std::path::Path) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((stat[open + 1..close].to_owned(), ticks(11) + ticks(12)))
}

/// CPU time per thread name of this process.
fn cpu_by_thread() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some((name, ticks)) = thread_cpu(&task.path().join("stat")) {
            *out.entry(name).or_default() += ticks;
        }
    }
    out
}

/// The disk's sequential write rate through the page cache: 1 MiB `pwrite`s into fresh
/// 1 GiB files (each removed once written), `fdatasync` every 64 MiB. Bytes per second.
fn raw_sequential_write(secs: u64) -> f64 {
    let dir = tempfile::tempdir_in("target").expect("tempdir");
    let chunk = vec![0x5Au8; 1 << 20];
    let started = Instant::now();
    let mut written = 0u64;
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let path = dir.path().join(format!("raw{n}"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("raw file");
        for i in 0..1024u64 {
            file.write_all_at(&chunk, i << 20).expect("write");
            written += 1 << 20;
            if i % 64 == 63 {
                file.sync_data().expect("fdatasync");
            }
            if started.elapsed() >= Duration::from_secs(secs) {
                break;
            }
        }
        drop(file);
        std::fs::remove_file(&path).expect("remove");
        n += 1;
    }
    written as f64 / started.elapsed().as_secs_f64()
}

fn sustained(secs: u64) {
    let raw = raw_sequential_write(secs.min(20));
    let dir = tempfile::tempdir_in("target").expect("tempdir");
    let store = Arc::new(
        MessageStore::builder(dir.path())
            .configure(|c| {
                // Written files expire at once and are deleted within a second or two.
                c.file_reserved_time = Duration::ZERO;
                c.delete_when = (0..24)
                    .map(|h| format!("{h:02}"))
                    .collect::<Vec<_>>()
                    .join(";");
                c.clean_resource_interval = Duration::from_secs(1);
            })
            .open()
            .expect("open"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = cpu_by_thread();
    let started = Instant::now();
    let appender = {
        let store = Arc::clone(&store);
        std::thread::Builder::new()
            .name("appender".into())
            .spawn(move || {
                let mut windows = Vec::new();
                let mut count = 0u64;
                let mut window_start = (Instant::now(), 0u64);
                let mut i = 0u64;
                while started.elapsed() < Duration::from_secs(secs) {
                    let m = message(1024, (i % 8) as u32);
                    let r = store.put(&m).expect("put");
                    assert_eq!(r.status, PutStatus::PutOk, "{r:?}");
                    count += 1;
                    i += 1;
                    if window_start.0.elapsed() >= Duration::from_secs(10) {
                        let rate = (count - window_start.1) as f64
                            / window_start.0.elapsed().as_secs_f64();
                        windows.push(rate);
                        window_start = (Instant::now(), count);
                    }
                }
                let own = thread_cpu(std::path::Path::new("/proc/thread-self/stat"));
                (count, windows, own)
            })
            .expect("spawn appender")
    };
    let (count, windows, appender_cpu) = appender.join().expect("appender");
    let elapsed = started.elapsed();
    let dispatched = store.wait_dispatched(Duration::from_secs(60));
    let behind_after = started.elapsed().saturating_sub(elapsed);
    let mut cpu_after = cpu_by_thread();
    cpu_after.extend(appender_cpu);
    let bytes = store.max_offset().0 - store.min_offset().0;
    let rate = count as f64 / elapsed.as_secs_f64();
    let record = store.max_offset().0 as f64 / count as f64;
    Arc::into_inner(store)
        .expect("no other holders")
        .shutdown()
        .expect("shutdown");
    println!("\n=== sustained ASYNC_FLUSH appends, 1 KiB, 1 thread, dispatch on, {secs} s ===");
    println!(
        "{count} messages in {elapsed:.1?}: {rate:.0} msgs/s ({:.0} MB/s of {record:.0}-byte records); per 10 s: {}",
        rate * record / 1e6,
        windows
            .iter()
            .map(|w| format!("{:.0}k", w / 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "raw sequential write (pwrite 1 MiB, fdatasync per 64 MiB): {:.0} MB/s = {:.0} records/s of that size; the store reached {:.0} % of it",
        raw / 1e6,
        raw / record,
        100.0 * rate * record / raw
    );
    println!(
        "dispatch caught up {behind_after:.1?} after the last put (all dispatched: {dispatched}); {:.1} GB left on disk at the end",
        bytes as f64 / 1e9
    );
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let wall = elapsed.as_secs_f64() + behind_after.as_secs_f64();
    let mut cpu: Vec<(String, f64)> = cpu_after
        .iter()
        .map(|(name, &t)| {
            let used = t.saturating_sub(cpu_before.get(name).copied().unwrap_or(0));
            (name.clone(), used as f64 / ticks_per_s / wall * 100.0)
        })
        .filter(|(_, pct)| *pct >= 0.5)
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "CPU per thread (% of one core over {wall:.0} s): {}",
        cpu.iter()
            .map(|(n, p)| format!("{n} {p:.0} %"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn main() {
    if let Some(secs) = std::env::var("MQSTORE_BENCH_SUSTAINED_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        sustained(secs);
        return;
    }
    raw();
    async_group();
    sync_group();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
