//! A cluster behind RocketMQ's own name server (the crates.io `rocketmq-namesrv` 1.0
//! binary, `rocketmq-namesrv-rust`): two broker groups, each a master and a slave that
//! learns its master from the name server. The name server lists all four with their ids
//! and addresses, `topic create --cluster` puts a topic on both masters and its route on
//! the name server, a master killed with SIGKILL leaves the route and comes back when
//! restarted, and a name server killed and restarted has every broker again within a
//! registration period.
//!
//! The name server is found on PATH or at `$MQSTORE_NAMESRV_BIN`. Without it the test
//! says so and passes, unless `MQSTORE_REQUIRE_NAMESRV=1` (CI installs it and sets that).

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, ClusterInfo, Outgoing};
use broker_lite::remoting::codes::response;
use broker_lite::Client;
use bytes::Bytes;
use common::RunningBroker;

const CLUSTER: &str = "TestCluster";
/// Short enough for the test, long enough to be a real period.
const PERIOD: Duration = Duration::from_secs(5);

fn namesrv_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MQSTORE_NAMESRV_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("rocketmq-namesrv-rust"))
            .find(|p| p.is_file())
    })
}

/// The name server binary, or `None` (and a note) when the test cannot run here.
fn require_namesrv() -> Option<PathBuf> {
    let found = namesrv_binary();
    if found.is_none() {
        assert!(
            std::env::var_os("MQSTORE_REQUIRE_NAMESRV").is_none(),
            "MQSTORE_REQUIRE_NAMESRV is set but rocketmq-namesrv-rust is not on PATH \
             (cargo install rocketmq-namesrv --version =1.0.0 --locked)"
        );
        eprintln!(
            "note: rocketmq-namesrv-rust not found; the cluster test needs RocketMQ's name server \
             (cargo install rocketmq-namesrv --version =1.0.0 --locked)"
        );
    }
    found
}

/// RocketMQ's name server on `port`, its files under `home`.
struct NameServer {
    child: Child,
    addr: SocketAddr,
}

impl NameServer {
    fn start(binary: &Path, port: u16, home: &Path) -> NameServer {
        std::fs::create_dir_all(home).expect("namesrv home");
        let log =
            std::fs::File::create(home.join(format!("namesrv-{}.log", now_ms()))).expect("log");
        let child = Command::new(binary)
            .args([
                "--listenPort",
                &port.to_string(),
                "--bindAddress",
                "127.0.0.1",
            ])
            .arg("--rocketmqHome")
            .arg(home)
            .current_dir(home)
            .env("HOME", home)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn rocketmq-namesrv-rust");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the name server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        NameServer { child, addr }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// The cluster as the name server lists it: group name → (brokerId → address).
fn groups(info: &ClusterInfo) -> BTreeMap<String, BTreeMap<u64, String>> {
    info.groups_of(CLUSTER)
        .into_iter()
        .map(|g| (g.broker_name.clone(), g.broker_addrs.clone()))
        .collect()
}

/// Polls the name server (a new connection each time: it may be restarting) until
/// `want` holds; the time it took. Panics after `limit`.
async fn wait_cluster(
    namesrv: SocketAddr,
    limit: Duration,
    what: &str,
    want: impl Fn(&BTreeMap<String, BTreeMap<u64, String>>) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut last = BTreeMap::new();
    loop {
        if let Ok(c) = Client::connect(namesrv).await {
            if let Ok(info) = ops::cluster_info(&c).await {
                last = groups(&info);
                if want(&last) {
                    return start.elapsed();
                }
            }
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}; the name server lists {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn members(a: &[(&RunningBroker, u64)]) -> BTreeMap<u64, String> {
    a.iter().map(|(b, id)| (*id, b.addr.to_string())).collect()
}

fn conf(group: &str, id: u64, namesrv: SocketAddr) -> String {
    let role = if id == 0 { "SYNC_MASTER" } else { "SLAVE" };
    format!(
        "brokerClusterName={CLUSTER}\nbrokerName={group}\nbrokerId={id}\nbrokerRole={role}\n\
         namesrvAddr={namesrv}\nregisterNameServerPeriod={}\nslaveReadEnable=true\n",
        PERIOD.as_millis()
    )
}

fn start(dir: &Path, group: &str, id: u64, namesrv: SocketAddr, port: u16) -> RunningBroker {
    std::fs::create_dir_all(dir).expect("dir");
    RunningBroker::start_with(
        dir,
        &conf(group, id, namesrv),
        &["--port", &port.to_string()],
    )
}

async fn max_offset(addr: SocketAddr) -> u64 {
    let c = Client::connect(addr).await.expect("connect");
    ops::runtime_info(&c).await.expect("runtime info")["commitLogMaxOffset"]
        .parse()
        .expect("offset")
}

/// Sends `n` messages to `master` once a slave is connected to it, and waits until
/// `slave` holds all of them.
async fn send_and_replicate(master: SocketAddr, slave: SocketAddr, topic: &str, n: u32) {
    let c = Client::connect(master).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = ops::runtime_info(&c).await.expect("runtime info");
        if info.get("haConnections").map(String::as_str) == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slave connected to {master}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..n {
        let m = Outgoing {
            topic: topic.into(),
            queue_id: -1,
            body: Bytes::from(format!("{topic} {i}")),
            ..Outgoing::default()
        };
        let r = ops::send(&c, "p", &m).await.expect("send");
        assert_eq!(r.code, response::SUCCESS, "a SYNC_MASTER with its slave");
    }
    let end = max_offset(master).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while max_offset(slave).await != end {
        assert!(Instant::now() < deadline, "the slave did not reach {end}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_broker_groups_behind_rocketmqs_name_server() {
    let Some(binary) = require_namesrv() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let mut namesrv =
        NameServer::start(&binary, common::stable_port(), &root.path().join("namesrv"));
    let ns = namesrv.addr;

    // Masters first, then slaves that know only the name server.
    // Master a is restarted on its ports below: they must still be free then.
    let a0 = start(
        &root.path().join("a0"),
        "broker-a",
        0,
        ns,
        common::stable_port(),
    );
    let b0 = start(&root.path().join("b0"), "broker-b", 0, ns, 0);
    let a1 = start(&root.path().join("a1"), "broker-a", 1, ns, 0);
    let b1 = start(&root.path().join("b1"), "broker-b", 1, ns, 0);
    let want_a = members(&[(&a0, 0), (&a1, 1)]);
    let want_b = members(&[(&b0, 0), (&b1, 1)]);
    let all = |g: &BTreeMap<String, BTreeMap<u64, String>>| {
        g.get("broker-a") == Some(&want_a) && g.get("broker-b") == Some(&want_b)
    };
    wait_cluster(ns, Duration::from_secs(30), "four brokers registered", all).await;

    // mqadmin's updateTopic -c: on every master, then in the name server's route.
    let out = common::cli(&[
        "topic",
        "create",
        "--topic",
        "ClusterTopic",
        "--queues",
        "4",
        "--cluster",
        CLUSTER,
        "--namesrv",
        &ns.to_string(),
    ]);
    assert!(out.contains("lists 2 broker groups"), "{out}");
    let c = Client::connect(ns).await.expect("connect");
    let route = ops::topic_route(&c, "ClusterTopic").await.expect("route");
    let mut queues: Vec<(String, u32, u32)> = route
        .queue_datas
        .iter()
        .map(|q| (q.broker_name.clone(), q.read_queue_nums, q.write_queue_nums))
        .collect();
    queues.sort();
    assert_eq!(
        queues,
        vec![("broker-a".into(), 4, 4), ("broker-b".into(), 4, 4)]
    );
    let mut brokers: Vec<(String, BTreeMap<u64, String>)> = route
        .broker_datas
        .iter()
        .map(|g| (g.broker_name.clone(), g.broker_addrs.clone()))
        .collect();
    brokers.sort();
    assert_eq!(
        brokers,
        vec![
            ("broker-a".into(), want_a.clone()),
            ("broker-b".into(), want_b.clone())
        ]
    );
    drop(c);

    // Each slave found its master through the name server: SYNC_MASTER sends succeed,
    // and the slaves hold every byte.
    send_and_replicate(a0.addr, a1.addr, "ClusterTopic", 20).await;
    send_and_replicate(b0.addr, b1.addr, "ClusterTopic", 20).await;

    // SIGKILL of master a: its connection to the name server closes, the route keeps
    // only a's slave.
    let a0_port = a0.addr.port();
    let mut a0 = a0;
    a0.child.kill().expect("kill -9");
    let _ = a0.child.wait();
    let gone = wait_cluster(ns, Duration::from_secs(150), "master a dropped", |g| {
        g.get("broker-a")
            .map(|m| m.keys().copied().collect::<Vec<_>>())
            == Some(vec![1])
            && g.get("broker-b") == Some(&want_b)
    })
    .await;
    eprintln!("master a left the name server's route {gone:?} after SIGKILL");
    drop(a0);

    // Restarted on its port (its HA port is now listenPort + 1): registered again, and
    // its slave follows it there (the name server's answer names the new HA address).
    let a0 = start(&root.path().join("a0"), "broker-a", 0, ns, a0_port);
    wait_cluster(ns, Duration::from_secs(30), "master a back", all).await;
    send_and_replicate(a0.addr, a1.addr, "ClusterTopic", 20).await;

    // The name server killed and restarted: every broker registers again within a
    // period; the brokers serve throughout.
    namesrv.kill9();
    send_and_replicate(b0.addr, b1.addr, "ClusterTopic", 5).await;
    let namesrv = NameServer::start(&binary, ns.port(), &root.path().join("namesrv"));
    let back = wait_cluster(
        ns,
        PERIOD * 4 + Duration::from_secs(20),
        "re-registration",
        all,
    )
    .await;
    eprintln!(
        "all four brokers registered {back:?} after the name server restarted (period {PERIOD:?})"
    );
    assert!(
        back <= PERIOD + Duration::from_secs(10),
        "re-registration took {back:?}, more than one period ({PERIOD:?}) and slack"
    );
    let c = Client::connect(namesrv.addr).await.expect("connect");
    let route = ops::topic_route(&c, "ClusterTopic")
        .await
        .expect("route after restart");
    assert_eq!(route.queue_datas.len(), 2, "both groups' queues are back");

    for b in [b1, a1, b0, a0] {
        let (clean, _) = b.terminate();
        assert!(clean, "brokers stop cleanly");
    }
    // Unregistered at shutdown: the name server lists nobody.
    wait_cluster(ns, Duration::from_secs(30), "all unregistered", |g| {
        g.values().all(BTreeMap::is_empty)
    })
    .await;
}
