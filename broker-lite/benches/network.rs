//! Network benchmark: 1 KiB messages over loopback against an in-process broker-lite.
//!
//! `cargo bench -p broker-lite --bench network [-- <messages>]` prints, for sync sends with 1
//! and 8 producers (one request in flight per producer) and for batches of 16 from one
//! producer, messages/s and p50/p99/p99.9 send latency, then the rate of consuming
//! everything back (one pull of 32 in flight per
//! queue), each also as a ratio to the in-process store rate measured in the same run.
//! Then the same rows against a broker with `aclEnable=true`, every request signed,
//! alternating with ACL off for three rounds, and each row's median ACL-on rate as a
//! percentage of its median ACL-off rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_lite::acl::Credentials;
use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::response;
use broker_lite::server::{serve, Listeners};
use broker_lite::{Broker, BrokerConfig, Client};
use bytes::Bytes;
use mqstore::{Message, MessageStore};

const QUEUES: u32 = 8;
const BODY: usize = 1024;
/// Messages per batch send.
const BATCH: usize = 16;

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut c = BrokerConfig::default();
    dir.clone_into(&mut c.store.store_path_root_dir);
    c.store.mapped_file_size_commit_log = 256 << 20;
    c.listen_port = 0;
    c.namesrv_listen_port = None;
    c
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Puts straight into a store: the in-process reference rate.
fn in_process_rate(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("dir");
    let store = MessageStore::builder(dir.path())
        .configure(|c| c.mapped_file_size_commit_log = 256 << 20)
        .open()
        .expect("open");
    let body = vec![b'x'; BODY];
    let started = Instant::now();
    for i in 0..n {
        let m = Message::new("Bench", (i as u32) % QUEUES, body.clone())
            .with_property("TAGS", "T")
            .with_property("UNIQ_KEY", &format!("k{i}"));
        store.put(&m).expect("put");
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    store.shutdown().expect("shutdown");
    rate
}

/// A connection signing with `creds` when given.
async fn connect(addr: std::net::SocketAddr, creds: Option<&Credentials>) -> Client {
    let mut c = Client::connect(addr).await.expect("connect");
    c.set_credentials(creds.cloned());
    c
}

async fn producers(
    addr: std::net::SocketAddr,
    creds: Option<&Credentials>,
    producers: usize,
    per_producer: usize,
) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let creds = creds.cloned();
        tasks.push(tokio::spawn(async move {
            let c = connect(addr, creds.as_ref()).await;
            let body = Bytes::from(vec![b'x'; BODY]);
            let mut lat = Vec::with_capacity(per_producer);
            for i in 0..per_producer {
                let m = Outgoing {
                    topic: "Bench".into(),
                    queue_id: ((p + i) as u32 % QUEUES) as i32,
                    body: body.clone(),
                    tags: Some("T".into()),
                    keys: None,
                    uniq_key: Some(format!("p{p}-{i}")),
                    delay_level: None,
                };
                let t = Instant::now();
                ops::send(&c, "bench", &m).await.expect("send");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    (rate, all)
}

/// One producer sending batches of `BATCH` messages (one queue per batch, in turn).
async fn batch_producer(
    addr: std::net::SocketAddr,
    creds: Option<&Credentials>,
    batches: usize,
) -> (f64, Vec<Duration>) {
    let c = connect(addr, creds).await;
    let body = Bytes::from(vec![b'x'; BODY]);
    let mut lat = Vec::with_capacity(batches);
    let started = Instant::now();
    for b in 0..batches {
        let msgs: Vec<Outgoing> = (0..BATCH)
            .map(|i| Outgoing {
                topic: "Bench".into(),
                queue_id: (b as u32 % QUEUES) as i32,
                body: body.clone(),
                tags: Some("T".into()),
                keys: None,
                uniq_key: Some(format!("b{b}-{i}")),
                delay_level: None,
            })
            .collect();
        let t = Instant::now();
        ops::send_batch(&c, "bench", &msgs).await.expect("batch");
        lat.push(t.elapsed());
    }
    let rate = (batches * BATCH) as f64 / started.elapsed().as_secs_f64();
    lat.sort_unstable();
    (rate, lat)
}

async fn consume_all(
    addr: std::net::SocketAddr,
    creds: Option<&Credentials>,
    group: &str,
) -> (f64, u64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for q in 0..QUEUES {
        let group = group.to_owned();
        let creds = creds.cloned();
        tasks.push(tokio::spawn(async move {
            let c = connect(addr, creds.as_ref()).await;
            let mut offset = 0;
            let mut n = 0u64;
            loop {
                let req = ops::pull_request(&group, "Bench", q, offset, 32, "*", None, None);
                let pulled = ops::pull(&c, req).await.expect("pull");
                if pulled.code != response::SUCCESS {
                    break;
                }
                n += pulled.messages.len() as u64;
                offset = pulled.next_begin_offset;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("join");
    }
    (total as f64 / started.elapsed().as_secs_f64(), total)
}

/// Rounds of ACL off and on.
const ACL_ROUNDS: usize = 3;

/// The account the ACL-on run signs with.
const ACL_FILE: &str = "accounts:\n  - accessKey: benchmark\n    secretKey: bench-secret\n    defaultTopicPerm: DENY\n    defaultGroupPerm: SUB\n    topicPerms:\n      - Bench=PUB|SUB\n  - accessKey: benchadmin\n    secretKey: bench-secret\n    admin: true\n";

/// One broker, every row; `acl`: turn ACL on and sign as this account. Returns each row's
/// name and rate.
async fn rows(
    dir: &std::path::Path,
    n: usize,
    store_rate: f64,
    acl: Option<&Credentials>,
) -> Vec<(String, f64)> {
    let mut cfg = config(dir);
    if acl.is_some() {
        let file = dir.join("plain_acl.yml");
        std::fs::write(&file, ACL_FILE).expect("acl file");
        cfg.acl_enable = true;
        cfg.acl_file = Some(file);
    }
    let listeners = Listeners::bind(&cfg).await.expect("bind");
    cfg.listen_port = listeners.broker_addr().expect("addr").port();
    let broker = Broker::open(cfg).expect("open");
    let addr = broker.config.broker_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(Arc::clone(&broker), listeners, async {
        let _ = stop_rx.await;
    }));
    let admin = Credentials {
        access_key: "benchadmin".into(),
        secret_key: "bench-secret".into(),
    };
    let c = connect(addr, acl.map(|_| &admin)).await;
    ops::create_topic(&c, "Bench", QUEUES).await.expect("topic");
    // Warm-up.
    producers(addr, acl, 1, 1000).await;
    let label = if acl.is_some() { " [ACL on]" } else { "" };
    let mut out = Vec::new();
    let mut report = |what: String, rate: f64, lat: &[Duration]| {
        println!(
            "{what}{label}: {rate:.0} msgs/s ({:.1}% of in-process), latency p50 {:?} p99 {:?} p99.9 {:?}",
            100.0 * rate / store_rate,
            percentile(lat, 0.50),
            percentile(lat, 0.99),
            percentile(lat, 0.999),
        );
        out.push((what, rate));
    };
    for p in [1usize, 8] {
        let (rate, lat) = producers(addr, acl, p, n / p).await;
        report(format!("sync send, {p} producer(s)"), rate, &lat);
    }
    let (rate, lat) = batch_producer(addr, acl, n / BATCH).await;
    report(
        format!("batch send ({BATCH} x 1 KiB, latency per batch), 1 producer"),
        rate,
        &lat,
    );
    assert!(broker.store.wait_dispatched(Duration::from_secs(30)));
    let (rate, total) = consume_all(addr, acl, "bench_consumer").await;
    println!(
        "consume all ({total} msgs, {QUEUES} queues, 32 per pull){label}: {rate:.0} msgs/s ({:.1}% of in-process put rate)",
        100.0 * rate / store_rate
    );
    out.push(("consume all".into(), rate));
    let _ = stop_tx.send(());
    server.await.expect("join").expect("clean shutdown");
    out
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store_rate = in_process_rate(n);
    println!("in-process store, 1 thread, ASYNC_FLUSH: {store_rate:.0} msgs/s ({n} x 1 KiB)");
    let account = Credentials {
        access_key: "benchmark".into(),
        secret_key: "bench-secret".into(),
    };
    runtime.block_on(async {
        // Off and on alternate, three rounds each, and each row's median is compared:
        // one round of each differs by up to ±25 % from run order alone on this VM.
        let mut off: Vec<Vec<(String, f64)>> = Vec::new();
        let mut on: Vec<Vec<(String, f64)>> = Vec::new();
        for _ in 0..ACL_ROUNDS {
            let dir = tempfile::tempdir().expect("dir");
            off.push(rows(dir.path(), n, store_rate, None).await);
            drop(dir);
            let dir = tempfile::tempdir().expect("dir");
            on.push(rows(dir.path(), n, store_rate, Some(&account)).await);
        }
        for (i, (what, _)) in off[0].iter().enumerate() {
            let median = |runs: &[Vec<(String, f64)>]| {
                let mut v: Vec<f64> = runs.iter().map(|r| r[i].1).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (off, on) = (median(&off), median(&on));
            println!(
                "ACL on vs off, {what} (median of {ACL_ROUNDS}): {on:.0} vs {off:.0} msgs/s = {:.1}%",
                100.0 * on / off
            );
        }
    });
}
