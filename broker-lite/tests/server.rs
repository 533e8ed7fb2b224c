//! The real binary on 127.0.0.1: client subcommands, long polling, offsets across a restart,
//! SIGTERM under load.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::{request, response};
use broker_lite::{Client, RemotingCommand};
use bytes::Bytes;
use common::{cli, RunningBroker};

fn msg(topic: &str, queue: i32, body: String, tag: &str) -> Outgoing {
    Outgoing {
        topic: topic.into(),
        queue_id: queue,
        body: Bytes::from(body),
        tags: Some(tag.into()),
        keys: None,
        uniq_key: None,
        delay_level: None,
    }
}

#[test]
fn subcommands_send_consume_by_tag_and_report_offsets() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "");
    let addr = b.addr.to_string();
    let out = cli(&[
        "topic", "create", "--broker", &addr, "--topic", "Orders", "--queues", "2",
    ]);
    assert!(out.contains("created"));
    let sent = cli(&[
        "send", "--broker", &addr, "--topic", "Orders", "--tag", "A", "--keys", "k-<n>", "--count",
        "10",
    ]);
    assert_eq!(sent.lines().filter(|l| l.starts_with("sent ")).count(), 10);
    cli(&[
        "send", "--broker", &addr, "--topic", "Orders", "--tag", "B", "--count", "5",
    ]);
    let got = cli(&[
        "consume",
        "--broker",
        &addr,
        "--topic",
        "Orders",
        "--group",
        "g1",
        "--tag",
        "A",
        "--idle-ms",
        "300",
    ]);
    let lines: Vec<&str> = got.lines().filter(|l| l.starts_with("queue=")).collect();
    assert_eq!(lines.len(), 10, "{got}");
    assert!(lines.iter().all(|l| l.contains("tags=A")), "{got}");
    assert!(got.contains("consumed 10 messages"));
    let offsets = cli(&[
        "offsets", "--broker", &addr, "--group", "g1", "--topic", "Orders",
    ]);
    assert!(offsets.contains("total lag 0"), "{offsets}");
    let again = cli(&[
        "consume",
        "--broker",
        &addr,
        "--topic",
        "Orders",
        "--group",
        "g1",
        "--idle-ms",
        "200",
    ]);
    assert!(
        again.contains("consumed 0 messages"),
        "committed offsets are used: {again}"
    );
    let list = cli(&["topic", "list", "--broker", &addr]);
    assert!(list.contains("Orders\tread=2"), "{list}");
    let (ok, out) = b.terminate();
    assert!(ok && out.contains("stopped cleanly"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_pull_is_answered_on_arrival_without_blocking_its_connection() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "");
    let client = Arc::new(Client::connect(b.addr).await.expect("connect"));
    ops::create_topic(&client, "Held", 1).await.expect("create");

    // A pull on the empty queue with a 20 s suspension is held.
    let started = Instant::now();
    let pull = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            let req = ops::pull_request(
                "g",
                "Held",
                0,
                0,
                32,
                "*",
                Some(Duration::from_secs(20)),
                None,
            );
            ops::pull(&client, req).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pull.is_finished(), "the pull is held");
    // Another request on the same connection is answered meanwhile.
    let t = Instant::now();
    let max = ops::queue_number(&client, request::GET_MAX_OFFSET, "Held", 0, None)
        .await
        .expect("max offset");
    assert_eq!(max, Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "not blocked by the held pull"
    );
    assert!(!pull.is_finished());

    // A message from another connection wakes the pull.
    let producer = Client::connect(b.addr).await.expect("connect");
    let sent_at = Instant::now();
    ops::send(&producer, "p", &msg("Held", 0, "wake up".into(), "A"))
        .await
        .expect("send");
    let pulled = pull.await.expect("join").expect("pull");
    let woke_after = sent_at.elapsed();
    assert_eq!(pulled.code, response::SUCCESS);
    assert_eq!(pulled.messages.len(), 1);
    assert_eq!(pulled.messages[0].body, b"wake up");
    assert!(
        woke_after < Duration::from_secs(2),
        "answered on arrival ({woke_after:?})"
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // A held pull with no arrival is answered PULL_NOT_FOUND at its timeout.
    let t = Instant::now();
    let req = ops::pull_request(
        "g",
        "Held",
        0,
        1,
        32,
        "*",
        Some(Duration::from_millis(700)),
        None,
    );
    let pulled = ops::pull(&client, req).await.expect("pull");
    assert_eq!(pulled.code, response::PULL_NOT_FOUND);
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "{:?}",
        t.elapsed()
    );

    // A held pull filtered by tag ignores other tags and wakes for its own.
    let filtered = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            let req = ops::pull_request(
                "g",
                "Held",
                0,
                1,
                32,
                "B",
                Some(Duration::from_secs(20)),
                None,
            );
            ops::pull(&client, req).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    ops::send(&producer, "p", &msg("Held", 0, "not for you".into(), "A"))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !filtered.is_finished(),
        "a non-matching arrival does not answer the pull"
    );
    ops::send(&producer, "p", &msg("Held", 0, "for you".into(), "B"))
        .await
        .expect("send");
    let pulled = filtered.await.expect("join").expect("pull");
    assert_eq!(pulled.code, response::SUCCESS);
    assert_eq!(pulled.messages.len(), 1, "the broker filtered by tag code");
    assert_eq!(pulled.messages[0].body, b"for you");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_survive_a_restart_and_a_oneway_or_two_way_update() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "flushConsumerOffsetInterval=60000\n");
    {
        let c = Client::connect(b.addr).await.expect("connect");
        ops::create_topic(&c, "Off", 4).await.expect("create");
        for q in 0..4u32 {
            for i in 0..5 {
                ops::send(&c, "p", &msg("Off", q as i32, format!("{q}-{i}"), "A"))
                    .await
                    .expect("send");
            }
        }
        ops::commit(&c, "g", "Off", 0, 3)
            .await
            .expect("two-way commit");
        let oneway = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
            .with_ext("consumerGroup", "g")
            .with_ext("topic", "Off")
            .with_ext("queueId", 1)
            .with_ext("commitOffset", 5)
            .with_ext("bname", "broker-a");
        c.oneway(oneway).await.expect("oneway commit");
        // The pull's commit-offset bit stores an offset too.
        let req = ops::pull_request("g", "Off", 2, 0, 1, "*", None, Some(4));
        ops::pull(&c, req).await.expect("pull");
        // Make sure the oneway was processed before stopping.
        let t = Instant::now();
        while ops::queue_number(&c, request::QUERY_CONSUMER_OFFSET, "Off", 1, Some("g"))
            .await
            .expect("q")
            != Some(5)
        {
            assert!(t.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (ok, _) = b.terminate();
    assert!(ok);
    assert!(dir.path().join("store/config/consumerOffset.json").exists());
    assert!(!dir.path().join("store/abort").exists(), "clean shutdown");
    let b = RunningBroker::start(dir.path(), "");
    let c = Client::connect(b.addr).await.expect("connect");
    let mut got = Vec::new();
    for q in 0..4 {
        got.push(
            ops::queue_number(&c, request::QUERY_CONSUMER_OFFSET, "Off", q, Some("g"))
                .await
                .expect("query"),
        );
    }
    // Queue 3 has no commit; its first message is still there, so a new group starts at 0.
    assert_eq!(got, vec![Some(3), Some(5), Some(4), Some(0)]);
    assert_eq!(
        ops::queue_number(&c, request::GET_MAX_OFFSET, "Off", 3, None)
            .await
            .expect("max"),
        Some(5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "flushDiskType=SYNC_FLUSH\n");
    let c = Client::connect(b.addr).await.expect("connect");
    ops::create_topic(&c, "Load", 4).await.expect("create");
    drop(c);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for p in 0..4 {
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        let addr = b.addr;
        producers.push(tokio::spawn(async move {
            let Ok(c) = Client::connect(addr).await else {
                return 0;
            };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("p{p}-{n}");
                match ops::send(&c, "load", &msg("Load", -1, body.clone(), "A")).await {
                    Ok(_) => {
                        acked.lock().expect("lock").insert(body);
                    }
                    Err(_) => break,
                }
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = acked.lock().expect("lock").len();
    assert!(before > 0, "producers made progress");
    let (ok, out) = tokio::task::spawn_blocking(move || b.terminate())
        .await
        .expect("join");
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = p.await;
    }
    assert!(ok && out.contains("stopped cleanly"), "{out}");
    assert!(
        !dir.path().join("store/abort").exists(),
        "the store was shut down cleanly"
    );

    let acked = acked.lock().expect("lock").clone();
    let b = RunningBroker::start(dir.path(), "");
    let c = Client::connect(b.addr).await.expect("connect");
    let mut stored = HashSet::new();
    for q in 0..4 {
        let mut offset = 0;
        loop {
            let req = ops::pull_request("check", "Load", q, offset, 32, "*", None, None);
            let pulled = ops::pull(&c, req).await.expect("pull");
            if pulled.messages.is_empty() {
                break;
            }
            for m in &pulled.messages {
                stored.insert(String::from_utf8_lossy(&m.body).into_owned());
            }
            offset = pulled.next_begin_offset;
        }
    }
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(acked.len() >= before);
}

/// `ops::send_batch` encodes a batch as RocketMQ's clients do: one SEND_BATCH_MESSAGE,
/// consecutive queue offsets, each message back with its own body and properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_send_stores_consecutive_messages_with_their_properties() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "");
    let c = Client::connect(b.addr).await.expect("connect");
    ops::create_topic(&c, "Batch", 2).await.expect("create");
    ops::send(&c, "p", &msg("Batch", 1, "first".into(), "A"))
        .await
        .expect("send");
    let batch: Vec<Outgoing> = (0..16)
        .map(|i| Outgoing {
            keys: Some(format!("key-{i}")),
            uniq_key: Some(format!("uniq-{i}")),
            ..msg("Batch", 1, format!("body-{i}"), &format!("T{}", i % 2))
        })
        .collect();
    let receipt = ops::send_batch(&c, "p", &batch).await.expect("batch");
    assert_eq!((receipt.queue_id, receipt.queue_offset), (1, 1));
    // Dispatch is asynchronous: pull until all sixteen are visible.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pulled = loop {
        let req = ops::pull_request("g", "Batch", 1, 1, 32, "*", None, None);
        let pulled = ops::pull(&c, req).await.expect("pull");
        if pulled.messages.len() == 16 || Instant::now() > deadline {
            break pulled;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(pulled.messages.len(), 16);
    for (i, m) in pulled.messages.iter().enumerate() {
        assert_eq!(m.queue_offset, 1 + i as i64);
        assert_eq!(m.body, format!("body-{i}").into_bytes());
        assert_eq!(m.property("KEYS"), Some(format!("key-{i}").as_str()));
        assert_eq!(m.property("TAGS"), Some(format!("T{}", i % 2).as_str()));
    }
    let req = ops::pull_request("g2", "Batch", 1, 0, 32, "T1", None, None);
    let odd = ops::pull(&c, req).await.expect("pull by tag");
    assert_eq!(odd.messages.len(), 8, "tag filter over the batch's units");
}
