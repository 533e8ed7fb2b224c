//! Delivery semantics on the real binary (issue: retry and DLQ, delay levels,
//! transactions, ordered consumption, lookup, broadcast). Short custom delay levels keep
//! it quick.

mod common;

use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::client::ReceivedMessage;
use broker_lite::remoting::codes::{request, response};
use broker_lite::{Client, RemotingCommand};
use bytes::Bytes;
use common::{cli, RunningBroker};

const TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A SEND_MESSAGE_V2 with raw properties, sysflag and reconsume times.
fn send_raw(topic: &str, queue: i32, body: &str, props: &str, sys_flag: i32) -> RemotingCommand {
    RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_ext("a", "pg")
        .with_ext("b", topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", queue)
        .with_ext("f", sys_flag)
        .with_ext("g", broker_lite::state::metadata::now_millis())
        .with_ext("h", 0)
        .with_ext("i", props)
        .with_ext("j", 0)
        .with_ext("k", false)
        .with_ext("m", false)
        .with_body(Bytes::from(body.to_owned()))
}

fn props(pairs: &[(&str, &str)]) -> String {
    mqstore::format::encode_properties(pairs.iter().copied())
}

async fn max_offset(c: &Client, topic: &str, queue: u32) -> u64 {
    ops::queue_number(c, request::GET_MAX_OFFSET, topic, queue, None)
        .await
        .expect("max offset")
        .unwrap_or(0) as u64
}

/// Every message of a queue from `from` (no waiting).
async fn pull_all(
    c: &Client,
    group: &str,
    topic: &str,
    queue: u32,
    from: u64,
) -> Vec<ReceivedMessage> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let req = ops::pull_request(group, topic, queue, next, 32, "*", None, None);
        let p = ops::pull(c, req).await.expect("pull");
        if p.messages.is_empty() {
            return out;
        }
        next = p.next_begin_offset;
        out.extend(p.messages);
    }
}

/// Waits until the queue holds a message at `offset`; returns it.
async fn wait_for(
    c: &Client,
    topic: &str,
    queue: u32,
    offset: u64,
    within: Duration,
) -> ReceivedMessage {
    let deadline = Instant::now() + within;
    loop {
        let req = ops::pull_request("waiter", topic, queue, offset, 1, "*", None, None);
        if let Ok(p) = ops::pull(c, req).await {
            if let Some(m) = p.messages.into_iter().next() {
                return m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived in {topic}:{queue}@{offset} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn delayed_messages_arrive_on_time_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let conf = "messageDelayLevel=1s 2s 3s\n";
    let b = RunningBroker::start(dir.path(), conf);
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(b.addr).await.expect("connect");
        ops::create_topic(&c, "Delayed", 1).await.expect("topic");
        let m = Outgoing {
            topic: "Delayed".into(),
            queue_id: 0,
            body: Bytes::from_static(b"later"),
            tags: Some("T1".into()),
            keys: Some("delay-key".into()),
            delay_level: Some(1),
            ..Outgoing::default()
        };
        let receipt = ops::send(&c, "pg", &m).await.expect("send");
        assert_eq!(
            max_offset(&c, "Delayed", 0).await,
            0,
            "not visible before it is due"
        );
        let got = wait_for(&c, "Delayed", 0, 0, Duration::from_secs(5)).await;
        // Due time = the schedule record's store time + 1 s; it is found by its key.
        let waiting = ops::query_by_key(&c, "SCHEDULE_TOPIC_XXXX", "delay-key", 32, 0, i64::MAX)
            .await
            .expect("the schedule record");
        let due = waiting[0].store_timestamp + 1000;
        let late = got.store_timestamp - due;
        assert!(
            (0..=100).contains(&late),
            "level 1 (1 s) delivered {late} ms after it was due (must be within 100 ms)"
        );
        assert_eq!(waiting[0].property("REAL_TOPIC"), Some("Delayed"));
        assert_eq!(got.body, b"later");
        assert_eq!(got.property("TAGS"), Some("T1"));
        assert_eq!(got.property("DELAY"), None);
        assert_ne!(got.msg_id, receipt.msg_id, "a new record in the real topic");
        // Out-of-range levels: above the highest is capped, negative or junk is refused.
        for bad in ["-1", "abc"] {
            let r = c
                .invoke(
                    send_raw("Delayed", 0, "bad", &props(&[("DELAY", bad)]), 0),
                    TIMEOUT,
                )
                .await
                .expect("answer");
            assert_eq!(
                r.code,
                response::MESSAGE_ILLEGAL,
                "DELAY={bad}: {:?}",
                r.remark
            );
        }
        let capped = c
            .invoke(
                send_raw("Delayed", 0, "capped", &props(&[("DELAY", "99")]), 0),
                TIMEOUT,
            )
            .await
            .expect("answer");
        assert_eq!(capped.code, response::SUCCESS);
        let got = wait_for(&c, "Delayed", 0, 1, Duration::from_secs(6)).await;
        assert_eq!(got.body, b"capped", "the refused ones were not stored");
        let late = got.store_timestamp - got.born_timestamp;
        assert!(
            (3000..=3150).contains(&late),
            "capped to level 3 (3 s): {late} ms"
        );
        // Pending across a restart: send at level 3, stop at once, start again.
        let pending = Outgoing {
            body: Bytes::from_static(b"pending"),
            delay_level: Some(3),
            ..m.clone()
        };
        ops::send(&c, "pg", &pending).await.expect("send");
    });
    let (ok, _) = b.terminate();
    assert!(ok, "clean stop");
    let saved =
        std::fs::read_to_string(dir.path().join("store/config/delayOffset.json")).expect("saved");
    assert!(
        saved.contains("{1:1"),
        "RocketMQ's bare integer keys: {saved}"
    );
    let b = RunningBroker::start(dir.path(), conf);
    rt.block_on(async {
        let c = Client::connect(b.addr).await.expect("connect");
        let got = wait_for(&c, "Delayed", 0, 2, Duration::from_secs(8)).await;
        assert_eq!(got.body, b"pending");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let all = pull_all(&c, "check", "Delayed", 0, 0).await;
        let bodies: Vec<&[u8]> = all.iter().map(|m| m.body.as_slice()).collect();
        assert_eq!(
            bodies,
            vec![&b"later"[..], b"capped", b"pending"],
            "each exactly once"
        );
    });
    let (ok, _) = b.terminate();
    assert!(ok);
}

async fn send_back(c: &Client, group: &str, offset: i64, delay_level: i32) -> RemotingCommand {
    let req = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK)
        .with_ext("offset", offset)
        .with_ext("group", group)
        .with_ext("delayLevel", delay_level)
        .with_ext("maxReconsumeTimes", 2)
        .with_ext("unitMode", false);
    c.invoke(req, TIMEOUT).await.expect("answer")
}

#[test]
fn failed_messages_come_back_with_more_reconsume_times_then_go_to_the_dlq() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "messageDelayLevel=1s 1s 1s 1s 1s\n");
    runtime().block_on(async {
        let c = Client::connect(b.addr).await.expect("connect");
        ops::create_topic(&c, "Work", 1).await.expect("topic");
        let sent = ops::send(
            &c,
            "pg",
            &Outgoing {
                topic: "Work".into(),
                queue_id: 0,
                body: Bytes::from_static(b"job"),
                keys: Some("job-1".into()),
                ..Outgoing::default()
            },
        )
        .await
        .expect("send");
        let original = wait_for(&c, "Work", 0, 0, Duration::from_secs(5)).await;
        // Bad input first: offsets where no message starts; nothing may be stored.
        let schedule_before = max_offset(&c, "SCHEDULE_TOPIC_XXXX", 2).await;
        for bad in [original.physical_offset + 1, 1 << 40, -5] {
            let r = send_back(&c, "cg", bad, 0).await;
            assert_eq!(
                r.code,
                response::SYSTEM_ERROR,
                "offset {bad}: {:?}",
                r.remark
            );
        }
        assert_eq!(
            max_offset(&c, "SCHEDULE_TOPIC_XXXX", 2).await,
            schedule_before
        );
        assert_eq!(max_offset(&c, "%DLQ%cg", 0).await, 0);

        // Failure 1 and 2: back on %RETRY%cg with reconsumeTimes 1, 2.
        let mut failing = original.clone();
        for round in 1..=2 {
            let r = send_back(&c, "cg", failing.physical_offset, 0).await;
            assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
            let retry = wait_for(&c, "%RETRY%cg", 0, round - 1, Duration::from_secs(5)).await;
            assert_eq!(retry.reconsume_times, round as i32);
            assert_eq!(retry.body, b"job");
            assert_eq!(retry.property("RETRY_TOPIC"), Some("Work"));
            assert_eq!(
                retry.property("ORIGIN_MESSAGE_ID"),
                Some(sent.msg_id.as_str())
            );
            assert_eq!(retry.property("KEYS"), Some("job-1"));
            failing = retry;
        }
        // Failure 3 with maxReconsumeTimes 2: dead letter.
        let r = send_back(&c, "cg", failing.physical_offset, 0).await;
        assert_eq!(r.code, response::SUCCESS);
        let dead = wait_for(&c, "%DLQ%cg", 0, 0, Duration::from_secs(2)).await;
        assert_eq!(dead.reconsume_times, 3);
        assert_eq!(dead.body, b"job");
        assert_eq!(
            dead.property("ORIGIN_MESSAGE_ID"),
            Some(sent.msg_id.as_str())
        );
        // delayLevel < 0: straight to the DLQ.
        let r = send_back(&c, "cg", original.physical_offset, -1).await;
        assert_eq!(r.code, response::SUCCESS);
        assert_eq!(
            wait_for(&c, "%DLQ%cg", 0, 1, Duration::from_secs(2))
                .await
                .reconsume_times,
            1
        );
        // The client-side fallback: a send to %RETRY%cg whose reconsumeTimes reached the
        // maximum is redirected to the DLQ.
        let mut resend = send_raw("%RETRY%cg", 0, "resent", &props(&[("DELAY", "3")]), 0);
        resend = resend.with_ext("j", 16).with_ext("l", 16);
        let r = c.invoke(resend, TIMEOUT).await.expect("answer");
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        assert_eq!(
            wait_for(&c, "%DLQ%cg", 0, 2, Duration::from_secs(2))
                .await
                .body,
            b"resent"
        );
        // The group was created with RocketMQ's defaults.
        let groups = c
            .invoke(
                RemotingCommand::request(request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
                TIMEOUT,
            )
            .await
            .expect("answer");
        let text = String::from_utf8_lossy(&groups.body);
        assert!(
            text.contains("\"cg\"") && text.contains("\"retryMaxTimes\": 16"),
            "{text}"
        );
    });
    assert!(dir
        .path()
        .join("store/config/subscriptionGroup.json")
        .exists());
    let (ok, _) = b.terminate();
    assert!(ok);
}

fn heartbeat(client_id: &str, producer_group: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [{"groupName": producer_group}],
        "consumerDataSet": [],
    });
    RemotingCommand::request(request::HEART_BEAT).with_body(body.to_string())
}

fn end_tx(
    group: &str,
    queue_offset: u64,
    log_offset: u64,
    kind: i32,
    from_check: bool,
) -> RemotingCommand {
    RemotingCommand::request(request::END_TRANSACTION)
        .with_ext("producerGroup", group)
        .with_ext("tranStateTableOffset", queue_offset)
        .with_ext("commitLogOffset", log_offset)
        .with_ext("commitOrRollback", kind)
        .with_ext("fromTransactionCheck", from_check)
        .with_ext("msgId", "x")
        .with_ext("transactionId", "x")
}

/// Sends a prepare; returns (half queue offset, half commit-log offset).
async fn prepare(c: &Client, group: &str, uniq: &str, body: &str) -> (u64, u64) {
    let p = props(&[
        ("TRAN_MSG", "true"),
        ("PGROUP", group),
        ("UNIQ_KEY", uniq),
        ("KEYS", uniq),
    ]);
    let r = c
        .invoke(send_raw("Orders", 0, body, &p, 0x4), TIMEOUT)
        .await
        .expect("answer");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let queue_offset: u64 = r
        .ext("queueOffset")
        .and_then(|v| v.parse().ok())
        .expect("queueOffset");
    let (_, log_offset) = mqstore::format::parse_offset_msg_id(r.ext("msgId").unwrap_or_default())
        .expect("offset id");
    (queue_offset, log_offset)
}

#[test]
fn transactions_commit_roll_back_resolve_by_check_back_or_are_discarded() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(
        dir.path(),
        "transactionCheckInterval=300\ntransactionTimeOut=400\ntransactionCheckMax=2\n",
    );
    runtime().block_on(async {
        let c = Client::connect(b.addr).await.expect("connect");
        assert_eq!(
            c.invoke(heartbeat("p1", "txg"), TIMEOUT)
                .await
                .expect("hb")
                .code,
            0
        );
        ops::create_topic(&c, "Orders", 1).await.expect("topic");
        let committed = prepare(&c, "txg", "U-commit", "commit me").await;
        let rolled = prepare(&c, "txg", "U-rollback", "roll me back").await;
        assert_eq!(
            max_offset(&c, "Orders", 0).await,
            0,
            "half messages are invisible"
        );
        let half_pull = ops::pull(
            &c,
            ops::pull_request("cg", "RMQ_SYS_TRANS_HALF_TOPIC", 0, 0, 32, "*", None, None),
        )
        .await;
        assert!(
            half_pull.is_err(),
            "the half topic is not a consumable topic"
        );

        // Bad END_TRANSACTION requests (two-way here to see the code): nothing published.
        for (label, req) in [
            (
                "wrong group",
                end_tx("other", committed.0, committed.1, 8, false),
            ),
            (
                "wrong queue offset",
                end_tx("txg", committed.0 + 7, committed.1, 8, false),
            ),
            (
                "no record there",
                end_tx("txg", committed.0, committed.1 + 3, 8, false),
            ),
            (
                "bad type",
                end_tx("txg", committed.0, committed.1, 5, false),
            ),
        ] {
            let r = c.invoke(req, TIMEOUT).await.expect("answer");
            assert_eq!(r.code, response::SYSTEM_ERROR, "{label}: {:?}", r.remark);
        }
        assert_eq!(max_offset(&c, "Orders", 0).await, 0);

        // Commit and rollback as the client does it (oneway).
        c.oneway(end_tx("txg", committed.0, committed.1, 8, false))
            .await
            .expect("end");
        c.oneway(end_tx("txg", rolled.0, rolled.1, 12, false))
            .await
            .expect("end");
        let got = wait_for(&c, "Orders", 0, 0, Duration::from_secs(3)).await;
        assert_eq!(got.body, b"commit me");
        assert_eq!(got.property("TRAN_MSG"), None);
        assert_eq!(got.property("UNIQ_KEY"), Some("U-commit"));
        // A repeated commit publishes nothing more.
        let r = c
            .invoke(end_tx("txg", committed.0, committed.1, 8, false), TIMEOUT)
            .await
            .expect("answer");
        assert_eq!(r.code, response::SUCCESS);

        // Unknown: the broker asks this producer; the answer from the check commits it.
        let unknown = prepare(&c, "txg", "U-unknown", "ask me").await;
        c.oneway(end_tx("txg", unknown.0, unknown.1, 0, false))
            .await
            .expect("end");
        let deadline = Instant::now() + Duration::from_secs(5);
        let check = loop {
            let next = c.server_requests.lock().expect("lock").try_recv();
            match next {
                Ok(cmd) if cmd.code == request::CHECK_TRANSACTION_STATE => break cmd,
                Ok(_) => {}
                Err(_) => {
                    assert!(Instant::now() < deadline, "no check-back arrived");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!(check.ext("msgId"), Some("U-unknown"));
        let checked = broker_lite::client::decode_messages(&check.body).expect("record body");
        assert_eq!(
            checked[0].topic, "Orders",
            "the real topic in the check body"
        );
        assert_eq!(checked[0].body, b"ask me");
        let check_queue_offset: u64 = check
            .ext("tranStateTableOffset")
            .and_then(|v| v.parse().ok())
            .expect("q");
        let check_log_offset: u64 = check
            .ext("commitLogOffset")
            .and_then(|v| v.parse().ok())
            .expect("l");
        c.oneway(end_tx("txg", check_queue_offset, check_log_offset, 8, true))
            .await
            .expect("end");
        let got = wait_for(&c, "Orders", 0, 1, Duration::from_secs(3)).await;
        assert_eq!(got.body, b"ask me");

        // A producer that is gone: checked transactionCheckMax times, then discarded.
        {
            let gone = Client::connect(b.addr).await.expect("connect");
            assert_eq!(
                gone.invoke(heartbeat("p2", "gone-group"), TIMEOUT)
                    .await
                    .expect("hb")
                    .code,
                0
            );
            prepare(&gone, "gone-group", "U-gone", "nobody answers").await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while max_offset(&c, "TRANS_CHECK_MAX_TIME_TOPIC", 0).await == 0 {
            assert!(
                Instant::now() < deadline,
                "the orphaned half message was never discarded"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let orders: Vec<Vec<u8>> = pull_all(&c, "cg", "Orders", 0, 0)
            .await
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(
            orders,
            vec![b"commit me".to_vec(), b"ask me".to_vec()],
            "nothing else ever became visible"
        );
    });
    let (ok, _) = b.terminate();
    assert!(ok);
}

fn lock_body(group: &str, client: &str, topic: &str, queues: &[i32]) -> String {
    let mqs: Vec<_> = queues
        .iter()
        .map(|q| serde_json::json!({"topic": topic, "brokerName": "broker-a", "queueId": q}))
        .collect();
    serde_json::json!({"consumerGroup": group, "clientId": client, "onlyThisBroker": false, "mqSet": mqs})
        .to_string()
}

async fn lock(c: &Client, client: &str, topic: &str, queues: &[i32]) -> (i32, Vec<i32>) {
    let r = c
        .invoke(
            RemotingCommand::request(request::LOCK_BATCH_MQ)
                .with_body(lock_body("og", client, topic, queues)),
            TIMEOUT,
        )
        .await
        .expect("answer");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let mut locked: Vec<i32> = v["lockOKMQSet"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["queueId"].as_i64())
                .map(|q| q as i32)
                .collect()
        })
        .unwrap_or_default();
    locked.sort_unstable();
    (r.code, locked)
}

#[test]
fn orderly_consumers_never_share_a_queue_and_locks_expire() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "rebalanceLockMaxLiveTime=600\n");
    runtime().block_on(async {
        let c = Client::connect(b.addr).await.expect("connect");
        ops::create_topic(&c, "Seq", 4).await.expect("topic");
        assert_eq!(lock(&c, "A", "Seq", &[0, 1]).await, (0, vec![0, 1]));
        assert_eq!(
            lock(&c, "B", "Seq", &[0, 1, 2, 3]).await,
            (0, vec![2, 3]),
            "B gets only the free ones"
        );
        assert_eq!(
            lock(&c, "A", "Seq", &[0, 1, 2]).await,
            (0, vec![0, 1]),
            "renewal; 2 is B's"
        );
        // Unknown topic or queue: refused, nothing locked.
        assert_eq!(
            lock(&c, "A", "Nope", &[0]).await.0,
            response::TOPIC_NOT_EXIST
        );
        assert_eq!(
            lock(&c, "A", "Seq", &[0, 9]).await.0,
            response::TOPIC_NOT_EXIST
        );
        let unlock = RemotingCommand::request(request::UNLOCK_BATCH_MQ).with_body(lock_body(
            "og",
            "A",
            "Seq",
            &[1],
        ));
        assert_eq!(c.invoke(unlock, TIMEOUT).await.expect("answer").code, 0);
        assert_eq!(lock(&c, "B", "Seq", &[1]).await.1, vec![1], "released by A");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            lock(&c, "B", "Seq", &[0]).await.1,
            vec![0],
            "A's lock expired"
        );
        // Each queue keeps send order.
        for i in 0..20 {
            let m = Outgoing {
                topic: "Seq".into(),
                queue_id: i % 2,
                body: Bytes::from(format!("{i}")),
                ..Outgoing::default()
            };
            ops::send(&c, "pg", &m).await.expect("send");
        }
        for q in 0..2 {
            wait_for(&c, "Seq", q, 9, Duration::from_secs(5)).await;
            let bodies: Vec<i32> = pull_all(&c, "og", "Seq", q, 0)
                .await
                .iter()
                .map(|m| String::from_utf8_lossy(&m.body).parse().expect("number"))
                .collect();
            let expected: Vec<i32> = (0..20).filter(|i| i % 2 == q as i32).collect();
            assert_eq!(bodies, expected);
        }
    });
    let (ok, _) = b.terminate();
    assert!(ok);
}

#[test]
fn query_by_key_and_id_delete_expired_and_broadcast_consumers() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "");
    let addr = b.addr.to_string();
    let sent = cli(&[
        "send",
        "--broker",
        &addr,
        "--topic",
        "Look",
        "--keys",
        "order-<n>",
        "--count",
        "3",
    ]);
    let id = sent
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("msgId=")))
        .expect("msgId")
        .to_owned();
    // The index is built by the dispatcher just after the send returns.
    let deadline = Instant::now() + Duration::from_secs(5);
    let by_key = loop {
        let out = std::process::Command::new(common::binary())
            .args([
                "query", "--broker", &addr, "--topic", "Look", "--key", "order-2",
            ])
            .output()
            .expect("run");
        if out.status.success() || Instant::now() > deadline {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        by_key.contains("found 1 messages") && by_key.contains("body=message 2"),
        "{by_key}"
    );
    let outside = std::process::Command::new(common::binary())
        .args([
            "query", "--broker", &addr, "--topic", "Look", "--key", "order-2", "--end", "1000",
        ])
        .output()
        .expect("run");
    assert!(
        !outside.status.success(),
        "outside the time range nothing is found"
    );
    assert!(
        String::from_utf8_lossy(&outside.stderr).contains("code 22"),
        "QUERY_NOT_FOUND"
    );
    let by_id = cli(&["query", "--broker", &addr, "--id", &id]);
    assert!(
        by_id.contains("body=message 1") && by_id.contains(&id),
        "{by_id}"
    );
    let deleted = cli(&["delete-expired", "--broker", &addr]);
    assert!(deleted.contains("deleted"), "{deleted}");
    runtime().block_on(async {
        // Broadcast consumers keep offsets themselves: heartbeat, then pull from 0.
        for client in ["bc-1", "bc-2"] {
            let c = Client::connect(b.addr).await.expect("connect");
            let hb = serde_json::json!({
                "clientID": client,
                "producerDataSet": [],
                "consumerDataSet": [{"groupName": "bcast", "consumeType": "CONSUME_PASSIVELY",
                    "messageModel": "BROADCASTING", "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
                    "subscriptionDataSet": [{"topic": "Look", "subString": "*", "subVersion": 1}]}],
            });
            let r = c
                .invoke(
                    RemotingCommand::request(request::HEART_BEAT).with_body(hb.to_string()),
                    TIMEOUT,
                )
                .await
                .expect("hb");
            assert_eq!(r.code, 0);
            let mut total = 0;
            for q in 0..4 {
                let req = RemotingCommand::request(request::PULL_MESSAGE)
                    .with_ext("consumerGroup", "bcast")
                    .with_ext("topic", "Look")
                    .with_ext("queueId", q)
                    .with_ext("queueOffset", 0)
                    .with_ext("maxMsgNums", 32)
                    .with_ext("sysFlag", 0)
                    .with_ext("commitOffset", 0)
                    .with_ext("suspendTimeoutMillis", 0)
                    .with_ext("subscription", "")
                    .with_ext("subVersion", 1);
                total += ops::pull(&c, req).await.expect("pull").messages.len();
            }
            assert_eq!(total, 3, "{client} sees every message");
        }
    });
    let (ok, _) = b.terminate();
    assert!(ok);
}
