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
