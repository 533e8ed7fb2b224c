//! Registration with name servers, against a scripted name server in the test: what the
//! broker sends (RocketMQ's header, a body a RocketMQ 5 name server decodes, the masked
//! body CRC), when (at start, as soon as a topic changes), and what it does when a name
//! server refuses, answers garbage or is not there at all: it keeps serving, logs, and
//! registers again. (The real name server is in tests/cluster.rs.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::{request, response};
use broker_lite::remoting::{decode_frame_body, Inbound, RemotingCommand};
use broker_lite::Client;
use bytes::{Bytes, BytesMut};
use common::RunningBroker;

/// What the scripted name server saw.
#[derive(Debug)]
struct Seen {
    code: i32,
    ext: std::collections::BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_frame(s: &mut TcpStream) -> Option<RemotingCommand> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame).ok()?;
    match decode_frame_body(Bytes::from(frame)) {
        Inbound::Command(c) => Some(c),
        Inbound::Malformed { reason, .. } => panic!("the broker sent a malformed frame: {reason}"),
    }
}

/// A name server that answers the n-th REGISTER_BROKER (from 0) as `script(n)` says:
/// `Some(code)` answers that code, `None` writes garbage and closes the connection.
fn scripted_name_server(script: fn(usize) -> Option<i32>) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut registrations = 0;
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            while let Some(cmd) = read_frame(&mut s) {
                let seen = Seen {
                    code: cmd.code,
                    ext: cmd.ext_fields.clone().into_iter().collect(),
                    body: cmd.body.to_vec(),
                };
                let answer = if cmd.code == request::REGISTER_BROKER {
                    registrations += 1;
                    script(registrations - 1)
                } else {
                    Some(response::SUCCESS)
                };
                if tx.send(seen).is_err() {
                    return;
                }
                let Some(code) = answer else {
                    // A length that promises a header the bytes are not.
                    let _ = s.write_all(&[0, 0, 0, 12, 0xEE, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]);
                    let _ = s.write_all(&[0xAB; 12]);
                    break;
                };
                let mut out = BytesMut::new();
                cmd.response(code)
                    .with_remark("scripted answer")
                    .encode(&mut out)
                    .expect("encode");
                let _ = s.write_all(&out);
            }
        }
    });
    (addr, rx)
}

/// The next registration the name server saw within 20 s.
fn next_registration(rx: &mpsc::Receiver<Seen>) -> Seen {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = rx.recv_timeout(left).expect("a registration within 20 s");
        if seen.code == request::REGISTER_BROKER {
            return seen;
        }
    }
}

fn topics_in(seen: &Seen) -> serde_json::Map<String, serde_json::Value> {
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("JSON body");
    body["topicConfigSerializeWrapper"]["topicConfigTable"]
        .as_object()
        .expect("topicConfigTable")
        .clone()
}

async fn send_one(addr: SocketAddr, topic: &str) {
    let c = Client::connect(addr).await.expect("connect");
    let m = Outgoing {
        topic: topic.into(),
        queue_id: 0,
        body: Bytes::from_static(b"still serving"),
        ..Outgoing::default()
    };
    let r = ops::send(&c, "p", &m).await.expect("send");
    assert_eq!(r.code, response::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_survives_refusals_garbage_and_a_dead_name_server() {
    // First registration refused, second answered with garbage, the rest accepted.
    let (namesrv, seen) = scripted_name_server(|n| match n {
        0 => Some(response::SYSTEM_ERROR),
        1 => None,
        _ => Some(response::SUCCESS),
    });
    // A name server address where nothing listens comes first in the list.
    let dead = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    // A period far longer than the test: every registration after the first is one a
    // topic change caused.
    let broker = RunningBroker::start(
        dir.path(),
        &format!(
            "brokerClusterName=C1\nbrokerName=broker-x\nnamesrvAddr={dead};{namesrv}\nregisterNameServerPeriod=600000\n"
        ),
    );

    // 1. At start: refused. The broker serves anyway.
    let first = next_registration(&seen);
    send_one(broker.addr, "T1").await;
    let ext = &first.ext;
    assert_eq!(ext["brokerName"], "broker-x");
    assert_eq!(ext["clusterName"], "C1");
    assert_eq!(ext["brokerId"], "0");
    assert_eq!(ext["brokerAddr"], broker.addr.to_string());
    assert_eq!(ext["compressed"], "false");
    let crc = (crc32fast::hash(&first.body) & 0x7FFF_FFFF).to_string();
    assert_eq!(
        ext["bodyCrc32"], crc,
        "bodyCrc32 is RocketMQ's masked CRC-32"
    );
    // The body as a RocketMQ 5 name server decodes it.
    let body: serde_json::Value = serde_json::from_slice(&first.body).expect("JSON body");
    let wrapper = &body["topicConfigSerializeWrapper"];
    for field in ["stateVersion", "timestamp", "counter"] {
        assert!(
            wrapper["dataVersion"][field].is_i64(),
            "dataVersion.{field}"
        );
        assert!(
            wrapper["mappingDataVersion"][field].is_i64(),
            "mappingDataVersion.{field}"
        );
    }
    assert!(wrapper["topicQueueMappingInfoMap"].is_object());
    assert!(wrapper["topicQueueMappingDetailMap"].is_object());
    assert_eq!(body["filterServerList"], serde_json::json!([]));
    let tbw = &wrapper["topicConfigTable"]["TBW102"];
    assert_eq!(tbw["topicName"], "TBW102");
    assert!(tbw["attributes"].is_object(), "TopicConfig.attributes");

    // 2. The send auto-created T1: registered again at once, answered with garbage; the
    // broker drops that connection and tries once more on a new one (accepted).
    let garbled = next_registration(&seen);
    assert!(
        topics_in(&garbled).contains_key("T1"),
        "the change was announced"
    );
    let second = next_registration(&seen);
    assert_eq!(second.body, garbled.body, "the same registration, again");
    send_one(broker.addr, "T2").await;

    // 3. T2 is announced and accepted, with everything so far.
    let third = next_registration(&seen);
    let topics = topics_in(&third);
    assert!(topics.contains_key("T1") && topics.contains_key("T2"));
    let v2: serde_json::Value = serde_json::from_slice(&second.body).expect("JSON");
    let v3: serde_json::Value = serde_json::from_slice(&third.body).expect("JSON");
    let counter = |v: &serde_json::Value| {
        v["topicConfigSerializeWrapper"]["dataVersion"]["counter"]
            .as_i64()
            .expect("counter")
    };
    assert!(
        counter(&v3) > counter(&v2),
        "each change bumps the data version"
    );

    // 4. Shutdown unregisters.
    let (clean, _) = broker.terminate();
    assert!(clean, "the broker stopped cleanly");
    let deadline = Instant::now() + Duration::from_secs(20);
    let unregistered = loop {
        match seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(s) if s.code == request::UNREGISTER_BROKER => break s,
            Ok(_) => {}
            Err(e) => panic!("no UNREGISTER_BROKER at shutdown: {e}"),
        }
    };
    assert_eq!(unregistered.ext["brokerName"], "broker-x");
    assert_eq!(unregistered.ext["brokerAddr"], broker_addr_of(&third));
}

fn broker_addr_of(seen: &Seen) -> String {
    seen.ext["brokerAddr"].clone()
}

#[test]
fn a_broker_with_name_servers_leaves_the_route_port_to_them() {
    // namesrvAddr set, namesrvListenPort not: no built-in route service, so a name server
    // on the same machine keeps its port 9876.
    let dir = tempfile::tempdir().expect("tempdir");
    let conf_path = dir.path().join("broker.conf");
    std::fs::write(
        &conf_path,
        format!(
            "{}namesrvAddr=127.0.0.1:1\nregisterNameServerPeriod=600000\n",
            common::SMALL_STORE
        ),
    )
    .expect("conf");
    let mut child = std::process::Command::new(common::binary())
        .arg("-c")
        .arg(&conf_path)
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["--port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("read");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on"), "{line}");
    assert!(line.contains("name servers 127.0.0.1:1,"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_connection_the_peer_closed_fails_at_once() {
    // The kept connection to a name server that was killed: the next registration must
    // fail as closed (and go to a new connection), not wait out its timeout.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = Client::connect(addr).await.expect("connect");
    let (peer, _) = listener.accept().expect("accept");
    drop(peer);
    drop(listener);
    // The reader sees the end of the stream; give it a moment (not a deadline).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let outcome = client
        .invoke(
            RemotingCommand::request(request::REGISTER_BROKER),
            Duration::from_secs(60),
        )
        .await;
    assert!(
        matches!(outcome, Err(broker_lite::client::ClientError::Closed)),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed only after {:?}",
        started.elapsed()
    );
}
