//! Administration requests RocketMQ's tools send, against the real binary over TCP:
//! connection lists, who consumes a topic, deleting a subscription group, topic lists on
//! the route port — each answered with the body RocketMQ 4.9's broker sends.

mod common;

use broker_lite::client::ops;
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
    let before = broker_lite::state::metadata::now_millis();
    for (queue, n) in [(0, 3), (1, 1)] {
        for i in 0..n {
            let m = ops::Outgoing::new("StatsT", queue, format!("m{i}"));
            ops::send(&c, "p", &m).await.expect("send");
        }
    }
    let after = broker_lite::state::metadata::now_millis();
    until_dispatched(&c, "StatsT", 0, 3).await;
    until_dispatched(&c, "StatsT", 1, 1).await;

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
    // The runtime table carries what RocketMQ's tools read from it.
    let runtime = ops::runtime_info(&c).await.expect("runtime info");
    let earliest: i64 = runtime["earliestMessageTimeStamp"].parse().expect("a time");
    assert!((before..=after).contains(&earliest), "{runtime:?}");
    assert_eq!(runtime["msgPutTotalTodayNow"], "4");
    assert!(runtime["putTps"].parse::<f64>().is_ok_and(|t| t >= 0.0));
    assert_eq!(runtime["getTransferedTps"], runtime["getTransferredTps"]);
    assert!(runtime["commitLogDiskRatio"]
        .parse::<f64>()
        .is_ok_and(|r| (0.0..=1.0).contains(&r)));
    assert_eq!(runtime["brokerActive"], "true");
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

/// Joins `group` as a consumer of `topic` from `c`, as `client_id`.
async fn join(c: &Client, group: &str, topic: &str, client_id: &str) {
    let hb = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{ "topic": topic, "subString": "*", "subVersion": 1 }],
        }],
    });
    let r = call(
        c,
        RemotingCommand::request(request::HEART_BEAT).with_body(hb.to_string()),
    )
    .await;
    assert_eq!(r.code, response::SUCCESS);
}

/// The next request the broker sent `c` with `code` (others, like consumer-change
/// notices, are skipped).
async fn next_server_request(c: &Client, code: i32) -> RemotingCommand {
    let deadline = std::time::Instant::now() + T;
    loop {
        let next = c.server_requests.lock().expect("receiver").try_recv();
        match next {
            Ok(req) if req.code == code => return req,
            Ok(_) => {}
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no request {code} from the broker in time"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("connection gone: {e}"),
        }
    }
}

async fn committed(c: &Client, group: &str, topic: &str, queue_id: u32) -> Option<i64> {
    ops::queue_number(
        c,
        request::QUERY_CONSUMER_OFFSET,
        topic,
        queue_id,
        Some(group),
    )
    .await
    .expect("query offset")
}

fn reset(topic: &str, group: &str, timestamp: i64) -> RemotingCommand {
    RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET)
        .with_ext("topic", topic)
        .with_ext("group", group)
        .with_ext("timestamp", timestamp)
        .with_ext("isForce", true)
}

/// Waits until queue `queue_id` of `topic` holds `n` messages: the ConsumeQueue entry
/// follows the append (the dispatcher), so a send's receipt can come first.
async fn until_dispatched(c: &Client, topic: &str, queue_id: u32, n: i64) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let max = ops::queue_number(c, request::GET_MAX_OFFSET, topic, queue_id, None)
            .await
            .expect("max offset");
        if max >= Some(n) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}:{queue_id} never reached {n}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Sends five messages to queue 0 of a new two-queue topic, each stored a few ms after
/// the previous (so store times are distinct), and returns the store time of the fourth
/// (queue offset 3).
async fn five_messages(c: &Client, topic: &str) -> i64 {
    ops::create_topic(c, topic, 2).await.expect("topic");
    for i in 0..5 {
        ops::send(c, "p", &ops::Outgoing::new(topic, 0, format!("m{i}")))
            .await
            .expect("send");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    until_dispatched(c, topic, 0, 5).await;
    let pulled = ops::pull(
        c,
        ops::pull_request("peek", topic, 0, 3, 1, "*", None, None),
    )
    .await
    .expect("pull");
    pulled.messages.first().expect("offset 3").store_timestamp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offset_asks_online_consumers_and_refuses_an_offline_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), "");
    let c = Client::connect(broker.addr).await.expect("connect");
    let fourth_stored_at = five_messages(&c, "ResetT").await;
    ops::commit(&c, "rg", "ResetT", 0, 5).await.expect("commit");
    ops::commit(&c, "rg", "ResetT", 1, 0).await.expect("commit");

    // Nobody of rg is connected: RocketMQ 4.9 refuses, and nothing changes.
    let r = call(&c, reset("ResetT", "rg", fourth_stored_at)).await;
    assert_eq!(r.code, response::CONSUMER_NOT_ONLINE, "{:?}", r.remark);
    assert_eq!(
        r.remark.as_deref(),
        Some(format!("Consumer not online, so can not reset offset, Group: rg Topic: ResetT Timestamp: {fourth_stored_at}").as_str())
    );
    assert_eq!(committed(&c, "rg", "ResetT", 0).await, Some(5));
    let r = call(&c, reset("ResetT", "never-seen", fourth_stored_at)).await;
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("THe consumer group <never-seen> not exist")
    );

    // A member online: it is told the new offsets (queue 0 back to the message stored at
    // `fourth_stored_at`), and so is the tool.
    let member = Client::connect(broker.addr).await.expect("connect");
    join(&member, "rg", "ResetT", "127.0.0.1@member").await;
    let r = call(&c, reset("ResetT", "rg", fourth_stored_at)).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let answered: Vec<(u64, u64)> = queue_keyed(&r.body, "offsetTable")
        .into_iter()
        .map(|(_, q, _, v)| (q, v.as_u64().expect("offset")))
        .collect();
    assert_eq!(answered, vec![(0, 3), (1, 0)]);
    let told = next_server_request(&member, request::RESET_CONSUMER_CLIENT_OFFSET).await;
    assert_eq!(told.ext("group"), Some("rg"));
    assert_eq!(told.ext("topic"), Some("ResetT"));
    assert_eq!(
        told.ext("timestamp"),
        Some(fourth_stored_at.to_string().as_str())
    );
    assert_eq!(told.body, r.body, "the member gets the same table");
    assert_eq!(
        committed(&c, "rg", "ResetT", 0).await,
        Some(5),
        "RocketMQ 4.9's broker leaves the commit to the consumer"
    );
    // -1: the end of each queue.
    let r = call(&c, reset("ResetT", "rg", -1)).await;
    let ends: Vec<u64> = queue_keyed(&r.body, "offsetTable")
        .into_iter()
        .map(|(_, _, _, v)| v.as_u64().expect("offset"))
        .collect();
    assert_eq!(ends, vec![5, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_reset_commits_also_for_an_offline_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), "useServerSideResetOffset=true");
    let c = Client::connect(broker.addr).await.expect("connect");
    let fourth_stored_at = five_messages(&c, "ResetS").await;
    ops::commit(&c, "sg", "ResetS", 0, 5).await.expect("commit");

    let r = call(&c, reset("ResetS", "sg", fourth_stored_at)).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(committed(&c, "sg", "ResetS", 0).await, Some(3));
    assert_eq!(committed(&c, "sg", "ResetS", 1).await, Some(0));
    // RocketMQ 5's header: one queue, an exact offset, checked against the queue's range.
    let exact = |offset: i64| {
        reset("ResetS", "sg", -1)
            .with_ext("queueId", 0)
            .with_ext("offset", offset)
    };
    let r = call(&c, exact(1)).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(committed(&c, "sg", "ResetS", 0).await, Some(1));
    let r = call(&c, exact(99)).await;
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("Target offset 99 not in consume queue range [0-5]")
    );
    assert_eq!(committed(&c, "sg", "ResetS", 0).await, Some(1), "unchanged");
    let r = call(&c, reset("NoSuchT", "sg", -1)).await;
    assert_eq!(r.code, response::SYSTEM_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_info_is_forwarded_to_the_client_and_its_answer_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), "");
    let admin = Client::connect(broker.addr).await.expect("connect");
    ops::create_topic(&admin, "RunT", 1).await.expect("topic");
    let member = Client::connect(broker.addr).await.expect("connect");
    join(&member, "run-g", "RunT", "127.0.0.1@runner").await;

    let answering = tokio::spawn(async move {
        let asked = next_server_request(&member, request::GET_CONSUMER_RUNNING_INFO).await;
        assert_eq!(asked.ext("clientId"), Some("127.0.0.1@runner"));
        assert_eq!(asked.ext("jstackEnable"), Some("false"));
        let info =
            r#"{"properties":{"PROP_CONSUME_TYPE":"CONSUME_PASSIVELY"},"subscriptionSet":[]}"#;
        member
            .respond(asked.response(response::SUCCESS).with_body(info))
            .await
            .expect("respond");
        member
    });
    let ask = |client_id: &str| {
        RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO)
            .with_ext("consumerGroup", "run-g")
            .with_ext("clientId", client_id)
            .with_ext("jstackEnable", false)
    };
    let r = call(&admin, ask("127.0.0.1@runner")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(
        body(&r)["properties"]["PROP_CONSUME_TYPE"],
        "CONSUME_PASSIVELY"
    );
    let _member = answering.await.expect("member task");

    let r = call(&admin, ask("127.0.0.1@nobody")).await;
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("The Consumer <run-g> <127.0.0.1@nobody> not online")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_consume_queue_reads_units_within_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = RunningBroker::start(dir.path(), "");
    let c = Client::connect(broker.addr).await.expect("connect");
    five_messages(&c, "CqT").await;
    join(&c, "cq-g", "CqT", "127.0.0.1@cq").await;
    let query = |queue_id: u32, index: u64, count: u32| {
        RemotingCommand::request(request::QUERY_CONSUME_QUEUE)
            .with_ext("topic", "CqT")
            .with_ext("queueId", queue_id)
            .with_ext("index", index)
            .with_ext("count", count)
            .with_ext("consumerGroup", "cq-g")
    };
    let r = call(&c, query(0, 1, 2)).await;
    let b = body(&r);
    assert_eq!(
        (b["minQueueIndex"].as_u64(), b["maxQueueIndex"].as_u64()),
        (Some(0), Some(5))
    );
    assert_eq!(b["subscriptionData"]["subString"], "*");
    let units = b["queueData"].as_array().expect("queueData");
    assert_eq!(units.len(), 2);
    let (first, second) = (&units[0], &units[1]);
    let size = first["physicSize"].as_i64().expect("size");
    assert!(size > 0);
    assert_eq!(
        second["physicOffset"].as_i64(),
        first["physicOffset"].as_i64().map(|o| o + size),
        "consecutive records of one queue, nothing else sent in between"
    );
    // Past the end: SUCCESS without units, saying so.
    let r = call(&c, query(0, 10, 2)).await;
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(r.remark.as_deref(), Some("Index 10 of 0@CqT is not exist!"));
    let r = call(&c, query(9, 0, 2)).await;
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("9@CqT is not exist!"));
}

fn update(text: &str) -> RemotingCommand {
    RemotingCommand::request(request::UPDATE_BROKER_CONFIG).with_body(text.to_owned())
}

/// brokerPermission as GET_BROKER_CONFIG reports it, and the update counter.
async fn permission_in_config(c: &Client) -> (String, u64) {
    let r = call(c, RemotingCommand::request(request::GET_BROKER_CONFIG)).await;
    assert_eq!(r.code, response::SUCCESS);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let perm = text
        .lines()
        .find_map(|l| l.strip_prefix("brokerPermission="))
        .expect("brokerPermission listed")
        .to_owned();
    let version: Value = serde_json::from_str(r.ext("version").expect("version")).expect("JSON");
    (perm, version["counter"].as_u64().expect("counter"))
}

/// The perm the route service advertises for `topic`.
async fn advertised_perm(routes: &Client, topic: &str) -> i64 {
    let r = call(
        routes,
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic),
    )
    .await;
    body(&r)["queueDatas"][0]["perm"].as_i64().expect("perm")
}

/// A broker in `dir`, a client of its broker port and one of its route service.
async fn broker_with_routes(dir: &std::path::Path) -> (RunningBroker, Client, Client) {
    let broker = RunningBroker::start(dir, "");
    let c = Client::connect(broker.addr).await.expect("connect");
    let routes = Client::connect(broker.routes.expect("route service"))
        .await
        .expect("connect");
    (broker, c, routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_settings_change_at_once_persist_and_refuse_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, c, routes) = broker_with_routes(dir.path()).await;
    ops::create_topic(&c, "PermT", 1).await.expect("topic");
    let ordered = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", "OrderedT")
        .with_ext("readQueueNums", 1)
        .with_ext("writeQueueNums", 1)
        .with_ext("order", true);
    assert_eq!(call(&c, ordered).await.code, response::SUCCESS);
    assert_eq!(advertised_perm(&routes, "PermT").await, 6);
    assert_eq!(permission_in_config(&c).await, ("6".to_owned(), 0));

    // Read-only: routes say so, ordered sends are refused, others (clients with an old
    // route) still land, pulls go on.
    let r = call(&c, update("brokerPermission=4\n")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(advertised_perm(&routes, "PermT").await, 4);
    assert_eq!(permission_in_config(&c).await, ("4".to_owned(), 1));
    let refused = c
        .invoke(
            ops::send_request("p", &ops::Outgoing::new("OrderedT", 0, "o")),
            T,
        )
        .await
        .expect("answer");
    assert_eq!(refused.code, response::NO_PERMISSION);
    assert_eq!(
        refused.remark.as_deref(),
        Some("the broker[127.0.0.1] sending message is forbidden")
    );
    ops::send(&c, "p", &ops::Outgoing::new("PermT", 0, "still taken"))
        .await
        .expect("a plain topic still takes sends");
    until_dispatched(&c, "PermT", 0, 1).await;
    let pull = ops::pull_request("g", "PermT", 0, 0, 8, "*", None, None);
    assert_eq!(
        ops::pull(&c, pull.clone()).await.expect("pull").code,
        response::SUCCESS
    );
    let on_disk = std::fs::read_to_string(dir.path().join("broker.conf")).expect("conf");
    assert!(
        on_disk.lines().any(|l| l == "brokerPermission=4"),
        "{on_disk}"
    );
    assert!(
        on_disk.contains("mappedFileSizeCommitLog"),
        "other lines kept"
    );

    // Write-only: pulls refused.
    assert_eq!(
        call(&c, update("brokerPermission=2")).await.code,
        response::SUCCESS
    );
    let r = c.invoke(pull.clone(), T).await.expect("answer");
    assert_eq!(r.code, response::NO_PERMISSION);
    assert_eq!(
        r.remark.as_deref(),
        Some("the broker[127.0.0.1] pulling message is forbidden")
    );

    // All or nothing: a fixed key, a bad value or a line that is not a pair refuses the
    // whole request; nothing changes, in memory or on disk.
    for bad in [
        "listenPort=1234",
        "slaveReadEnable=true\nstorePathRootDir=/elsewhere",
        "brokerPermission=abc",
        "brokerPermission=9",
        "not a pair",
    ] {
        let r = call(&c, update(bad)).await;
        assert_eq!(r.code, response::SYSTEM_ERROR, "{bad}");
        assert!(r.remark.is_some(), "{bad}");
    }
    let r = call(&c, update("listenPort=1234")).await;
    assert!(r
        .remark
        .as_deref()
        .is_some_and(|m| m.contains("cannot be changed while the broker runs")));
    assert_eq!(permission_in_config(&c).await, ("2".to_owned(), 2));
    let cfg = call(&c, RemotingCommand::request(request::GET_BROKER_CONFIG)).await;
    assert!(String::from_utf8_lossy(&cfg.body).contains("slaveReadEnable=false"));
    let persisted = std::fs::read_to_string(dir.path().join("broker.conf")).expect("conf");
    assert!(!persisted.contains("slaveReadEnable"), "{persisted}");

    // A restart reads the persisted value.
    drop((c, routes));
    let (clean, _) = broker.terminate();
    assert!(clean);
    let broker = RunningBroker::start(dir.path(), &persisted);
    let c = Client::connect(broker.addr).await.expect("connect");
    assert_eq!(permission_in_config(&c).await, ("2".to_owned(), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_is_gone_with_its_queues_and_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, c, routes) = broker_with_routes(dir.path()).await;
    five_messages(&c, "DelT").await;
    ops::commit(&c, "dg", "DelT", 0, 4).await.expect("commit");
    assert_eq!(committed(&c, "dg", "DelT", 0).await, Some(4));
    let delete = |topic: &str| {
        RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER).with_ext("topic", topic)
    };

    let r = call(&c, delete("DelT")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert!(!ops::topics(&c)
        .await
        .expect("topics")
        .topic_config_table
        .contains_key("DelT"));
    let r = call(
        &routes,
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "DelT"),
    )
    .await;
    assert_eq!(r.code, response::TOPIC_NOT_EXIST);
    let all = call(
        &c,
        RemotingCommand::request(request::GET_ALL_CONSUMER_OFFSET),
    )
    .await;
    assert_eq!(all.code, response::SUCCESS);
    assert!(
        !String::from_utf8_lossy(&all.body).contains("DelT@dg"),
        "offsets go with it"
    );
    let topic_dir = dir.path().join("store").join("consumequeue").join("DelT");
    let deadline = std::time::Instant::now() + T;
    while topic_dir.join("0").exists() {
        assert!(std::time::Instant::now() < deadline, "queue 0's files stay");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Created again, the topic starts from queue offset 0.
    ops::create_topic(&c, "DelT", 2).await.expect("topic");
    let sent = ops::send(&c, "p", &ops::Outgoing::new("DelT", 0, "new life"))
        .await
        .expect("send");
    assert_eq!(sent.queue_offset, 0);

    // rocketmq-rust's list form (code 5002, what rocketmq-admin-cli sends): every name is
    // checked before any goes; then the route port's DELETE_TOPIC_IN_NAMESRV is answered.
    ops::create_topic(&c, "ListA", 1).await.expect("topic");
    ops::create_topic(&c, "ListB", 1).await.expect("topic");
    let list = |topics: &[&str]| {
        RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER_LIST)
            .with_body(serde_json::json!({ "topicList": topics }).to_string())
    };
    let r = call(&c, list(&["ListA", "TBW102"])).await;
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(
        ops::topics(&c)
            .await
            .expect("topics")
            .topic_config_table
            .contains_key("ListA"),
        "nothing deleted"
    );
    let r = call(&c, list(&["ListA", "ListB"])).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let left = ops::topics(&c).await.expect("topics").topic_config_table;
    assert!(!left.contains_key("ListA") && !left.contains_key("ListB"));
    let r = call(
        &routes,
        RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV).with_ext("topic", "ListA"),
    )
    .await;
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(call(&c, list(&[])).await.code, response::SUCCESS);
    assert_eq!(
        call(
            &c,
            RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER_LIST).with_body("{")
        )
        .await
        .code,
        response::SYSTEM_ERROR,
        "a body that does not parse"
    );

    for system in ["TBW102", "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC"] {
        let r = call(&c, delete(system)).await;
        assert_eq!(r.code, response::SYSTEM_ERROR, "{system}");
        assert_eq!(
            r.remark,
            Some(format!(
                "The topic[{system}] is conflict with system topic."
            ))
        );
    }
}
