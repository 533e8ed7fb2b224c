//! TLS on the remoting port against the real binary: `enforcing` serves TLS clients and
//! drops clear-text ones, `permissive` serves both, the client subcommands connect with
//! `--tls-ca`, an untrusted certificate fails the handshake, ACL signatures work over TLS,
//! and a missing or unreadable certificate stops the start.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use broker_lite::acl::Credentials;
use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::response;
use broker_lite::remoting::tls::{client_config, ClientTls};
use broker_lite::Client;
use common::RunningBroker;

/// A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem).
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}

fn tls_conf(mode: &str, cert: &Path, key: &Path) -> String {
    format!(
        "tls.server.mode={mode}\ntls.server.certPath={}\ntls.server.keyPath={}\n",
        cert.display(),
        key.display()
    )
}

fn trusting(cert: &Path) -> ClientTls {
    ClientTls {
        config: client_config(cert).expect("client config"),
        server_name: None,
    }
}

async fn round_trip(c: &Client, body: &str) {
    let m = Outgoing::new("Tls", 0, body.to_owned());
    let sent = ops::send(c, "p", &m).await.expect("send");
    assert_eq!(sent.code, response::SUCCESS);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let req = ops::pull_request("g", "Tls", 0, sent.queue_offset, 1, "*", None, None);
        let pulled = ops::pull(c, req).await.expect("pull");
        if pulled.code == response::SUCCESS {
            assert_eq!(pulled.messages[0].body, body.as_bytes());
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never readable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a clear-text request gets an answer.
async fn plain_answered(addr: std::net::SocketAddr) -> bool {
    let Ok(c) = Client::connect(addr).await else {
        return false;
    };
    c.invoke(
        broker_lite::RemotingCommand::request(
            broker_lite::remoting::codes::request::GET_BROKER_RUNTIME_INFO,
        ),
        Duration::from_secs(5),
    )
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcing_serves_tls_clients_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(dir.path(), "server");
    let broker = RunningBroker::start(dir.path(), &tls_conf("enforcing", &cert, &key));
    let c = Client::connect_tls(broker.addr, &trusting(&cert))
        .await
        .expect("TLS connect");
    round_trip(&c, "over tls").await;
    assert!(!plain_answered(broker.addr).await, "clear text served");
    // The route port too.
    let routes = broker.routes.expect("routes");
    assert!(!plain_answered(routes).await);
    // A client that trusts another certificate refuses the broker's.
    let (other, _) = certificate(dir.path(), "other");
    assert!(Client::connect_tls(broker.addr, &trusting(&other))
        .await
        .is_err());
    // The client subcommands.
    let addr = broker.addr.to_string();
    let out = common::cli(&[
        "send",
        "--broker",
        &addr,
        "--topic",
        "Tls",
        "--body",
        "cli",
        "--tls-ca",
        cert.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("sent msgId="), "{out}");
    let out = Command::new(common::binary())
        .args(["send", "--broker", &addr, "--topic", "Tls"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "a clear-text subcommand got through");
    // The same connection keeps working after all that.
    round_trip(&c, "still").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_serves_both_and_acl_signatures_work_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(dir.path(), "server");
    std::fs::write(
        dir.path().join("plain_acl.yml"),
        "accounts:\n  - accessKey: producer1\n    secretKey: secret-p1\n    defaultTopicPerm: PUB|SUB\n    defaultGroupPerm: SUB\n",
    )
    .expect("acl");
    let broker = RunningBroker::start(
        dir.path(),
        &format!("{}aclEnable=true\n", tls_conf("permissive", &cert, &key)),
    );
    let creds = Some(Credentials {
        access_key: "producer1".into(),
        secret_key: "secret-p1".into(),
    });
    let mut over_tls = Client::connect_tls(broker.addr, &trusting(&cert))
        .await
        .expect("TLS connect");
    over_tls.set_credentials(creds.clone());
    round_trip(&over_tls, "tls + acl").await;
    let mut plain = Client::connect(broker.addr).await.expect("connect");
    plain.set_credentials(creds);
    round_trip(&plain, "clear + acl").await;
}

#[test]
fn a_missing_or_unreadable_certificate_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let cases = [
        (
            "tls.server.mode=enforcing\n".to_owned(),
            "tls.server.certPath",
        ),
        (tls_conf("enforcing", &garbage, &garbage), "garbage.pem"),
        ("tls.server.mode=sometimes\n".to_owned(), "tls.server.mode"),
    ];
    for (conf, says) in cases {
        let conf_path = dir.path().join("broker.conf");
        std::fs::write(&conf_path, format!("{}{conf}", common::SMALL_STORE)).expect("conf");
        let out = Command::new(common::binary())
            .arg("-c")
            .arg(&conf_path)
            .arg("--store")
            .arg(dir.path().join("store"))
            .args(["--port", "0", "--namesrv-port", "0"])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{conf}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{conf}: {err}");
    }
}
