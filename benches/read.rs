//! Read-side benchmarks, each next to a raw limit measured in the same run:
//!
//! - `get_message` of 32 × 1 KiB from an in-memory queue (messages/s) vs a raw copy of the
//!   same 32 records' bytes out of memory;
//! - query by key, p50 / p99, with 1 000 000 keys indexed (target p99 < 20 µs);
//! - dispatch visibility: from a put returning (ASYNC_FLUSH) to the message being visible
//!   to `get_message`, p50 / p99 (target p99 < 1 ms);
//! - recovery after an abnormal exit of a 2 GiB CommitLog whose ConsumeQueues and index
//!   must all be rebuilt, vs raw sequential read + crc32 of the same files (target ≥ 50 %);
//! - a clean reopen (RocketMQ's 1 GiB files, 8 queues, KEYS and TAGS on every message) with
//!   the newest files checked in the background (the default) and before `open` returns
//!   (`check_tail_in_background = false`). `MQSTORE_BENCH_REOPEN_GIB` sets the data size
//!   (default 1).
//!
//! `cargo bench --bench read`; `MQSTORE_BENCH_QUICK=1` shrinks every size (a smoke run).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use mqstore::{FlushMode, Message, MessageStore, QueueOffset};

const FILE_SIZE: u64 = 256 << 20;

fn quick() -> bool {
    std::env::var_os("MQSTORE_BENCH_QUICK").is_some()
}

fn open(root: &Path) -> MessageStore {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.flush_disk_type = FlushMode::Async;
        })
        .open()
        .expect("open")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn get_message(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let count = if quick() { 4_096 } else { 65_536 };
    for _ in 0..count {
        store
            .put(&Message::new("ReadTopic", 0, vec![0x42; 1024]))
            .expect("put");
    }
    assert!(store.wait_dispatched(Duration::from_secs(30)));
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(32));
    let mut at = 0u64;
    group.bench_function("get_message_32x1KiB", |b| {
        b.iter(|| {
            let r = store
                .get_message("g", "ReadTopic", 0, QueueOffset(at), 32, None)
                .expect("get");
            let n: usize = r.messages.iter().map(|m| m.bytes().len()).sum();
            at = if r.next_begin_offset.0 + 32 >= count {
                0
            } else {
                r.next_begin_offset.0
            };
            black_box(n)
        });
    });
    // Raw: copy the same amount of record bytes (32 records, contiguous) out of memory.
    let records: Vec<u8> = store
        .records_from(mqstore::PhysicalOffset(0))
        .take(4096)
        .flat_map(|r| r.expect("record").bytes().to_vec())
        .collect();
    let chunk = records.len() / 4096 * 32;
    let mut out = vec![0u8; chunk];
    let mut pos = 0usize;
    group.bench_function("raw_copy_32x1KiB", |b| {
        b.iter(|| {
            out.copy_from_slice(&records[pos..pos + chunk]);
            pos = if pos + 2 * chunk > records.len() {
                0
            } else {
                pos + chunk
            };
            black_box(out[0])
        });
    });
    group.finish();
    store.shutdown().expect("shutdown");
}

fn query_by_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let keys: u64 = if quick() { 20_000 } else { 1_000_000 };
    let started = Instant::now();
    for i in 0..keys {
        let m = Message::new("KeyTopic", (i % 8) as u32, vec![1; 64])
            .with_property("KEYS", &format!("order-{i}"));
        store.put(&m).expect("put");
    }
    assert!(store.wait_dispatched(Duration::from_secs(120)));
    eprintln!("indexed {keys} keys in {:?}", started.elapsed());
    let mut lat = Vec::new();
    let mut x = 88_172_645_463_325_252u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("order-{}", x % keys);
        let t = Instant::now();
        let hits = store.query_message("KeyTopic", &key, 32, 0, i64::MAX);
        lat.push(t.elapsed());
        assert_eq!(hits.messages.len(), 1);
    }
    lat.sort();
    eprintln!(
        "query_by_key ({keys} keys): p50 {:?} p99 {:?} max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    store.shutdown().expect("shutdown");
}

fn dispatch_visibility() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut lat = Vec::new();
    let rounds = if quick() { 2_000 } else { 50_000 };
    for i in 0..rounds {
        let r = store
            .put(&Message::new("VisTopic", 0, vec![7; 1024]))
            .expect("put");
        let t = Instant::now();
        let q = r.appended.expect("stored").queue_offset;
        loop {
            let got = store
                .get_message("g", "VisTopic", 0, q, 1, None)
                .expect("get");
            if !got.messages.is_empty() {
                break;
            }
            std::hint::spin_loop();
        }
        lat.push(t.elapsed());
        if i % 64 == 0 {
            // Idle gaps too, so the dispatcher is sometimes asleep when the put arrives.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    lat.sort();
    eprintln!(
        "dispatch_visibility ({rounds} puts): p50 {:?} p99 {:?} p99.9 {:?} max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat[lat.len() - 1]
    );
    store.shutdown().expect("shutdown");
}

fn recovery_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes: u64 = if quick() { 64 << 20 } else { 2 << 30 };
    let store = open(dir.path());
    let body = vec![0x33; 1024];
    let mut i = 0u64;
    while store.max_offset().0 < bytes {
        let m = Message::new("RecTopic", (i % 16) as u32, body.clone())
            .with_property("KEYS", &format!("k{i}"));
        store.put(&m).expect("put");
        i += 1;
    }
    store.shutdown().expect("shutdown");
    // An abnormal exit that lost every derived file: everything is rebuilt.
    let root = dir.path();
    std::fs::write(root.join("abort"), b"").expect("abort");
    std::fs::remove_file(root.join("checkpoint.offsets")).expect("rm");
    std::fs::remove_dir_all(root.join("consumequeue")).expect("rm");
    std::fs::remove_dir_all(root.join("index")).expect("rm");
    // Raw: read every CommitLog file and crc32 it.
    let t = Instant::now();
    let mut buf = vec![0u8; 4 << 20];
    let mut crc = 0u32;
    let mut total = 0u64;
    let mut files: Vec<_> = std::fs::read_dir(root.join("commitlog"))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in &files {
        let mut file = std::fs::File::open(f).expect("open");
        loop {
            let n = file.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            crc ^= crc32fast::hash(&buf[..n]);
            total += n as u64;
        }
    }
    let raw = t.elapsed();
    black_box(crc);
    let t = Instant::now();
    let store = open(root);
    let recovery = t.elapsed();
    let report = store.recovery_report().clone();
    assert_eq!(report.records, i);
    store.shutdown().expect("shutdown");
    let data = report.valid_end.0 as f64;
    eprintln!(
        "recovery ({:.2} GiB data, {} records, all CQs + index rebuilt): {:?} = {:.0} MB/s; raw read+crc32 of {:.2} GiB files {:?} = {:.0} MB/s; ratio {:.0} %",
        data / f64::from(1u32 << 30),
        report.records,
        recovery,
        data / recovery.as_secs_f64() / 1e6,
        total as f64 / f64::from(1u32 << 30),
        raw,
        total as f64 / raw.as_secs_f64() / 1e6,
        100.0 * (data / recovery.as_secs_f64()) / (total as f64 / raw.as_secs_f64())
    );
}

fn clean_reopen() {
    let gib: u64 = std::env::var("MQSTORE_BENCH_REOPEN_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (bytes, file_size) = if quick() {
        (64 << 20, 16 << 20)
    } else {
        (gib << 30, 1 << 30)
    };
    let dir = tempfile::tempdir_in("target").expect("tempdir");
    let open = |background: bool| {
        MessageStore::builder(dir.path())
            .configure(|c| {
                c.mapped_file_size_commit_log = file_size;
                c.check_tail_in_background = background;
            })
            .open()
            .expect("open")
    };
    let store = open(true);
    let body = vec![0x33; 1024];
    let mut i = 0u64;
    while store.max_offset().0 < bytes {
        let m = Message::new("ReopenTopic", (i % 8) as u32, body.clone())
            .with_property("KEYS", &format!("k{i}"))
            .with_property("TAGS", "TagA");
        store.put(&m).expect("put");
        i += 1;
    }
    store.shutdown().expect("shutdown");
    for background in [true, false] {
        let mut opened = Vec::new();
        let mut checked = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let store = open(background);
            opened.push(t.elapsed());
            while store.tail_check() == mqstore::TailCheck::Running {
                std::thread::sleep(Duration::from_millis(1));
            }
            checked.push(t.elapsed());
            store.shutdown().expect("shutdown");
        }
        eprintln!(
            "clean reopen of {:.2} GiB ({i} records), tail checked {}: open returned after {:?}, tail checked after {:?}",
            bytes as f64 / f64::from(1u32 << 30),
            if background { "in the background" } else { "before open returns" },
            opened,
            checked
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(if quick() { 10 } else { 30 })
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 5 }))
        .warm_up_time(Duration::from_millis(if quick() { 200 } else { 1000 }));
    targets = get_message
}

fn main() {
    benches();
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs benches in test mode: only the criterion part.
    if args.iter().any(|a| a == "--bench") {
        dispatch_visibility();
        query_by_key();
        recovery_throughput();
        clean_reopen();
    }
    Criterion::default().configure_from_args().final_summary();
}
