//! Replication benchmark over loopback, all in one process.
//!
//! `cargo bench -p broker-lite --bench replication [-- <MiB to catch up>]` prints:
//! 1. catch-up: an empty slave copies a master's CommitLog (1 KiB messages) through the HA
//!    protocol, in MB/s, beside a raw loopback TCP copy of the same bytes (32 KiB writes
//!    from the mapping, the receiver copying into memory) measured in the same run;
//! 2. sync sends to an ASYNC_MASTER and to a SYNC_MASTER (a slave attached to both), 1
//!    and 8 producers: msgs/s and the SYNC_MASTER rate as a fraction of ASYNC_MASTER's;
//! 3. replication lag under a steady 10 000 msgs/s: how long after the master has a byte
//!    the slave has it (p50/p99/max, sampled every millisecond).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::ha::master::HaServer;
use broker_lite::ha::slave::HaClient;
use broker_lite::ha::Replication;
use broker_lite::server::{serve, Listeners};
use broker_lite::{Broker, BrokerConfig, Client};
use bytes::Bytes;
use mqstore::{BrokerRole, Message, MessageStore, PhysicalOffset};

const BODY: usize = 1024;
const QUEUES: u32 = 8;
const FILE: u64 = 1 << 30;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn open_store(dir: &std::path::Path, role: BrokerRole) -> Arc<MessageStore> {
    Arc::new(
        MessageStore::builder(dir)
            .configure(|c| {
                c.mapped_file_size_commit_log = FILE;
                c.broker_role = role;
            })
            .open()
            .expect("open"),
    )
}

/// Sends the master's bytes over a plain loopback socket, the receiver copying them into
/// one buffer: the ceiling for the HA stream.
fn raw_copy_rate(master: &MessageStore, end: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut into = vec![0u8; end as usize];
        let mut at = 0;
        while at < into.len() {
            let n = s.read(&mut into[at..]).expect("read");
            assert!(n > 0, "sender closed early");
            at += n;
        }
        into.len()
    });
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut at = 0;
    while at < end {
        let chunk = master
            .read_raw(PhysicalOffset(at), 32 * 1024)
            .expect("bytes");
        s.write_all(chunk.bytes()).expect("write");
        at += chunk.bytes().len() as u64;
    }
    let got = receiver.join().expect("receiver");
    got as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn catch_up(mib: u64) {
    let dir = tempfile::tempdir().expect("dir");
    let master = open_store(&dir.path().join("m"), BrokerRole::AsyncMaster);
    let body = vec![b'x'; BODY];
    let mut i = 0u64;
    while master.max_offset().0 < mib << 20 {
        let m = Message::new("Bench", (i as u32) % QUEUES, body.clone())
            .with_property("UNIQ_KEY", &format!("k{i}"));
        master.put(&m).expect("put");
        i += 1;
    }
    let end = master.max_offset().0;
    let raw = raw_copy_rate(&master, end);

    // The slave's store alone: the same bytes handed straight to append_replicated.
    {
        let direct = open_store(&dir.path().join("direct"), BrokerRole::Slave);
        let started = Instant::now();
        let mut at = 0;
        while at < end {
            let chunk = master
                .read_raw(PhysicalOffset(at), 32 * 1024)
                .expect("bytes");
            direct
                .append_replicated(PhysicalOffset(at), chunk.bytes())
                .expect("append");
            at += chunk.bytes().len() as u64;
        }
        let rate = end as f64 / started.elapsed().as_secs_f64() / 1e6;
        println!("slave store alone (append_replicated, no network): {rate:.0} MB/s");
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ha_addr = listener.local_addr().expect("addr");
    let mut cfg = BrokerConfig::default();
    let master_repl = Arc::new(Replication::new(&cfg));
    let server =
        HaServer::start(listener, Arc::clone(&master), master_repl, None).expect("HA server");
    cfg.store.broker_role = BrokerRole::Slave;
    cfg.ha_master_address = Some(ha_addr.to_string());
    let slave = open_store(&dir.path().join("s"), BrokerRole::Slave);
    let started = Instant::now();
    let client =
        HaClient::start(Arc::clone(&slave), Arc::new(Replication::new(&cfg))).expect("HA client");
    while slave.max_offset().0 < end {
        std::thread::sleep(Duration::from_micros(200));
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "catch-up stalled"
        );
    }
    let rate = end as f64 / started.elapsed().as_secs_f64() / 1e6;
    println!(
        "catch-up of {:.0} MB ({i} x 1 KiB): HA stream {rate:.0} MB/s, raw loopback TCP copy {raw:.0} MB/s ({:.0}% of raw)",
        end as f64 / 1e6,
        100.0 * rate / raw
    );
    client.stop();
    server.stop();
}

/// A broker served in-process; returns it, its address and a stopper.
async fn start_broker(
    dir: &std::path::Path,
    role: BrokerRole,
    master_ha: Option<String>,
) -> (
    Arc<Broker>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut c = BrokerConfig::default();
    dir.clone_into(&mut c.store.store_path_root_dir);
    c.store.mapped_file_size_commit_log = 256 << 20;
    c.store.broker_role = role;
    c.listen_port = 0;
    c.namesrv_listen_port = None;
    c.ha_master_address = master_ha;
    if role == BrokerRole::Slave {
        c.broker_id = 1;
    }
    let listeners = Listeners::bind(&c).await.expect("bind");
    c.listen_port = listeners.broker_addr().expect("addr").port();
    if let Some(ha) = listeners.ha_addr() {
        c.ha_listen_port = Some(ha.port());
    }
    let broker = Broker::open(c).expect("open");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let b = Arc::clone(&broker);
    let task = tokio::spawn(async move {
        serve(b, listeners, async {
            let _ = rx.await;
        })
        .await
        .expect("clean shutdown");
    });
    (broker, tx, task)
}

fn outgoing(p: usize, i: usize) -> Outgoing {
    Outgoing {
        topic: "Bench".into(),
        queue_id: ((p + i) as u32 % QUEUES) as i32,
        body: Bytes::from(vec![b'x'; BODY]),
        tags: Some("T".into()),
        keys: None,
        uniq_key: Some(format!("p{p}-{i}")),
        delay_level: None,
    }
}

async fn send_rate(addr: std::net::SocketAddr, producers: usize, total: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(addr).await.expect("connect");
            for i in 0..total / producers {
                let r = ops::send(&c, "bench", &outgoing(p, i)).await.expect("send");
                assert_eq!(r.code, 0, "SEND_OK");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// A master of `role` with a slave attached.
async fn pair(
    dir: &std::path::Path,
    role: BrokerRole,
) -> (
    Arc<Broker>,
    Arc<Broker>,
    Vec<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
) {
    let (master, mtx, mtask) = start_broker(&dir.join("m"), role, None).await;
    let ha = std::net::SocketAddr::new(
        master.config.broker_ip1,
        master.config.ha_listen_port.expect("HA port"),
    );
    let (slave, stx, stask) =
        start_broker(&dir.join("s"), BrokerRole::Slave, Some(ha.to_string())).await;
    let until = Instant::now() + Duration::from_secs(30);
    while master.ha.slaves().is_empty() {
        assert!(Instant::now() < until, "slave did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = Client::connect(master.config.broker_addr())
        .await
        .expect("connect");
    ops::create_topic(&c, "Bench", QUEUES).await.expect("topic");
    (master, slave, vec![(stx, stask), (mtx, mtask)])
}

async fn stop(
    tasks: Vec<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
) {
    for (tx, task) in tasks {
        let _ = tx.send(());
        task.await.expect("join");
    }
}

async fn sync_vs_async(n: usize) {
    let mut rates = Vec::new();
    for role in [BrokerRole::AsyncMaster, BrokerRole::SyncMaster] {
        let dir = tempfile::tempdir().expect("dir");
        let (master, _slave, tasks) = pair(dir.path(), role).await;
        let addr = master.config.broker_addr();
        send_rate(addr, 1, 1000).await;
        for p in [1usize, 8] {
            let rate = send_rate(addr, p, n).await;
            println!(
                "{} with a slave, {p} producer(s): {rate:.0} msgs/s",
                role.as_str()
            );
            rates.push((role, p, rate));
        }
        stop(tasks).await;
    }
    for p in [1usize, 8] {
        let of = |r: BrokerRole| {
            rates
                .iter()
                .find(|x| x.0 == r && x.1 == p)
                .map_or(0.0, |x| x.2)
        };
        println!(
            "SYNC_MASTER / ASYNC_MASTER, {p} producer(s): {:.0}%",
            100.0 * of(BrokerRole::SyncMaster) / of(BrokerRole::AsyncMaster)
        );
    }
}

async fn steady_lag(rate: u64, seconds: u64) {
    let dir = tempfile::tempdir().expect("dir");
    let (master, slave, tasks) = pair(dir.path(), BrokerRole::AsyncMaster).await;
    let addr = master.config.broker_addr();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (m, s, done) = (
            Arc::clone(&master.store),
            Arc::clone(&slave.store),
            Arc::clone(&done),
        );
        std::thread::spawn(move || {
            let mut pending = std::collections::VecDeque::<(Instant, u64)>::new();
            let mut lags = Vec::new();
            while !done.load(Ordering::Acquire) {
                let now = Instant::now();
                let (me, se) = (m.max_offset().0, s.max_offset().0);
                if pending.back().is_none_or(|&(_, e)| e < me) {
                    pending.push_back((now, me));
                }
                while pending.front().is_some_and(|&(_, e)| e <= se) {
                    let (t, _) = pending.pop_front().expect("front");
                    lags.push(now - t);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            lags.sort_unstable();
            lags
        })
    };
    let producers = 8u64;
    let per = rate / producers;
    let mut handles = Vec::new();
    for p in 0..producers {
        handles.push(tokio::spawn(async move {
            let c = Client::connect(addr).await.expect("connect");
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for i in 0..(per * seconds) as usize {
                tick.tick().await;
                ops::send(&c, "bench", &outgoing(p as usize, i))
                    .await
                    .expect("send");
            }
        }));
    }
    let started = Instant::now();
    for h in handles {
        h.await.expect("join");
    }
    let achieved = (rate * seconds) as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::Release);
    let lags = sampler.join().expect("sampler");
    println!(
        "lag at {achieved:.0} msgs/s for {seconds} s (ASYNC_MASTER, 1 KiB): p50 {:?} p99 {:?} max {:?} ({} samples, 1 ms sampling)",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or_default(),
        lags.len()
    );
    stop(tasks).await;
}

fn main() {
    let mib: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    catch_up(mib);
    if std::env::var_os("REPLICATION_BENCH_CATCH_UP_ONLY").is_some() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        sync_vs_async(20_000).await;
        steady_lag(10_000, 5).await;
    });
}
