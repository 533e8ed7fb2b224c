//! ACL over TCP against the real binary (`aclEnable=true`, `plain_acl.yml` beside
//! broker.conf): each permission rule, each kind of bad credential, the file's reload and
//! its errors. Every refusal is NO_PERMISSION, stores nothing, and leaves the connection
//! usable for a correct request.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use broker_lite::acl::Credentials;
use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::{request, response};
use broker_lite::{Client, RemotingCommand};
use bytes::Bytes;
use common::RunningBroker;

const ACL: &str = "\
globalWhiteRemoteAddresses:

accounts:
  - accessKey: producer1
    secretKey: secret-p1
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - orders=PUB|SUB
      - closed=DENY
      - readonly=SUB
    groupPerms:
      - blockedGroup=DENY

  - accessKey: consumer1
    secretKey: secret-c1
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - orders=SUB

  - accessKey: admin-ak1
    secretKey: secret-a1
    admin: true
";

const T: Duration = Duration::from_secs(10);

fn creds(ak: &str, sk: &str) -> Credentials {
    Credentials {
        access_key: ak.into(),
        secret_key: sk.into(),
    }
}

fn producer_account() -> Credentials {
    creds("producer1", "secret-p1")
}

fn consumer_account() -> Credentials {
    creds("consumer1", "secret-c1")
}

fn admin_account() -> Credentials {
    creds("admin-ak1", "secret-a1")
}

async fn client(addr: SocketAddr, who: Option<Credentials>) -> Client {
    let mut c = Client::connect(addr).await.expect("connect");
    c.set_credentials(who);
    c
}

fn message(topic: &str, body: &str) -> Outgoing {
    Outgoing::new(topic, 0, body.to_owned())
}

fn send_request(topic: &str, body: &str) -> RemotingCommand {
    ops::send_request("pg", &message(topic, body))
}

async fn call(c: &Client, req: RemotingCommand) -> RemotingCommand {
    c.invoke(req, T).await.expect("answer")
}

/// Asserts a NO_PERMISSION answer whose remark holds `says`.
fn refused(r: &RemotingCommand, says: &str) {
    assert_eq!(
        r.code,
        response::NO_PERMISSION,
        "expected a refusal, got {} {:?}",
        r.code,
        r.remark
    );
    let remark = r.remark.as_deref().unwrap_or_default();
    assert!(remark.contains(says), "remark {remark:?} lacks {says:?}");
    for secret in ["secret-p1", "secret-c1", "secret-a1"] {
        assert!(!remark.contains(secret), "remark leaks a secret: {remark}");
    }
}

async fn max_offset(admin: &Client, topic: &str) -> i64 {
    let r = call(
        admin,
        RemotingCommand::request(request::GET_MAX_OFFSET)
            .with_ext("topic", topic)
            .with_ext("queueId", 0),
    )
    .await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    r.ext("offset")
        .and_then(|o| o.parse().ok())
        .expect("offset")
}

fn start(dir: &std::path::Path, acl: &str) -> RunningBroker {
    std::fs::write(dir.join("plain_acl.yml"), acl).expect("write acl");
    RunningBroker::start(dir, "aclEnable=true\n")
}

fn heartbeat(group: &str, topic: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": "127.0.0.1@acl-test",
        "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "subscriptionDataSet": [{ "topic": topic, "subString": "*" }],
        }],
    });
    RemotingCommand::request(request::HEART_BEAT).with_body(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_permission_rule_over_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), ACL);
    let admin = client(broker.addr, Some(admin_account())).await;
    let producer = client(broker.addr, Some(producer_account())).await;
    let consumer = client(broker.addr, Some(consumer_account())).await;
    let anonymous = client(broker.addr, None).await;

    // Administration needs admin: true.
    for topic in ["orders", "closed", "readonly", "other"] {
        ops::create_topic(&admin, topic, 1)
            .await
            .expect("admin creates");
    }
    let r = call(
        &producer,
        RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
            .with_ext("topic", "mine")
            .with_ext("readQueueNums", 1)
            .with_ext("writeQueueNums", 1)
            .with_ext("perm", 6),
    )
    .await;
    refused(&r, "needs an admin account");
    let r = call(
        &consumer,
        RemotingCommand::request(request::DELETE_EXPIRED_COMMITLOG),
    )
    .await;
    refused(&r, "needs an admin account");
    let r = call(
        &admin,
        RemotingCommand::request(request::DELETE_EXPIRED_COMMITLOG),
    )
    .await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);

    // Sends: PUB on the topic, from its explicit entry or the default.
    let r = call(&producer, send_request("orders", "o1")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    refused(
        &call(&producer, send_request("closed", "x")).await,
        "no PUB permission on topic `closed`",
    );
    refused(
        &call(&producer, send_request("readonly", "x")).await,
        "topic `readonly`",
    );
    refused(
        &call(&producer, send_request("other", "x")).await,
        "topic `other`",
    );
    refused(
        &call(&consumer, send_request("orders", "x")).await,
        "no PUB permission on topic `orders`",
    );
    refused(
        &call(&anonymous, send_request("orders", "x")).await,
        "no AccessKey",
    );
    for topic in ["closed", "readonly", "other"] {
        assert_eq!(
            max_offset(&admin, topic).await,
            0,
            "{topic}: nothing stored"
        );
    }
    assert_eq!(max_offset(&admin, "orders").await, 1);

    // Pulls: SUB on the topic and on the group.
    let pull = |group: &str| ops::pull_request(group, "orders", 0, 0, 8, "*", None, None);
    let pulled = ops::pull(&consumer, pull("g1")).await.expect("pull");
    assert_eq!(pulled.code, response::SUCCESS);
    assert_eq!(pulled.messages[0].body, b"o1");
    let r = call(&producer, pull("blockedGroup")).await;
    refused(&r, "group `blockedGroup`");
    let r = call(
        &consumer,
        ops::pull_request("g1", "closed", 0, 0, 8, "*", None, None),
    )
    .await;
    refused(&r, "topic `closed`");

    // Offsets: SUB on both.
    ops::commit(&consumer, "g1", "orders", 0, 1)
        .await
        .expect("commit");
    let r = call(
        &producer,
        RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
            .with_ext("consumerGroup", "blockedGroup")
            .with_ext("topic", "orders")
            .with_ext("queueId", 0)
            .with_ext("commitOffset", 1),
    )
    .await;
    refused(&r, "group `blockedGroup`");
    let r = call(
        &consumer,
        RemotingCommand::request(request::QUERY_CONSUMER_OFFSET)
            .with_ext("consumerGroup", "g1")
            .with_ext("topic", "orders")
            .with_ext("queueId", 0),
    )
    .await;
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(r.ext("offset"), Some("1"));

    // Heartbeats: SUB on each subscription they carry.
    let r = call(&consumer, heartbeat("g1", "orders")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    refused(
        &call(&consumer, heartbeat("g1", "closed")).await,
        "topic `closed`",
    );
    refused(
        &call(&producer, heartbeat("blockedGroup", "orders")).await,
        "group `blockedGroup`",
    );

    // The route service checks signatures too.
    let routes = broker.routes.expect("route service");
    let anonymous_routes = client(routes, None).await;
    let lookup =
        || RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "orders");
    refused(&call(&anonymous_routes, lookup()).await, "no AccessKey");
    let signed_routes = client(routes, Some(consumer_account())).await;
    assert_eq!(call(&signed_routes, lookup()).await.code, response::SUCCESS);

    // The client subcommands sign when given an account.
    let addr = broker.addr.to_string();
    let out = common::cli(&[
        "send",
        "--broker",
        &addr,
        "--topic",
        "orders",
        "--body",
        "from-cli",
        "--access-key",
        "producer1",
        "--secret-key",
        "secret-p1",
    ]);
    assert!(out.contains("sent msgId="), "{out}");
    let out = Command::new(common::binary())
        .args(["send", "--broker", &addr, "--topic", "orders"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("16"),
        "{out:?}"
    );
    let out = Command::new(common::binary())
        .args([
            "send", "--broker", &addr, "--topic", "orders", "--body", "from-env",
        ])
        .env("ROCKETMQ_ACCESS_KEY", "producer1")
        .env("ROCKETMQ_SECRET_KEY", "secret-p1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(max_offset(&admin, "orders").await, 3);
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_and_the_connection_stays_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), ACL);
    let admin = client(broker.addr, Some(admin_account())).await;
    ops::create_topic(&admin, "orders", 1)
        .await
        .expect("create");
    // Crafted requests go out as they are: this client does not sign.
    let raw = client(broker.addr, None).await;
    let signed = |topic: &str, body: &str| {
        let mut r = send_request(topic, body);
        producer_account().sign(&mut r);
        r
    };
    let mut cases: Vec<(&str, RemotingCommand)> = Vec::new();
    let mut garbled = signed("orders", "b");
    garbled
        .ext_fields
        .insert("Signature".into(), "not=base64!".into());
    cases.push(("garbled signature", garbled));
    let mut missing = signed("orders", "b");
    missing.ext_fields.remove("Signature");
    cases.push(("missing signature", missing));
    let mut truncated = signed("orders", "b");
    let sig = truncated.ext("Signature").expect("sig")[..8].to_owned();
    truncated.ext_fields.insert("Signature".into(), sig);
    cases.push(("truncated signature", truncated));
    let mut unknown = send_request("orders", "b");
    creds("nobody-ak", "secret-p1").sign(&mut unknown);
    cases.push(("unknown access key", unknown));
    let mut wrong_secret = send_request("orders", "b");
    creds("producer1", "secret-xx").sign(&mut wrong_secret);
    cases.push(("wrong secret", wrong_secret));
    let mut other_body = signed("orders", "what was signed");
    other_body.body = Bytes::from_static(b"something else");
    cases.push(("signature over a different body", other_body));
    let mut replayed = signed("orders", "b");
    replayed.ext_fields.insert("b".into(), "closed".into());
    replayed.ext_fields.insert("topic".into(), "closed".into());
    cases.push(("replayed for another topic", replayed));
    let mut refusals = Vec::new();
    for (what, req) in cases {
        let r = call(&raw, req).await;
        assert_eq!(r.code, response::NO_PERMISSION, "{what}: {:?}", r.remark);
        refusals.push((what, r.remark.unwrap_or_default()));
        // The same connection still serves a correct request.
        let ok = call(&raw, signed("orders", "good")).await;
        assert_eq!(ok.code, response::SUCCESS, "after {what}: {:?}", ok.remark);
    }
    // An unknown key and a wrong secret read the same.
    let remark_of = |what: &str| {
        refusals
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, r)| r.clone())
    };
    assert_eq!(remark_of("unknown access key"), remark_of("wrong secret"));
    // Only the 7 correct sends were stored.
    assert_eq!(max_offset(&admin, "orders").await, 7);
    assert_eq!(max_offset(&admin, "closed").await, 0);
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_reloaded_and_a_bad_one_keeps_the_last_good_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), ACL);
    let producer = client(broker.addr, Some(producer_account())).await;
    let anonymous = client(broker.addr, None).await;
    let r = call(&producer, send_request("orders", "1")).await;
    assert_eq!(r.code, response::SUCCESS);

    // A malformed file: logged, the accounts in force stay.
    std::fs::write(
        dir.path().join("plain_acl.yml"),
        "accounts:\n  - accessKey: [broken\n",
    )
    .expect("write");
    tokio::time::sleep(Duration::from_secs(3)).await; // three reload polls
    let r = call(&producer, send_request("orders", "2")).await;
    assert_eq!(
        r.code,
        response::SUCCESS,
        "last good accounts kept: {:?}",
        r.remark
    );

    // A good change takes effect: orders is closed to producer1, 127.0.0.1 is white-listed
    // (an unsigned request passes).
    let changed = ACL
        .replace("      - orders=PUB|SUB\n", "      - orders=DENY\n")
        .replace(
            "globalWhiteRemoteAddresses:\n",
            "globalWhiteRemoteAddresses:\n  - 127.0.0.*\n",
        );
    std::fs::write(dir.path().join("plain_acl.yml"), changed).expect("write");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(&anonymous, send_request("orders", "3")).await;
        if r.code == response::SUCCESS {
            break;
        }
        assert_eq!(r.code, response::NO_PERMISSION);
        assert!(Instant::now() < deadline, "the change never took effect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(broker);

    // Without the white list, the DENY holds.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let denied = ACL.replace("      - orders=PUB|SUB\n", "      - orders=DENY\n");
    let broker = start(dir2.path(), &denied);
    let producer = client(broker.addr, Some(producer_account())).await;
    refused(
        &call(&producer, send_request("orders", "x")).await,
        "topic `orders`",
    );
    drop(broker);
}

#[test]
fn a_malformed_or_missing_file_stops_the_start_naming_the_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("broker.conf");
    std::fs::write(&conf, format!("{}aclEnable=true\n", common::SMALL_STORE)).expect("conf");
    let run = || {
        Command::new(common::binary())
            .arg("-c")
            .arg(&conf)
            .args(["--store"])
            .arg(dir.path().join("store"))
            .args(["--port", "0", "--namesrv-port", "0"])
            .env("RUST_LOG", "warn")
            .output()
            .expect("run")
    };
    let out = run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain_acl.yml"), "{err}");
    std::fs::write(
        dir.path().join("plain_acl.yml"),
        "accounts:\n  - accessKey: producer1\n    secretKey: secret-p1\n    topicPerms:\n      - orders=WRITE\n",
    )
    .expect("write");
    let out = run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5"), "{err}");
    assert!(
        !dir.path().join("store/commitlog").exists(),
        "the store was not opened"
    );
}

async fn commit_log_end(c: &Client) -> String {
    ops::runtime_info(c).await.expect("runtime info")["commitLogMaxOffset"].clone()
}

/// The HA stream and a slave's metadata copy carry no signature: a master with ACL serves a
/// slave only from an address in `globalWhiteRemoteAddresses`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_is_served_only_from_a_white_listed_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (md, sd) = (dir.path().join("m"), dir.path().join("s"));
    std::fs::create_dir_all(&md).expect("mkdir");
    std::fs::create_dir_all(&sd).expect("mkdir");
    std::fs::write(md.join("plain_acl.yml"), ACL).expect("write acl");
    let master = RunningBroker::start(&md, "aclEnable=true\nbrokerRole=ASYNC_MASTER\n");
    let ha = master.ha.expect("HA address");
    let slave = RunningBroker::start(
        &sd,
        &format!("brokerRole=SLAVE\nbrokerId=1\nhaMasterAddress={ha}\n"),
    );
    let admin = client(master.addr, Some(admin_account())).await;
    let producer = client(master.addr, Some(producer_account())).await;
    for i in 0..20 {
        let r = call(&producer, send_request("orders", &format!("m{i}"))).await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    }
    let slave_client = client(slave.addr, None).await;
    // Several of the slave's reconnect attempts: none is served.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        commit_log_end(&slave_client).await,
        "0",
        "served without being listed"
    );

    let listed = ACL.replace(
        "globalWhiteRemoteAddresses:\n",
        "globalWhiteRemoteAddresses:\n  - 127.0.0.1\n",
    );
    std::fs::write(md.join("plain_acl.yml"), listed).expect("write acl");
    let want = commit_log_end(&admin).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while commit_log_end(&slave_client).await != want {
        assert!(
            Instant::now() < deadline,
            "the listed slave never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(slave);
    drop(master);
}
