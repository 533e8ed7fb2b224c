//! The Prometheus endpoint of the real binary (`metricsExporterType=PROM`): after a known
//! workload the scrape holds the right values; bad HTTP input gets clear errors and
//! bounded treatment; sends keep flowing during a scrape storm; with ACL on a scrape
//! needs a white-listed address or an admin account.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::response;
use broker_lite::Client;
use bytes::Bytes;
use common::RunningBroker;

const PROM: &str = "metricsExporterType=PROM\nmetricsPromExporterPort=0\n";

fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let (status, _, body) = common::http_exchange(addr, request.as_bytes());
    (status, body)
}

use common::http_get as get;

/// The sum of the samples of `name` whose labels include every `k="v"` in `with`.
fn sample(text: &str, name: &str, with: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue; // a longer name
        }
        if !with.iter().all(|l| rest.contains(l)) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

fn message(topic: &str, queue: i32, n: u32) -> Outgoing {
    Outgoing {
        topic: topic.into(),
        queue_id: queue,
        body: Bytes::from(format!("metered-{n:04}-{}", "m".repeat(80))),
        tags: Some("M".into()),
        keys: None,
        uniq_key: None,
        delay_level: None,
    }
}

fn metrics_addr(b: &RunningBroker) -> SocketAddr {
    b.metrics.expect("the broker printed its metrics address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_known_workload_holds_its_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), PROM);
    let m = metrics_addr(&broker);
    let c = Client::connect(broker.addr).await.expect("connect");
    ops::create_topic(&c, "Metered", 2).await.expect("topic");
    for n in 0..50u32 {
        let queue = i32::from(n >= 30); // 30 to queue 0, 20 to queue 1
        let r = ops::send(&c, "mp", &message("Metered", queue, n))
            .await
            .expect("send");
        assert_eq!(r.code, response::SUCCESS);
    }
    // Pull all of queue 0 (30 messages), commit 10 of them, nothing of queue 1.
    let mut pulled = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while pulled < 30 {
        let req = ops::pull_request("mg", "Metered", 0, pulled, 32, "*", None, None);
        let p = ops::pull(&c, req).await.expect("pull");
        pulled += p.messages.len() as u64;
        assert!(Instant::now() < deadline, "queue 0 never held 30 messages");
    }
    ops::commit(&c, "mg", "Metered", 0, 10)
        .await
        .expect("commit");
    ops::commit(&c, "mg", "Metered", 1, 0)
        .await
        .expect("commit");
    let log_end: f64 = ops::runtime_info(&c).await.expect("info")["commitLogMaxOffset"]
        .parse()
        .expect("number");

    // Lag needs queue 1 dispatched: poll until it shows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (status, text) = get(m, "/metrics", "");
        assert_eq!(status, 200, "{text}");
        let lag = sample(
            &text,
            "rocketmq_consumer_lag_messages",
            &["topic=\"Metered\"", "consumer_group=\"mg\""],
        );
        if lag == Some(40.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "lag never reached 40: {lag:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let topic = ["topic=\"Metered\""];
    assert_eq!(
        sample(&text, "rocketmq_messages_in_total", &topic),
        Some(50.0)
    );
    assert_eq!(
        sample(&text, "rocketmq_throughput_in_total", &topic),
        Some(log_end),
        "every CommitLog byte is one of these records"
    );
    assert_eq!(
        sample(
            &text,
            "rocketmq_message_size_bucket",
            &["topic=\"Metered\"", "le=\"1024.0\""]
        ),
        Some(50.0)
    );
    assert_eq!(
        sample(
            &text,
            "rocketmq_messages_out_total",
            &["topic=\"Metered\"", "consumer_group=\"mg\""]
        ),
        Some(30.0)
    );
    let latency = sample(
        &text,
        "rocketmq_consumer_lag_latency",
        &["topic=\"Metered\"", "consumer_group=\"mg\""],
    );
    assert!(latency.is_some_and(|l| l >= 0.0), "{latency:?}");
    assert_eq!(
        sample(
            &text,
            "rocketmq_rpc_latency_count",
            &[
                "request_code=\"send_message_v2\"",
                "response_code=\"success\""
            ]
        ),
        Some(50.0)
    );
    assert_eq!(
        sample(&text, "mqstore_append_latency_microseconds_count", &[]),
        Some(50.0)
    );
    assert!(sample(&text, "rocketmq_storage_size", &[]).is_some_and(|s| s > log_end));
    assert_eq!(
        sample(&text, "mqstore_commitlog_max_offset", &[]),
        Some(log_end)
    );
    assert!(sample(&text, "mqstore_commitlog_files", &[]).is_some_and(|f| f >= 1.0));
    assert!(text.contains("cluster=\"DefaultCluster\"") && text.contains("node_type=\"broker\""));
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_input_is_refused_and_sends_flow_during_a_scrape_storm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), PROM);
    let m = metrics_addr(&broker);
    assert_eq!(get(m, "/nope", "").0, 404);
    assert_eq!(
        http(
            m,
            "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .0,
        405
    );
    let huge = format!("/metrics?{}", "q".repeat(64 * 1024));
    assert_ne!(get(m, &huge, "").0, 200, "a 64 KiB request line was served");
    assert_eq!(
        http(m, "GARBAGE\r\n\r\n").0 / 100,
        4,
        "a malformed request line"
    );
    // A slow client: half a request head, then nothing. The server closes it.
    common::assert_slow_client_dropped(m, b"GET /metrics HTTP/1.1\r\nHost: t\r\n");

    // A storm of scrapers while a producer sends: every send succeeds.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scrapers: Vec<_> = (0..8)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut answers = [0u32; 6];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = get(m, "/metrics", "").0;
                    answers[usize::from(status / 100).min(5)] += 1;
                }
                answers
            })
        })
        .collect();
    let c = Client::connect(broker.addr).await.expect("connect");
    let mut latencies = Vec::new();
    for n in 0..300u32 {
        let t = Instant::now();
        let r = ops::send(&c, "mp", &message("Storm", -1, n))
            .await
            .expect("send");
        latencies.push(t.elapsed());
        assert_eq!(r.code, response::SUCCESS);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ok = 0;
    let mut unavailable = 0;
    for s in scrapers {
        let a = s.join().expect("scraper");
        ok += a[2];
        unavailable += a[5];
    }
    latencies.sort_unstable();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "during the storm: {ok} scrapes answered, {unavailable} told 503; send p50 {:?} p99 {p99:?} max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(ok > 0, "no scrape was answered");
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(5),
        "a send stalled"
    );
    // Still answering.
    assert_eq!(get(m, "/metrics", "").0, 200);
}

#[test]
fn with_acl_a_scrape_needs_a_white_listed_address_or_an_admin_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("plain_acl.yml"),
        "accounts:\n  - accessKey: watcher1\n    secretKey: watch-secret\n    admin: true\n  - accessKey: producer1\n    secretKey: secret-p1\n    defaultTopicPerm: PUB\n",
    )
    .expect("acl");
    let broker = RunningBroker::start(dir.path(), &format!("{PROM}aclEnable=true\n"));
    let m = metrics_addr(&broker);
    let basic = |user: &str| {
        use base64::Engine as _;
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(user)
        )
    };
    assert_eq!(get(m, "/metrics", "").0, 401);
    assert_eq!(get(m, "/metrics", &basic("watcher1:watch-secret")).0, 200);
    assert_eq!(get(m, "/metrics", &basic("watcher1:wrong-secret")).0, 401);
    assert_eq!(
        get(m, "/metrics", &basic("producer1:secret-p1")).0,
        401,
        "not an admin"
    );
    assert_eq!(get(m, "/metrics", &basic("nobody:watch-secret")).0, 401);
}
