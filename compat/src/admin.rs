//! `admin`: the client's own admin API (`DefaultMQAdminExt`) against broker-lite. A
//! producer and a push consumer run, then each admin request's answer is checked against
//! what they are: connection lists (203, 204), who consumes the topic (300), topic lists
//! (206, 224), the configuration (26), the cluster (106), each queue's offsets (202) and the
//! group's progress through them (208), a consumer's running info asked through the broker
//! (307), a queue's units (321), the group rewound while it runs (222), live configuration
//! changes (25), a subscription group deleted with its offsets (207), and the topic deleted
//! (215).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    BrokerAdmin, ClientRuntime, ConsumerAdmin, DefaultMQAdminExt, DefaultMQProducer,
    DefaultMQPushConsumer, OffsetAdmin, RouteAdmin, TopicAdmin,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;

use crate::{message, record, Seen};

type Res = Result<(), Box<dyn std::error::Error>>;

fn check(what: &str, ok: bool, detail: impl std::fmt::Debug) -> Res {
    if ok {
        println!("COMPAT admin: {what}: ok");
        Ok(())
    } else {
        Err(format!("{what}: unexpected answer {detail:?}").into())
    }
}

pub async fn run(
    runtime: Arc<ClientRuntime>,
    namesrv: String,
    topic: String,
    group: String,
    broker_addr: String,
    cluster: String,
) -> Res {
    let producer_group = format!("{group}_producer");
    let mut producer = DefaultMQProducer::builder(runtime.clone())
        .producer_group(producer_group.clone())
        .name_server_addr(namesrv.clone())
        .build();
    producer.start().await?;
    for i in 0..5 {
        let body = format!("admin-{i}");
        producer
            .send_with_timeout(message(&topic, "TagA", &body, &body), 10_000)
            .await?;
    }
    let mut consumer = DefaultMQPushConsumer::builder(runtime.clone())
        .consumer_group(group.clone())
        .name_server_addr(namesrv.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    let seen = record(&mut consumer, &topic, "TagA || TagB").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().map(|s| s.len()).unwrap_or(0) < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut admin = DefaultMQAdminExt::new(runtime.clone());
    admin.set_namesrv_addr(namesrv.clone());
    admin.start().await?;

    let cc = admin
        .examine_consumer_connection_info(group.clone().into(), Some(broker_addr.clone().into()))
        .await?;
    let sub = cc.get_subscription_table().get(topic.as_str()).cloned();
    check(
        "GET_CONSUMER_CONNECTION_LIST (203)",
        cc.get_connection_set().len() == 1
            && sub
                .as_ref()
                .is_some_and(|s| s.sub_string.as_str() == "TagA || TagB" && s.tags_set.len() == 2),
        (&cc.get_connection_set(), &sub),
    )?;
    let pc = admin
        .examine_producer_connection_info(producer_group.clone().into(), topic.clone().into())
        .await?;
    check(
        "GET_PRODUCER_CONNECTION_LIST (204)",
        pc.connection_set().len() == 1,
        pc.connection_set(),
    )?;
    let who = admin
        .query_topic_consume_by_who(topic.clone().into())
        .await?;
    check(
        "QUERY_TOPIC_CONSUME_BY_WHO (300)",
        who.group_list.iter().any(|g| g.as_str() == group),
        &who.group_list,
    )?;
    let all = admin.fetch_all_topic_list().await?;
    check(
        "GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206)",
        all.topic_list.iter().any(|t| t.as_str() == topic),
        &all.topic_list,
    )?;
    let mine = admin
        .fetch_topics_by_cluster(cluster.clone().into())
        .await?;
    check(
        "GET_TOPICS_BY_CLUSTER (224)",
        mine.topic_list.iter().any(|t| t.as_str() == topic),
        &mine.topic_list,
    )?;
    let config = admin.get_broker_config(broker_addr.clone().into()).await?;
    check(
        "GET_BROKER_CONFIG (26)",
        config.get("brokerClusterName").map(|v| v.as_str()) == Some(cluster.as_str())
            && config.get("listenPort").map(|v| v.as_str()) == broker_addr.rsplit(':').next(),
        (
            config.get("brokerClusterName"),
            config.get("listenPort"),
            config.len(),
        ),
    )?;
    let info = admin.examine_broker_cluster_info().await?;
    check(
        "GET_BROKER_CLUSTER_INFO (106)",
        info.cluster_addr_table
            .as_ref()
            .and_then(|t| t.get(cluster.as_str()))
            .is_some_and(|groups| !groups.is_empty()),
        &info.cluster_addr_table,
    )?;

    let stats = admin
        .examine_topic_stats(topic.clone().into(), Some(broker_addr.clone().into()))
        .await?;
    let ranges: Vec<(i32, i64, i64)> = stats
        .get_offset_table()
        .iter()
        .filter(|(q, _)| q.topic_str() == topic)
        .map(|(q, o)| (q.queue_id(), o.get_min_offset(), o.get_max_offset()))
        .collect();
    let stored: i64 = ranges.iter().map(|(_, min, max)| max - min).sum();
    check(
        "GET_TOPIC_STATS_INFO (202)",
        !ranges.is_empty()
            && stored >= 5
            && stats
                .get_offset_table()
                .values()
                .all(|o| o.get_max_offset() == 0 || o.get_last_update_timestamp() > 0),
        &ranges,
    )?;
    let stored_max: i64 = ranges.iter().map(|(_, _, max)| max).sum();
    // The consumer commits what it consumed every few seconds: wait for no lag.
    let deadline = Instant::now() + Duration::from_secs(30);
    let progress = loop {
        let cs = admin
            .examine_consume_stats(
                group.clone().into(),
                Some(topic.clone().into()),
                None,
                Some(broker_addr.clone().into()),
                None,
            )
            .await?;
        let per_queue: Vec<(i32, i64, i64)> = cs
            .get_offset_table()
            .iter()
            .map(|(q, o)| (q.queue_id(), o.get_broker_offset(), o.get_consumer_offset()))
            .collect();
        let caught_up = per_queue.iter().all(|(_, b, c)| b == c);
        if caught_up || Instant::now() > deadline {
            break per_queue;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    check(
        "GET_CONSUME_STATS (208)",
        progress.len() == ranges.len()
            && progress.iter().map(|(_, b, _)| b).sum::<i64>() == stored_max
            && progress.iter().all(|(_, b, c)| b == c),
        &progress,
    )?;

    let client_id = cc
        .get_connection_set()
        .iter()
        .next()
        .map(|c| c.get_client_id())
        .ok_or("no consumer connection")?;
    let running = admin
        .get_consumer_running_info(group.clone().into(), client_id.clone(), false, None)
        .await?;
    check(
        "GET_CONSUMER_RUNNING_INFO (307), answered by the consumer through the broker",
        running
            .subscription_set
            .iter()
            .any(|s| s.topic.as_str() == topic),
        (&running.subscription_set, running.properties.len()),
    )?;
    let units = admin
        .query_consume_queue(
            broker_addr.clone().into(),
            topic.clone().into(),
            0,
            0,
            32,
            group.clone().into(),
        )
        .await?;
    let queue0 = ranges
        .iter()
        .find(|(q, ..)| *q == 0)
        .copied()
        .unwrap_or_default();
    let listed = units.queue_data.as_ref().map_or(0, Vec::len) as i64;
    check(
        "QUERY_CONSUME_QUEUE (321)",
        units.min_queue_index == queue0.1
            && units.max_queue_index == queue0.2
            && listed == (queue0.2 - queue0.1).min(32)
            && units.subscription_data.is_some(),
        (units.min_queue_index, units.max_queue_index, listed),
    )?;
    // Back to the start while the consumer runs: the broker tells it, and it consumes
    // every message a second time.
    let table = admin
        .reset_offset_by_timestamp(None, topic.clone().into(), group.clone().into(), 0, true)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let redelivered = |seen: &Seen| {
        seen.lock()
            .map(|s| (0..5).all(|i| s.get(&format!("admin-{i}")).is_some_and(|(n, _)| *n >= 2)))
            .unwrap_or(false)
    };
    while !redelivered(&seen) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check(
        "INVOKE_BROKER_TO_RESET_OFFSET (222), the consumer rewound by the broker",
        table.values().all(|&o| o == 0) && !table.is_empty() && redelivered(&seen),
        &table,
    )?;

    // Live configuration: a harmless key, then draining the broker (read-only) and back.
    let set = |k: &str, v: &str| {
        std::collections::HashMap::from([(k.to_owned().into(), v.to_owned().into())])
    };
    admin
        .update_broker_config(broker_addr.clone().into(), set("slaveReadEnable", "true"))
        .await?;
    admin
        .update_broker_config(broker_addr.clone().into(), set("brokerPermission", "4"))
        .await?;
    let config = admin.get_broker_config(broker_addr.clone().into()).await?;
    let route = admin.examine_topic_route_info(topic.clone().into()).await?;
    let perms: Vec<u32> = route
        .as_ref()
        .map(|r| r.queue_datas.iter().map(|q| q.perm).collect())
        .unwrap_or_default();
    check(
        "UPDATE_BROKER_CONFIG (25): live keys, the route drained",
        config.get("slaveReadEnable").map(|v| v.as_str()) == Some("true")
            && config.get("brokerPermission").map(|v| v.as_str()) == Some("4")
            && !perms.is_empty()
            && perms.iter().all(|&p| p == 4),
        (
            config.get("slaveReadEnable"),
            config.get("brokerPermission"),
            &perms,
        ),
    )?;
    admin
        .update_broker_config(broker_addr.clone().into(), set("brokerPermission", "6"))
        .await?;
    let refused = admin
        .update_broker_config(broker_addr.clone().into(), set("listenPort", "1"))
        .await;
    check(
        "UPDATE_BROKER_CONFIG (25): a key fixed at start refused",
        refused.is_err(),
        refused.err().map(|e| e.to_string()),
    )?;

    consumer.shutdown().await;
    producer.shutdown().await;
    // The consumer's last offset commit and its unregistration are oneway: wait until the
    // broker no longer lists the group online, so that nothing of it arrives after the
    // deletion.
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin
        .examine_consumer_connection_info(group.clone().into(), Some(broker_addr.clone().into()))
        .await
        .is_ok()
    {
        if Instant::now() > deadline {
            return Err("the consumer stayed online after its shutdown".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    admin
        .delete_subscription_group(broker_addr.clone().into(), group.clone().into(), Some(true))
        .await?;
    let who = admin
        .query_topic_consume_by_who(topic.clone().into())
        .await?;
    check(
        "DELETE_SUBSCRIPTIONGROUP (207) with its offsets",
        !who.group_list.iter().any(|g| g.as_str() == group),
        &who.group_list,
    )?;
    admin
        .delete_topic_in_broker(
            std::collections::HashSet::from([broker_addr.clone().into()]),
            topic.clone().into(),
        )
        .await?;
    let all = admin.fetch_all_topic_list().await?;
    check(
        "DELETE_TOPIC_IN_BROKER (215)",
        !all.topic_list.iter().any(|t| t.as_str() == topic),
        &all.topic_list,
    )?;
    println!("COMPAT OK");
    Ok(())
}
