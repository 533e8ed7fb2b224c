//! Administration requests RocketMQ's tools send, against the real binary over TCP:
//! connection lists, who consumes a topic, deleting a subscription group, topic lists on
//! the route port — each answered with the body RocketMQ 4.9's broker sends.

mod common;

use broker_lite::ops;
use broker_lite::remoting::codes::{request, response};
use broker_lite::{Client, RemotingCommand};
use common::RunningBroker;
use serde_json::Value;

const T: std::time::Duration = std::time::Duration::from_secs(10);

async fn call(c: &Client, req: RemotingCommand) -> RemotingCommand {
    c.invoke(req, T).await.expect("answer")
}

fn body(r: &RemotingCommand) -> Value {
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    serde_json::from_slice(&r.body).expect("JSON body")
}

fn heartbeat() -> RemotingCommand {
    let data = serde_json::json!({
        "clientID": "127.0.0.1@admin-test",
        "producerDataSet": [{ "groupName": "pg1" }],
        "consumerDataSet": [{
            "groupName": "cg1",
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "subscriptionDataSet": [{ "topic": "AdminT", "subString": "TagA || TagB", "subVersion": 7 }],
        }],
    });
    RemotingCommand::request(request::HEART_BEAT).with_body(data.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lists_consumers_of_a_topic_and_group_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), "");
    let c = Client::connect(broker.addr).await.expect("connect");
    ops::create_topic(&c, "AdminT", 2).await.expect("topic");
    assert_eq!(call(&c, heartbeat()).await.code, response::SUCCESS);

    let r = call(
        &c,
        RemotingCommand::request(request::GET_PRODUCER_CONNECTION_LIST)
            .with_ext("producerGroup", "pg1"),
    )
    .await;
    let set = &body(&r)["connectionSet"];
    assert_eq!(set.as_array().map(Vec::len), Some(1));
    assert_eq!(set[0]["clientId"], "127.0.0.1@admin-test");
    assert_eq!(set[0]["language"], "JAVA");
    assert!(set[0]["clientAddr"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    let r = call(
        &c,
        RemotingCommand::request(request::GET_PRODUCER_CONNECTION_LIST)
            .with_ext("producerGroup", "nobody"),
    )
    .await;
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("the producer group[nobody] not exist")
    );

    let r = call(
        &c,
        RemotingCommand::request(request::GET_CONSUMER_CONNECTION_LIST)
            .with_ext("consumerGroup", "cg1"),
    )
    .await;
    let cc = body(&r);
    assert_eq!(cc["messageModel"], "CLUSTERING");
    assert_eq!(cc["consumeType"], "CONSUME_PASSIVELY");
    assert_eq!(cc["consumeFromWhere"], "CONSUME_FROM_FIRST_OFFSET");
    assert_eq!(
        cc["subscriptionTable"]["AdminT"]["subString"],
        "TagA || TagB"
    );
    assert_eq!(cc["connectionSet"][0]["clientId"], "127.0.0.1@admin-test");
    let r = call(
        &c,
        RemotingCommand::request(request::GET_CONSUMER_CONNECTION_LIST)
            .with_ext("consumerGroup", "gone"),
    )
    .await;
    assert_eq!(r.code, response::CONSUMER_NOT_ONLINE);

    // cg2 only committed an offset (and has a subscription group configuration).
    ops::commit(&c, "cg2", "AdminT", 0, 0)
        .await
        .expect("commit");
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(serde_json::json!({ "groupName": "cg2" }).to_string());
    assert_eq!(call(&c, create).await.code, response::SUCCESS);
    let by_who = || {
        RemotingCommand::request(request::QUERY_TOPIC_CONSUME_BY_WHO).with_ext("topic", "AdminT")
    };
    let groups = body(&call(&c, by_who()).await)["groupList"].clone();
    assert_eq!(groups, serde_json::json!(["cg1", "cg2"]));

    let delete = RemotingCommand::request(request::DELETE_SUBSCRIPTIONGROUP)
        .with_ext("groupName", "cg2")
        .with_ext("removeOffset", true);
    assert_eq!(call(&c, delete).await.code, response::SUCCESS);
    let groups = body(&call(&c, by_who()).await)["groupList"].clone();
    assert_eq!(groups, serde_json::json!(["cg1"]), "offsets removed");
    let all = body(
        &call(
            &c,
            RemotingCommand::request(request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
        )
        .await,
    );
    assert!(all["subscriptionGroupTable"].get("cg2").is_none(), "{all}");
    assert!(all["subscriptionGroupTable"].get("cg1").is_some());

    // The route port lists topics for the tools.
    let routes = Client::connect(broker.routes.expect("route port"))
        .await
        .expect("connect");
    let list = body(
        &call(
            &routes,
            RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
        )
        .await,
    );
    assert!(
        list["topicList"]
            .as_array()
            .is_some_and(|t| t.contains(&Value::from("AdminT"))),
        "{list}"
    );
    let by_cluster = |cluster: &str| {
        RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER).with_ext("cluster", cluster)
    };
    let list = body(&call(&routes, by_cluster("DefaultCluster")).await);
    assert!(list["topicList"]
        .as_array()
        .is_some_and(|t| t.contains(&Value::from("AdminT"))));
    let list = body(&call(&routes, by_cluster("OtherCluster")).await);
    assert_eq!(list["topicList"], serde_json::json!([]));

    // The configuration as key=value lines that read back as a broker.conf.
    let r = call(&c, RemotingCommand::request(request::GET_BROKER_CONFIG)).await;
    assert_eq!(r.code, response::SUCCESS);
    let text = String::from_utf8(r.body.to_vec()).expect("utf-8");
    assert!(text.contains("brokerName=broker-a\n"), "{text}");
    assert!(text.contains(&format!("listenPort={}\n", broker.addr.port())));
    assert!(text.contains("flushDiskType=ASYNC_FLUSH\n"));
    let mut parsed = broker_lite::BrokerConfig::default();
    assert_eq!(parsed.apply(&text).expect("parses"), Vec::<String>::new());
    let version: Value = serde_json::from_str(r.ext("version").expect("version")).expect("json");
    assert!(version["timestamp"].as_i64().is_some_and(|t| t > 0));
}

/// The entries of a map that RocketMQ's fastjson keys by `MessageQueue` objects
/// (`"offsetTable":{{...}:{...},...}`), read independently of the broker's writer: each key
/// and value is read as one JSON value. Returns (topic, queueId, brokerName, value) sorted.
fn queue_keyed(body: &[u8], field: &str) -> Vec<(String, u64, String, Value)> {
    let text = std::str::from_utf8(body).expect("UTF-8 body");
    let start = text
        .find(&format!("\"{field}\":{{"))
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        + field.len()
        + 4;
    let mut rest = &text[start..];
    let mut out = Vec::new();
    let next_value = |s: &str| -> (Value, usize) {
        let mut it = serde_json::Deserializer::from_str(s).into_iter::<Value>();
        let v = it.next().expect("a value").expect("valid JSON");
        (v, it.byte_offset())
    };
    while !rest.starts_with('}') {
        let (key, used) = next_value(rest);
        rest = rest[used..].strip_prefix(':').expect("':' after the key");
        let (value, used) = next_value(rest);
        rest = &rest[used..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
        out.push((
            key["topic"].as_str().expect("topic").to_owned(),
            key["queueId"].as_u64().expect("queueId"),
            key["brokerName"].as_str().expect("brokerName").to_owned(),
            value,
        ));
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_and_consume_stats_report_each_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), "brokerName=stats-b");
    let c = Client::connect(broker.addr).await.expect("connect");
    ops::create_topic(&c, "StatsT", 2).await.expect("topic");
    let before = broker_lite::metadata::now_millis();
    for (queue, n) in [(0, 3), (1, 1)] {
        for i in 0..n {
            let m = ops::Outgoing::new("StatsT", queue, format!("m{i}"));
            ops::send(&c, "p", &m).await.expect("send");
        }
    }
    let after = broker_lite::metadata::now_millis();

    let r = call(
        &c,
        RemotingCommand::request(request::GET_TOPIC_STATS_INFO).with_ext("topic", "StatsT"),
    )
    .await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let table = queue_keyed(&r.body, "offsetTable");
    assert_eq!(table.len(), 2, "one entry per write queue");
    for (i, (max, ..)) in [(3, 0), (1, 0)].iter().enumerate() {
        let (topic, queue, broker_name, v) = &table[i];
        assert_eq!((topic.as_str(), *queue), ("StatsT", i as u64));
        assert_eq!(broker_name, "stats-b");
        assert_eq!(v["minOffset"], 0);
        assert_eq!(v["maxOffset"], *max);
        let ts = v["lastUpdateTimestamp"].as_i64().expect("timestamp");
        assert!(
            (before..=after).contains(&ts),
            "{ts} not in {before}..={after}"
        );
    }
    let r = call(
        &c,
        RemotingCommand::request(request::GET_TOPIC_STATS_INFO).with_ext("topic", "NoSuchT"),
    )
    .await;
    assert_eq!(r.code, response::TOPIC_NOT_EXIST);
    assert_eq!(r.remark.as_deref(), Some("topic[NoSuchT] not exist"));

    // Group sg consumed two of queue 0's three messages and nothing of queue 1.
    ops::commit(&c, "sg", "StatsT", 0, 2).await.expect("commit");
    let stats = |topic: Option<&str>| {
        let mut req =
            RemotingCommand::request(request::GET_CONSUME_STATS).with_ext("consumerGroup", "sg");
        if let Some(t) = topic {
            req = req.with_ext("topic", t);
        }
        req
    };
    for req in [stats(Some("StatsT")), stats(None)] {
        let r = call(&c, req).await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        let table = queue_keyed(&r.body, "offsetTable");
        assert_eq!(table.len(), 2, "{}", String::from_utf8_lossy(&r.body));
        let q0 = &table[0].3;
        assert_eq!(
            (q0["brokerOffset"].as_u64(), q0["consumerOffset"].as_u64()),
            (Some(3), Some(2))
        );
        let last = q0["lastTimestamp"].as_i64().expect("lastTimestamp");
        assert!(
            (before..=after).contains(&last),
            "the consumed message's store time"
        );
        let q1 = &table[1].3;
        assert_eq!(
            (q1["brokerOffset"].as_u64(), q1["consumerOffset"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(q1["lastTimestamp"], 0, "nothing consumed there");
        let tps: Value = {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            let at = text.find("\"consumeTps\":").expect("consumeTps") + 13;
            let mut it = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
            it.next().expect("value").expect("number")
        };
        assert!(tps.as_f64().is_some_and(|t| t >= 0.0), "{tps}");
    }

    // Once the group's members subscribe only to another topic, StatsT is left out.
    let hb = serde_json::json!({
        "clientID": "127.0.0.1@stats-test",
        "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": "sg",
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "subscriptionDataSet": [{ "topic": "Elsewhere", "subString": "*", "subVersion": 1 }],
        }],
    });
    let r = call(
        &c,
        RemotingCommand::request(request::HEART_BEAT).with_body(hb.to_string()),
    )
    .await;
    assert_eq!(r.code, response::SUCCESS);
    let r = call(&c, stats(None)).await;
    assert!(queue_keyed(&r.body, "offsetTable").is_empty());
}
