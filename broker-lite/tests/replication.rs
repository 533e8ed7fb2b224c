//! Master/slave replication between real `broker-lite` processes over loopback: the
//! slave's CommitLog is the master's byte for byte; SYNC_MASTER acknowledges only what a
//! slave holds (SLAVE_NOT_AVAILABLE / FLUSH_SLAVE_TIMEOUT otherwise); a late slave starts
//! at the master's last file and a restarted one resumes; a diverged slave refuses and is
//! mended with `verify --truncate-at`; a consumer reads from the slave while the master is
//! down; bad bytes on either side of the HA connection close it and write nothing.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::{request, response};
use broker_lite::Client;
use bytes::Bytes;
use common::RunningBroker;

/// 1 MiB CommitLog files so a few thousand messages fill several.
const SMALL_FILES: &str = "mappedFileSizeCommitLog=1048576\n";
const DEADLINE: Duration = Duration::from_secs(60);

fn master_conf(role: &str) -> String {
    format!("{SMALL_FILES}brokerRole={role}\n")
}

/// A slave told its master's HA address.
fn slave_conf(master_ha: SocketAddr, extra: &str) -> String {
    format!("{SMALL_FILES}brokerRole=SLAVE\nbrokerId=1\nhaMasterAddress={master_ha}\n{extra}")
}

/// A slave that learns its master by registering with the master's route service, as
/// with a RocketMQ name server.
fn slave_conf_via_routes(routes: SocketAddr, extra: &str) -> String {
    format!("{SMALL_FILES}brokerRole=SLAVE\nbrokerId=1\nnamesrvAddr={routes}\n{extra}")
}

fn body(seq: u64) -> String {
    format!("rep-{seq}-{}", "y".repeat((seq * 131 % 3000) as usize))
}

fn message(seq: u64) -> Outgoing {
    Outgoing {
        topic: "Rep".into(),
        queue_id: (seq % 4) as i32,
        body: Bytes::from(body(seq)),
        tags: Some("r".into()),
        keys: Some(format!("k{seq}")),
        uniq_key: None,
        delay_level: None,
    }
}

async fn send_range(c: &Client, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        let r = ops::send(c, "p", &message(seq)).await.expect("send");
        assert_eq!(r.code, response::SUCCESS, "seq {seq}");
    }
}

async fn status(addr: SocketAddr) -> BTreeMap<String, String> {
    let c = Client::connect(addr).await.expect("connect for status");
    ops::runtime_info(&c).await.expect("runtime info")
}

async fn max_offset(addr: SocketAddr) -> u64 {
    status(addr).await["commitLogMaxOffset"]
        .parse()
        .expect("number")
}

/// Waits until `pred` holds for the broker's status table.
async fn wait_status(
    addr: SocketAddr,
    what: &str,
    pred: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let until = Instant::now() + DEADLINE;
    loop {
        let s = status(addr).await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < until, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_caught_up(master: SocketAddr, slave: SocketAddr) -> u64 {
    let want = max_offset(master).await;
    wait_status(slave, "slave catches up", |s| {
        s["commitLogMaxOffset"] == want.to_string()
    })
    .await;
    want
}

/// A scratch directory holding a master's (`m`) and a slave's (`s`) broker directories.
fn pair_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let (md, sd) = (dir.path().join("m"), dir.path().join("s"));
    std::fs::create_dir_all(&md).expect("mkdir");
    std::fs::create_dir_all(&sd).expect("mkdir");
    (dir, md, sd)
}

/// Waits until a slave has copied topic `Rep` from its master's metadata.
async fn wait_topic_copied(slave: &Client) {
    let until = Instant::now() + DEADLINE;
    while !ops::topics(slave)
        .await
        .expect("topics")
        .topic_config_table
        .contains_key("Rep")
    {
        assert!(Instant::now() < until, "the slave never copied topic Rep");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Compares the CommitLog bytes of two stopped stores over `[from, to)`.
fn assert_logs_identical(a: &Path, b: &Path, from: u64, to: u64) {
    const FILE: u64 = 1024 * 1024;
    let mut at = from;
    while at < to {
        let start = at - at % FILE;
        let name = format!("{start:020}");
        let x = std::fs::read(a.join("store/commitlog").join(&name)).expect("master file");
        let y = std::fs::read(b.join("store/commitlog").join(&name)).expect("slave file");
        let (lo, hi) = ((at - start) as usize, ((to - start).min(FILE)) as usize);
        assert!(
            x[lo..hi] == y[lo..hi],
            "CommitLog file {name} differs in [{lo}, {hi})"
        );
        at = start + FILE;
    }
}

fn verify_ok(dir: &Path) {
    let out = std::process::Command::new(common::binary())
        .args(["verify", "--quiet", "-c"])
        .arg(dir.join("broker.conf"))
        .arg("--store")
        .arg(dir.join("store"))
        .output()
        .expect("run verify");
    assert!(
        out.status.success(),
        "verify {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every message of `Rep` the broker holds, by sequence number (panics on one stored
/// twice or one nobody sent).
async fn pull_all(addr: SocketAddr) -> HashSet<u64> {
    let c = Client::connect(addr).await.expect("connect");
    let mut seen = HashSet::new();
    for q in 0..4u32 {
        let max = ops::queue_number(&c, request::GET_MAX_OFFSET, "Rep", q, None)
            .await
            .expect("max")
            .unwrap_or(0) as u64;
        let mut at = 0;
        while at < max {
            let p = ops::pull(
                &c,
                ops::pull_request("check", "Rep", q, at, 32, "*", None, None),
            )
            .await
            .expect("pull");
            assert_eq!(p.code, response::SUCCESS, "q{q}@{at}");
            for m in &p.messages {
                let text = String::from_utf8_lossy(&m.body).into_owned();
                let seq: u64 = text
                    .strip_prefix("rep-")
                    .and_then(|t| t.split('-').next())
                    .and_then(|n| n.parse().ok())
                    .expect("a message we sent");
                assert_eq!(text, body(seq), "seq {seq} intact");
                assert!(seen.insert(seq), "seq {seq} twice");
            }
            at = p.next_begin_offset.max(at + 1);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_copies_the_masters_log_byte_for_byte() {
    let (_dir, md, sd) = pair_dirs();
    let master = RunningBroker::start(&md, &master_conf("ASYNC_MASTER"));
    assert!(master.ha.is_some(), "a master serves HA");
    let routes = master.routes.expect("route service");
    let slave = RunningBroker::start(&sd, &slave_conf_via_routes(routes, ""));
    // Connected before the first message, the slave copies the log from 0.
    wait_status(master.addr, "slave connects", |s| s["haConnections"] == "1").await;
    let c = Client::connect(master.addr).await.expect("connect");
    ops::create_topic(&c, "Rep", 4).await.expect("topic");
    send_range(&c, 0..1500).await;
    let end = wait_caught_up(master.addr, slave.addr).await;
    assert!(end > 2 * 1024 * 1024, "several files: {end}");
    let s = status(master.addr).await;
    assert_eq!(s["haConnections"], "1", "{s:?}");
    // The slave rejects sends; its metadata copy brings the topic over.
    let sc = Client::connect(slave.addr).await.expect("connect slave");
    let refused = ops::send(&sc, "p", &message(9))
        .await
        .expect_err("slave refuses");
    assert!(
        matches!(
            refused,
            ops::OpError::Refused {
                code: response::SERVICE_NOT_AVAILABLE,
                ..
            }
        ),
        "{refused}"
    );
    wait_topic_copied(&sc).await;
    // Without slaveReadEnable the slave sends consumers back to the master.
    let p = ops::pull(
        &sc,
        ops::pull_request("g", "Rep", 0, 0, 32, "*", None, None),
    )
    .await
    .expect("pull from the slave");
    assert_eq!(p.code, response::PULL_RETRY_IMMEDIATELY);
    assert!(p.messages.is_empty());
    // The route service lists both brokers of the group: the master (0) and the slave (1)
    // that registered with it.
    let rc = Client::connect(routes).await.expect("connect routes");
    let route = rc
        .invoke(
            broker_lite::RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC)
                .with_ext("topic", "Rep"),
            Duration::from_secs(5),
        )
        .await
        .expect("route");
    let route: serde_json::Value = serde_json::from_slice(&route.body).expect("json");
    let addrs = &route["brokerDatas"][0]["brokerAddrs"];
    assert_eq!(addrs["0"], master.addr.to_string(), "{route}");
    assert_eq!(addrs["1"], slave.addr.to_string(), "{route}");
    drop((c, sc, rc));
    let (ok, _) = slave.terminate();
    assert!(ok, "slave stops cleanly");
    let (ok, _) = master.terminate();
    assert!(ok, "master stops cleanly");
    assert_logs_identical(&md, &sd, 0, end);
    verify_ok(&md);
    verify_ok(&sd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_acknowledges_only_what_a_slave_holds() {
    let (_dir, md, sd) = pair_dirs();
    let master = RunningBroker::start(
        &md,
        &format!("{}slaveTimeout=1500\n", master_conf("SYNC_MASTER")),
    );
    let ha = master.ha.expect("HA address");
    let c = Client::connect(master.addr).await.expect("connect");
    ops::create_topic(&c, "Rep", 4).await.expect("topic");
    // No slave: stored on the master, reported SLAVE_NOT_AVAILABLE, never SEND_OK.
    let r = ops::send(&c, "p", &message(0)).await.expect("send");
    assert_eq!(r.code, response::SLAVE_NOT_AVAILABLE);
    let mut slave = RunningBroker::start(&sd, &slave_conf(ha, ""));
    wait_status(master.addr, "slave connects", |s| s["haConnections"] == "1").await;
    // With the slave following: SEND_OK, and the slave already holds the record.
    for seq in 1..50 {
        let r = ops::send(&c, "p", &message(seq)).await.expect("send");
        assert_eq!(r.code, response::SUCCESS, "seq {seq}");
    }
    let acked: u64 = status(master.addr).await["haPushMaxOffset"]
        .parse()
        .expect("number");
    assert_eq!(
        acked,
        max_offset(master.addr).await,
        "the ack covers every send"
    );
    // A frozen slave: FLUSH_SLAVE_TIMEOUT after slaveTimeout, the message stored.
    let pid = slave.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill")
        .success());
    let before = Instant::now();
    let r = ops::send(&c, "p", &message(50)).await.expect("send");
    let waited = before.elapsed();
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill")
        .success());
    assert_eq!(r.code, response::FLUSH_SLAVE_TIMEOUT);
    assert!(waited >= Duration::from_millis(1400), "waited {waited:?}");
    // Thawed, it catches up and sends are SEND_OK again.
    wait_caught_up(master.addr, slave.addr).await;
    let r = ops::send(&c, "p", &message(51)).await.expect("send");
    assert_eq!(r.code, response::SUCCESS);
    // Gone: SLAVE_NOT_AVAILABLE again.
    slave.child.kill().expect("kill");
    let _ = slave.child.wait();
    wait_status(master.addr, "slave gone", |s| s["haConnections"] == "0").await;
    let r = ops::send(&c, "p", &message(52)).await.expect("send");
    assert_eq!(r.code, response::SLAVE_NOT_AVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_slave_starts_at_the_last_file_and_a_restarted_one_resumes() {
    let (_dir, md, sd) = pair_dirs();
    let master = RunningBroker::start(&md, &master_conf("ASYNC_MASTER"));
    let ha = master.ha.expect("HA address");
    let c = Client::connect(master.addr).await.expect("connect");
    ops::create_topic(&c, "Rep", 4).await.expect("topic");
    send_range(&c, 0..1500).await;
    let end = max_offset(master.addr).await;
    let last_file = end - end % (1024 * 1024);
    assert!(last_file > 0);
    // Empty slave: starts at the master's last file, as RocketMQ's does.
    let slave = RunningBroker::start(&sd, &slave_conf(ha, ""));
    wait_caught_up(master.addr, slave.addr).await;
    assert_eq!(
        status(slave.addr).await["commitLogMinOffset"],
        last_file.to_string()
    );
    // Stopped mid-stream and restarted: resumes from its own end.
    let writer = {
        let addr = master.addr;
        tokio::spawn(async move {
            let c = Client::connect(addr).await.expect("connect");
            send_range(&c, 1500..3000).await;
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, _) = slave.terminate();
    assert!(ok);
    let slave = RunningBroker::start(&sd, &slave_conf(ha, ""));
    writer.await.expect("writer");
    let end = wait_caught_up(master.addr, slave.addr).await;
    let (ok, _) = slave.terminate();
    assert!(ok);
    let (ok, _) = master.terminate();
    assert!(ok);
    assert_logs_identical(&md, &sd, last_file, end);
    verify_ok(&sd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_slave_refuses_and_truncate_at_mends_it() {
    let dir = tempfile::tempdir().expect("dir");
    let (md, sd, saved) = (
        dir.path().join("m"),
        dir.path().join("s"),
        dir.path().join("saved"),
    );
    std::fs::create_dir_all(&md).expect("mkdir");
    std::fs::create_dir_all(&sd).expect("mkdir");
    let conf = master_conf("ASYNC_MASTER");
    // Pin the HA port so the restarted master is found at the same address.
    let pinned = format!("{conf}haListenPort={}\n", common::stable_port());
    let master = RunningBroker::start(&md, &pinned);
    let c = Client::connect(master.addr).await.expect("connect");
    ops::create_topic(&c, "Rep", 4).await.expect("topic");
    send_range(&c, 0..300).await;
    drop(c);
    let (ok, _) = master.terminate();
    assert!(ok);
    // The master's state at X; then it goes on to Y with the slave following.
    common::copy_dir(&md, &saved);
    let master = RunningBroker::start(&md, &pinned);
    let ha = master.ha.expect("HA");
    let x = max_offset(master.addr).await;
    let slave = RunningBroker::start(&sd, &slave_conf(ha, ""));
    let c = Client::connect(master.addr).await.expect("connect");
    send_range(&c, 300..600).await;
    let y = wait_caught_up(master.addr, slave.addr).await;
    assert!(y > x);
    drop(c);
    let (ok, _) = master.terminate();
    assert!(ok);
    // The master comes back having lost everything after X.
    std::fs::remove_dir_all(&md).expect("rm");
    common::copy_dir(&saved, &md);
    let master = RunningBroker::start(&md, &pinned);
    assert_eq!(max_offset(master.addr).await, x);
    let s = wait_status(slave.addr, "slave refuses", |s| {
        s["haLink"].starts_with("stopped")
    })
    .await;
    let link = &s["haLink"];
    assert!(
        link.contains(&x.to_string()) && link.contains(&y.to_string()),
        "{link}"
    );
    assert!(link.contains("--truncate-at"), "{link}");
    assert_eq!(max_offset(slave.addr).await, y, "the slave kept its bytes");
    // The operator's mend: stop, cut at X, start again.
    let (ok, _) = slave.terminate();
    assert!(ok);
    let out = std::process::Command::new(common::binary())
        .args(["verify", "--quiet", "-c"])
        .arg(sd.join("broker.conf"))
        .arg("--store")
        .arg(sd.join("store"))
        .args(["--truncate-at", &x.to_string()])
        .output()
        .expect("truncate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slave = RunningBroker::start(&sd, &slave_conf(ha, ""));
    let c = Client::connect(master.addr).await.expect("connect");
    send_range(&c, 600..700).await;
    let end = wait_caught_up(master.addr, slave.addr).await;
    let (ok, _) = slave.terminate();
    assert!(ok);
    let (ok, _) = master.terminate();
    assert!(ok);
    assert_logs_identical(&md, &sd, 0, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reads_the_slave_while_the_master_is_down() {
    let (_dir, md, sd) = pair_dirs();
    let conf = master_conf("ASYNC_MASTER");
    // The master comes back on the same ports.
    let pinned = format!("{conf}haListenPort={}\n", common::stable_port());
    let (port, routes_port) = (common::stable_port(), common::stable_port());
    let mut master = RunningBroker::start_on(&md, &pinned, port, routes_port);
    let routes = master.routes.expect("routes");
    let slave = RunningBroker::start(
        &sd,
        &slave_conf_via_routes(routes, "slaveReadEnable=true\n"),
    );
    let c = Client::connect(master.addr).await.expect("connect");
    ops::create_topic(&c, "Rep", 4).await.expect("topic");
    send_range(&c, 0..400).await;
    // Offsets committed to the master reach the slave with the metadata copy.
    for q in 0..4 {
        ops::commit(&c, "g", "Rep", q, 50).await.expect("commit");
    }
    wait_caught_up(master.addr, slave.addr).await;
    let sc = Client::connect(slave.addr).await.expect("connect slave");
    let until = Instant::now() + DEADLINE;
    while ops::queue_number(&sc, request::QUERY_CONSUMER_OFFSET, "Rep", 3, Some("g"))
        .await
        .ok()
        .flatten()
        != Some(50)
    {
        assert!(Instant::now() < until, "the slave never copied the offsets");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(c);
    master.child.kill().expect("kill -9");
    let _ = master.child.wait();
    // Everything is readable from the slave; offsets committed there stay.
    let all = pull_all(slave.addr).await;
    assert_eq!(all.len(), 400);
    for q in 0..4 {
        ops::commit(&sc, "g", "Rep", q, 100)
            .await
            .expect("commit on the slave");
    }
    // The master returns on its old ports with its older offsets (50); after metadata
    // copy rounds (every 10 s) the slave still has the newer ones.
    let master = RunningBroker::start_on(&md, &pinned, port, routes.port());
    let c = Client::connect(master.addr).await.expect("connect");
    send_range(&c, 400..410).await;
    wait_caught_up(master.addr, slave.addr).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    for q in 0..4 {
        let got = ops::queue_number(&sc, request::QUERY_CONSUMER_OFFSET, "Rep", q, Some("g"))
            .await
            .expect("query");
        assert_eq!(got, Some(100), "q{q}");
    }
    drop((c, sc));
    let (ok, _) = slave.terminate();
    assert!(ok);
    let (ok, _) = master.terminate();
    assert!(ok);
}

/// The SYNC_MASTER promise under kill -9: every SEND_OK is on the slave, even with the
/// master's store deleted, including when the slave had frozen just before.
async fn kill_master_round(seed: u64) {
    let (_dir, md, sd) = pair_dirs();
    let mut master = RunningBroker::start(
        &md,
        &format!("{}slaveTimeout=1000\n", master_conf("SYNC_MASTER")),
    );
    let routes = master.routes.expect("routes");
    let slave = RunningBroker::start(
        &sd,
        &slave_conf_via_routes(routes, "slaveReadEnable=true\n"),
    );
    let c = Client::connect(master.addr).await.expect("connect");
    ops::create_topic(&c, "Rep", 4).await.expect("topic");
    wait_status(master.addr, "slave connects", |s| s["haConnections"] == "1").await;
    // The slave needs the topic (copied with the master's metadata) to serve it later.
    let sc = Client::connect(slave.addr).await.expect("connect slave");
    wait_topic_copied(&sc).await;
    drop(sc);
    let ok_sends: Arc<Mutex<Vec<u64>>> = Arc::default();
    let senders: Vec<_> = (0..2u64)
        .map(|t| {
            let (ok_sends, addr) = (Arc::clone(&ok_sends), master.addr);
            tokio::spawn(async move {
                let Ok(c) = Client::connect(addr).await else {
                    return;
                };
                for i in 0.. {
                    let seq = t * 1_000_000 + i;
                    match ops::send(&c, "p", &message(seq)).await {
                        Ok(r) if r.code == response::SUCCESS => {
                            ok_sends.lock().expect("lock").push(seq);
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    let kill_after = 50 + (seed * 7919) % 400;
    let until = Instant::now() + DEADLINE;
    while (ok_sends.lock().expect("lock").len() as u64) < kill_after {
        assert!(Instant::now() < until, "seed {seed}: sends stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The slave freezes (its kernel still takes bytes, it acknowledges nothing), then the
    // master dies at a random moment: sends in that window must not have been SEND_OK.
    let pid = slave.child.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    tokio::time::sleep(Duration::from_millis(100 + seed * 7919 % 1500)).await;
    master.child.kill().expect("kill -9");
    let _ = master.child.wait();
    signal("-CONT");
    std::fs::remove_dir_all(md.join("store")).expect("the master's disk is gone");
    for s in senders {
        let _ = s.await;
    }
    let on_slave = pull_all(slave.addr).await;
    let acked = ok_sends.lock().expect("lock").clone();
    for seq in &acked {
        assert!(
            on_slave.contains(seq),
            "seed {seed}: SEND_OK seq {seq} is not on the slave"
        );
    }
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_master_kill_9_loses_no_send_ok() {
    kill_master_round(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: MQSTORE_HA_KILL_ROUNDS rounds (default 10)"]
async fn sync_master_kill_9_loop() {
    let rounds = std::env::var("MQSTORE_HA_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    for seed in 0..rounds {
        kill_master_round(seed + 2).await;
    }
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<(i64, Vec<u8>)> {
    let mut h = [0u8; 12];
    s.read_exact(&mut h)?;
    let off = i64::from_be_bytes(h[..8].try_into().expect("8"));
    let len = i32::from_be_bytes(h[8..].try_into().expect("4"));
    let mut body = vec![0u8; usize::try_from(len).expect("len")];
    s.read_exact(&mut body)?;
    Ok((off, body))
}

/// Reads until the peer closes (Ok) or the deadline passes (Err).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut sink = [0u8; 4096];
    let until = Instant::now() + limit;
    while Instant::now() < until {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_ha_port_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("dir");
    let md = dir.path().join("m");
    std::fs::create_dir_all(&md).expect("mkdir");
    let master = RunningBroker::start(
        &md,
        &format!(
            "{}haHousekeepingInterval=2000\n",
            master_conf("ASYNC_MASTER")
        ),
    );
    let ha = master.ha.expect("HA");
    let c = Client::connect(master.addr).await.expect("connect");
    ops::create_topic(&c, "Rep", 4).await.expect("topic");
    send_range(&c, 0..50).await;
    let end = max_offset(master.addr).await;
    let probes = tokio::task::spawn_blocking(move || {
        // Garbage: a negative "offset".
        let mut s = TcpStream::connect(ha).expect("connect");
        s.write_all(&[0xff; 8]).expect("write");
        assert!(
            closed_within(&mut s, Duration::from_secs(30)),
            "negative offset closes"
        );
        // An offset beyond the end: one heartbeat naming the master's end, then closed.
        let mut s = TcpStream::connect(ha).expect("connect");
        s.write_all(&((end + 1000) as i64).to_be_bytes())
            .expect("write");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let (off, body) = read_frame(&mut s).expect("a frame");
        assert_eq!((off, body.len()), (end as i64, 0));
        assert!(
            closed_within(&mut s, Duration::from_secs(30)),
            "beyond-end closes"
        );
        // Half an offset, then silence: closed by housekeeping (2 s here).
        let mut s = TcpStream::connect(ha).expect("connect");
        s.write_all(&[0, 0, 0]).expect("write");
        assert!(
            closed_within(&mut s, Duration::from_secs(30)),
            "silence closes"
        );
        // A well-behaved request still works: frames from 0 up to the end.
        let mut s = TcpStream::connect(ha).expect("connect");
        s.write_all(&0i64.to_be_bytes()).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut got = 0u64;
        while got < end {
            let (off, body) = read_frame(&mut s).expect("frame");
            assert_eq!(off as u64, got);
            got += body.len() as u64;
        }
    });
    probes.await.expect("probes");
    // The master still takes and serves messages.
    send_range(&c, 50..60).await;
    assert_eq!(pull_all(master.addr).await.len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_refuses_bad_frames_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let sd = dir.path().join("s");
    std::fs::create_dir_all(&sd).expect("mkdir");
    let fake = TcpListener::bind("127.0.0.1:0").expect("bind");
    let fake_addr = fake.local_addr().expect("addr");
    let slave = RunningBroker::start(&sd, &slave_conf(fake_addr, ""));
    let frames = tokio::task::spawn_blocking(move || {
        let mut offsets = Vec::new();
        // 1: a frame of garbage at offset 0.
        let (mut s, _) = fake.accept().expect("slave dials");
        let mut off = [0u8; 8];
        s.read_exact(&mut off).expect("request offset");
        offsets.push(i64::from_be_bytes(off));
        s.write_all(&0i64.to_be_bytes()).expect("w");
        s.write_all(&64i32.to_be_bytes()).expect("w");
        s.write_all(&[0x5a; 64]).expect("w");
        assert!(
            closed_within(&mut s, Duration::from_secs(30)),
            "garbage closes"
        );
        // 2: a header announcing an absurd body.
        let (mut s, _) = fake.accept().expect("slave dials again");
        s.read_exact(&mut off).expect("request offset");
        offsets.push(i64::from_be_bytes(off));
        s.write_all(&0i64.to_be_bytes()).expect("w");
        s.write_all(&i32::MAX.to_be_bytes()).expect("w");
        assert!(
            closed_within(&mut s, Duration::from_secs(30)),
            "oversized frame closes"
        );
        // 3: a frame at an offset that is not a file boundary of an empty log.
        let (mut s, _) = fake.accept().expect("slave dials again");
        s.read_exact(&mut off).expect("request offset");
        offsets.push(i64::from_be_bytes(off));
        s.write_all(&12_345i64.to_be_bytes()).expect("w");
        s.write_all(&16i32.to_be_bytes()).expect("w");
        s.write_all(&[0u8; 16]).expect("w");
        assert!(
            closed_within(&mut s, Duration::from_secs(30)),
            "misplaced frame closes"
        );
        offsets
    });
    let offsets = frames.await.expect("fake master");
    assert_eq!(
        offsets,
        vec![0, 0, 0],
        "the slave asks from its (empty) end each time"
    );
    let s = status(slave.addr).await;
    assert_eq!(s["commitLogMaxOffset"], "0", "nothing written: {s:?}");
    let (ok, _) = slave.terminate();
    assert!(ok);
}
