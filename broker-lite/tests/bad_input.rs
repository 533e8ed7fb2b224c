//! Bad input over TCP: malformed frames, a thousand idle connections
//! and a client that sends pulls and never reads. The broker stays up, its memory stays
//! bounded, and a well-behaved client on another connection keeps getting correct answers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::{request, response};
use broker_lite::remoting::{decode_frame_body, Inbound};
use broker_lite::Client;
use bytes::Bytes;
use common::RunningBroker;

/// Sends, then pulls back, one message: the broker answers correctly.
async fn well_behaved_round_trip(addr: SocketAddr, n: u32) {
    let c = Client::connect(addr).await.expect("connect");
    let body = format!("probe {n}");
    let m = Outgoing {
        topic: "Probe".into(),
        queue_id: 0,
        body: Bytes::from(body.clone()),
        tags: Some("P".into()),
        keys: None,
        uniq_key: None,
        delay_level: None,
    };
    let r = ops::send(&c, "p", &m).await.expect("send");
    // Dispatch is asynchronous: a suspended pull waits for the message to become readable,
    // but while dispatch lags more than one message behind (a loaded machine) the offset
    // is past the queue's end and the broker answers PULL_OFFSET_MOVED; ask again then.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pulled = loop {
        let req = ops::pull_request(
            "g",
            "Probe",
            0,
            r.queue_offset,
            1,
            "*",
            Some(Duration::from_secs(5)),
            None,
        );
        let pulled = ops::pull(&c, req).await.expect("pull");
        if pulled.code == response::SUCCESS || Instant::now() > deadline {
            break pulled;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(pulled.code, response::SUCCESS, "probe {n}");
    assert_eq!(pulled.messages[0].body, body.as_bytes());
}

/// Writes `bytes`, then reads whatever comes back until the peer closes or 1 s passes.
fn exchange(addr: SocketAddr, bytes: &[u8], close_write: bool) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("write");
    if close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (out, closed)
}

fn frame(ser: u8, header: &[u8], body: &[u8], declared_header_len: Option<u32>) -> Vec<u8> {
    let hl = declared_header_len.unwrap_or(header.len() as u32);
    let mut f = Vec::new();
    f.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    f.extend_from_slice(&((u32::from(ser) << 24) | hl).to_be_bytes());
    f.extend_from_slice(header);
    f.extend_from_slice(body);
    f
}

fn responses(bytes: &[u8]) -> Vec<broker_lite::RemotingCommand> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            break;
        }
        if let Inbound::Command(c) = decode_frame_body(Bytes::copy_from_slice(&rest[4..4 + len])) {
            out.push(c);
        }
        rest = &rest[4 + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_errors_or_a_clean_close_and_hurt_nobody() {
    let dir = tempfile::tempdir().expect("dir");
    let mut b = RunningBroker::start(dir.path(), "");
    let addr = b.addr;
    well_behaved_round_trip(addr, 0).await;
    let rss_before = b.rss_kib();

    // Length 0x7FFFFFFF then close: refused before allocating, connection closed.
    let (out, closed) = exchange(addr, &[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], true);
    assert!(out.is_empty() && closed);
    // The same without closing: the broker closes it.
    let (out, closed) = exchange(addr, &[0x7F, 0xFF, 0xFF, 0xFF], false);
    assert!(
        out.is_empty() && closed,
        "oversized frame closes the connection"
    );
    // A length too short to hold the header word.
    let (_, closed) = exchange(addr, &[0, 0, 0, 2, 1, 2], false);
    assert!(closed);

    // Garbage JSON: an error response carrying the opaque, and the connection stays usable.
    let garbage = frame(
        0,
        br#"{"code":10,"opaque":77,"flag":0,"extFields":{"#,
        b"",
        None,
    );
    let good = frame(
        0,
        br#"{"code":30,"opaque":78,"flag":0,"extFields":{"topic":"Probe","queueId":"0"}}"#,
        b"",
        None,
    );
    let (out, _) = exchange(addr, &[garbage, good].concat(), false);
    let r = responses(&out);
    assert_eq!(r.len(), 2, "both frames answered");
    assert_eq!((r[0].opaque, r[0].code), (77, response::SYSTEM_ERROR));
    assert_eq!((r[1].opaque, r[1].code), (78, response::SUCCESS));
    assert_eq!(r[1].ext("offset"), Some("1"));

    // Header longer than the frame: error response, stream stays in step.
    let lying = frame(1, &[0u8; 8], b"", Some(1000));
    let (out, _) = exchange(
        addr,
        &[
            lying,
            frame(
                0,
                br#"{"code":30,"opaque":5,"extFields":{"topic":"Probe","queueId":0}}"#,
                b"",
                None,
            ),
        ]
        .concat(),
        false,
    );
    let r = responses(&out);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].code, response::SYSTEM_ERROR);
    assert_eq!(
        (r[1].opaque, r[1].code),
        (5, response::SUCCESS),
        "numbers as ext values accepted"
    );

    // Unknown serialize type.
    let (out, _) = exchange(addr, &frame(7, b"{}", b"", None), false);
    assert_eq!(responses(&out)[0].code, response::SYSTEM_ERROR);

    // Binary header with a lying remark length.
    let mut bin = vec![0, 10, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0];
    bin.extend_from_slice(&i32::MAX.to_be_bytes());
    let (out, _) = exchange(addr, &frame(1, &bin, b"", None), false);
    let r = responses(&out);
    assert_eq!((r[0].opaque, r[0].code), (9, response::SYSTEM_ERROR));
    assert_eq!(
        r[0].serialize_type,
        broker_lite::SerializeType::RocketMq,
        "answered in the request's type"
    );

    // Unknown request code.
    let (out, _) = exchange(
        addr,
        &frame(0, br#"{"code":9999,"opaque":3}"#, b"", None),
        false,
    );
    let r = responses(&out);
    assert_eq!(
        (r[0].opaque, r[0].code),
        (3, response::REQUEST_CODE_NOT_SUPPORTED)
    );

    // Oneway garbage: no response at all.
    let (out, _) = exchange(
        addr,
        &frame(
            0,
            br#"{"code":10,"opaque":4,"flag":2,"extFields":{"#,
            b"",
            None,
        ),
        false,
    );
    assert!(out.is_empty());

    // A send with a bad header: SYSTEM_ERROR, nothing stored.
    let (out, _) = exchange(
        addr,
        &frame(
            0,
            br#"{"code":310,"opaque":6,"extFields":{"a":"p","b":"Probe","e":"x"}}"#,
            b"body",
            None,
        ),
        false,
    );
    assert_eq!(responses(&out)[0].code, response::SYSTEM_ERROR);

    // Truncated frame then close.
    let full = frame(
        0,
        br#"{"code":30,"opaque":1,"extFields":{"topic":"Probe","queueId":"0"}}"#,
        b"",
        None,
    );
    let (out, closed) = exchange(addr, &full[..full.len() - 5], true);
    assert!(out.is_empty() && closed);

    assert!(b.alive());
    well_behaved_round_trip(addr, 1).await;
    let c = Client::connect(addr).await.expect("connect");
    assert_eq!(
        ops::queue_number(
            &c,
            broker_lite::remoting::codes::request::GET_MAX_OFFSET,
            "Probe",
            0,
            None
        )
        .await
        .expect("max"),
        Some(2),
        "only the two good sends were stored"
    );
    let rss_after = b.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_client_that_never_reads_are_contained() {
    let dir = tempfile::tempdir().expect("dir");
    let mut b = RunningBroker::start(dir.path(), "maxOutboundFrames=256\n");
    let addr = b.addr;
    well_behaved_round_trip(addr, 0).await;
    let rss_before = b.rss_kib();

    // 1,000 idle connections.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(addr).expect("connect idle"))
        .collect();
    well_behaved_round_trip(addr, 1).await;

    // A client that sends 10,000 pulls (each answered with a 32-message body) and never reads.
    let c = Client::connect(addr).await.expect("connect");
    for i in 0..64 {
        let m = Outgoing {
            topic: "Probe".into(),
            queue_id: 0,
            body: Bytes::from(vec![b'x'; 4096]),
            tags: None,
            keys: None,
            uniq_key: Some(format!("u{i}")),
            delay_level: None,
        };
        ops::send(&c, "p", &m).await.expect("send");
    }
    let mut greedy = TcpStream::connect(addr).expect("connect");
    greedy
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let pull = frame(
        0,
        br#"{"code":11,"opaque":1,"flag":0,"extFields":{"consumerGroup":"g","topic":"Probe","queueId":"0","queueOffset":"0","maxMsgNums":"32","sysFlag":"4","commitOffset":"-1","suspendTimeoutMillis":"0","subscription":"*","subVersion":"0"}}"#,
        b"",
        None,
    );
    let started = Instant::now();
    let mut sent = 0;
    let mut closed_by_broker = false;
    for _ in 0..10_000 {
        if greedy.write_all(&pull).is_err() {
            closed_by_broker = true;
            break;
        }
        sent += 1;
    }
    // Meanwhile others are served.
    well_behaved_round_trip(addr, 2).await;
    // The broker closes the greedy connection once its outbound queue is full.
    if !closed_by_broker {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if greedy.write_all(&pull).is_err() {
                closed_by_broker = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        closed_by_broker,
        "a client that never reads is closed (sent {sent} pulls in {:?})",
        started.elapsed()
    );
    assert!(b.alive());
    let rss_after = b.rss_kib();
    assert!(
        rss_after < rss_before + 200 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    drop(idle);
    well_behaved_round_trip(addr, 3).await;
    let (ok, out) = tokio::task::spawn_blocking(move || b.terminate())
        .await
        .expect("join");
    assert!(ok && out.contains("stopped cleanly"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_send_path_answers_system_busy_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    // A send queue of capacity 0: every send finds it full.
    let b = RunningBroker::start(dir.path(), "sendThreadPoolQueueCapacity=0\n");
    let c = Client::connect(b.addr).await.expect("connect");
    ops::create_topic(&c, "Busy", 1).await.expect("create");
    let m = Outgoing {
        topic: "Busy".into(),
        queue_id: 0,
        body: Bytes::from_static(b"x"),
        tags: None,
        keys: None,
        uniq_key: None,
        delay_level: None,
    };
    match ops::send(&c, "p", &m).await {
        Err(ops::OpError::Refused { code, remark }) => {
            assert_eq!(code, response::SYSTEM_BUSY);
            assert!(remark.contains("[REJECTREQUEST]"), "{remark}");
        }
        other => panic!("expected SYSTEM_BUSY, got {other:?}"),
    }
    assert_eq!(
        ops::queue_number(
            &c,
            broker_lite::remoting::codes::request::GET_MAX_OFFSET,
            "Busy",
            0,
            None
        )
        .await
        .expect("max"),
        Some(0)
    );
}

#[test]
fn a_bad_configuration_value_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join("broker.conf");
    std::fs::write(&conf, "brokerName=b\nflushDiskType=SOMETIMES\n").expect("write");
    let out = std::process::Command::new(common::binary())
        .arg("-c")
        .arg(&conf)
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["--port", "0", "--no-namesrv"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flushDiskType"), "{err}");
    assert!(!dir.path().join("store").exists(), "nothing created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(dir.path(), "maxMessageSize=65536\n");
    let c = Client::connect(b.addr).await.expect("connect");
    ops::create_topic(&c, "Big", 1).await.expect("create");
    let mut m = Outgoing {
        topic: "Big".into(),
        queue_id: 0,
        body: Bytes::from(vec![b'x'; 65_537]),
        tags: None,
        keys: None,
        uniq_key: None,
        delay_level: None,
    };
    match ops::send(&c, "p", &m).await {
        Err(ops::OpError::Refused { code, .. }) => assert_eq!(code, response::MESSAGE_ILLEGAL),
        other => panic!("expected MESSAGE_ILLEGAL, got {other:?}"),
    }
    m.body = Bytes::from(vec![b'x'; 65_536]);
    let r = ops::send(&c, "p", &m)
        .await
        .expect("the largest legal body");
    assert_eq!(
        r.queue_offset, 0,
        "the refused message took no queue offset"
    );
}

/// A disk above `diskSpaceWarningLevelRatio` (here 1 %, so this machine's real disk
/// qualifies): sends get SERVICE_NOT_AVAILABLE saying why, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_with_service_not_available() {
    let dir = tempfile::tempdir().expect("dir");
    let b = RunningBroker::start(
        dir.path(),
        "diskSpaceWarningLevelRatio=1\ndiskSpaceCleanForciblyRatio=100\n\
         diskMaxUsedSpaceRatio=100\ncleanFileForciblyEnable=false\ncleanResourceInterval=50\n",
    );
    let c = Client::connect(b.addr).await.expect("connect");
    ops::create_topic(&c, "Full", 1).await.expect("create");
    let m = Outgoing {
        topic: "Full".into(),
        queue_id: 0,
        body: Bytes::from_static(b"not stored"),
        tags: None,
        keys: None,
        uniq_key: None,
        delay_level: None,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ops::send(&c, "p", &m).await {
            Err(ops::OpError::Refused { code, remark }) => {
                assert_eq!(code, response::SERVICE_NOT_AVAILABLE);
                assert!(remark.contains("disk is full"), "{remark}");
                break;
            }
            // The first cleanup pass (50 ms after start) has not run yet.
            Ok(_) => assert!(Instant::now() < deadline, "never refused"),
            Err(e) => panic!("unexpected {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let max = || ops::queue_number(&c, request::GET_MAX_OFFSET, "Full", 0, None);
    let before = max().await.expect("max offset");
    assert!(ops::send(&c, "p", &m).await.is_err());
    assert_eq!(
        max().await.expect("max offset"),
        before,
        "a refused send stores nothing"
    );
}

#[test]
fn corrupt_metadata_falls_back_to_its_backup_or_stops_start_up() {
    let dir = tempfile::tempdir().expect("dir");
    let offsets = dir.path().join("store/config/consumerOffset.json");
    let b = RunningBroker::start(dir.path(), "");
    let addr = b.addr.to_string();
    common::cli(&[
        "topic", "create", "--broker", &addr, "--topic", "Meta", "--queues", "1",
    ]);
    common::cli(&["send", "--broker", &addr, "--topic", "Meta", "--count", "3"]);
    common::cli(&[
        "consume",
        "--broker",
        &addr,
        "--topic",
        "Meta",
        "--group",
        "g",
        "--idle-ms",
        "200",
    ]);
    assert!(b.terminate().0);
    // A second clean stop makes the committed offsets also the backup's content.
    let b = RunningBroker::start(dir.path(), "");
    let addr = b.addr.to_string();
    common::cli(&["send", "--broker", &addr, "--topic", "Meta", "--count", "1"]);
    common::cli(&[
        "consume",
        "--broker",
        &addr,
        "--topic",
        "Meta",
        "--group",
        "g",
        "--idle-ms",
        "200",
    ]);
    assert!(b.terminate().0);

    // Garbled main file: the backup is used (offset 3 from the first run, not 0).
    std::fs::write(&offsets, "{\"offsetTable\":{").expect("garble");
    let b = RunningBroker::start(dir.path(), "");
    let addr = b.addr.to_string();
    let lag = common::cli(&[
        "offsets", "--broker", &addr, "--group", "g", "--topic", "Meta",
    ]);
    assert!(
        lag.contains("0\t3\t4\t1"),
        "offsets came from the backup: {lag}"
    );
    assert!(b.terminate().0);

    // Both copies garbled: start-up refuses and names the file.
    std::fs::write(&offsets, "garbage").expect("garble");
    let mut bak = offsets.clone().into_os_string();
    bak.push(".bak");
    std::fs::write(&bak, "").expect("garble backup");
    let out = std::process::Command::new(common::binary())
        .arg("-c")
        .arg(dir.path().join("broker.conf"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["--port", "0", "--no-namesrv"])
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "never starts with offsets silently reset"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("consumerOffset.json"), "{err}");
}
