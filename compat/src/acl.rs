//! `acl`: the client's own ACL hook (`AclClientRPCHook`, signing every request with an
//! account) against a broker with `aclEnable=true`. With a PUB|SUB account it sends and
//! consumes every message exactly once; it is refused on a DENY topic, without a hook,
//! and for an admin request (creating a topic through `DefaultMQAdminExt`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    AclClientRPCHook, ClientRuntime, DefaultMQAdminExt, DefaultMQProducer, DefaultMQPushConsumer,
    SessionCredentials, TopicAdmin,
};
use rocketmq_model::common::config::TopicConfig;
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;

use crate::{message, record, Seen};

/// Everything the scenario needs from the command line.
pub struct Args {
    pub namesrv: String,
    pub topic: String,
    pub group: String,
    pub n: usize,
    pub access_key: String,
    pub secret_key: String,
    pub denied_topic: String,
    pub broker_addr: String,
}

pub async fn run(runtime: Arc<ClientRuntime>, a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let hook = Arc::new(AclClientRPCHook::new(SessionCredentials::with_keys(
        a.access_key.clone(),
        a.secret_key.clone(),
    )));
    let mut producer = DefaultMQProducer::builder(runtime.clone())
        .producer_group(format!("{}_producer", a.group))
        .name_server_addr(a.namesrv.clone())
        .rpc_hook(hook.clone())
        .build();
    producer.start().await?;
    let mut wanted = Vec::new();
    for i in 0..a.n {
        let body = format!("acl-{i}");
        producer
            .send_with_timeout(message(&a.topic, "TagA", &body, &body), 10_000)
            .await?;
        wanted.push(body);
    }
    println!("COMPAT acl: signed producer sent {} messages", wanted.len());

    let denied = producer
        .send_with_timeout(message(&a.denied_topic, "TagA", "no", "no"), 10_000)
        .await;
    let Err(e) = denied else {
        return Err(format!("a send to DENY topic {} was accepted", a.denied_topic).into());
    };
    println!("COMPAT acl: send to the DENY topic refused: {e}");

    let mut unsigned = DefaultMQProducer::builder(runtime.clone())
        .producer_group(format!("{}_unsigned", a.group))
        .name_server_addr(a.namesrv.clone())
        .build();
    unsigned.start().await?;
    let anonymous = unsigned
        .send_with_timeout(message(&a.topic, "TagA", "anon", "anon"), 10_000)
        .await;
    unsigned.shutdown().await;
    let Err(e) = anonymous else {
        return Err("an unsigned send was accepted".into());
    };
    println!("COMPAT acl: unsigned send refused: {e}");

    let mut admin = DefaultMQAdminExt::with_rpc_hook(runtime.clone(), hook.clone());
    admin.set_namesrv_addr(a.namesrv.clone());
    admin.start().await?;
    let created = admin
        .create_and_update_topic_config(
            a.broker_addr.clone().into(),
            TopicConfig::with_queues("AclAdminProbe", 1, 1),
        )
        .await;
    let Err(e) = created else {
        return Err("a non-admin account created a topic".into());
    };
    println!("COMPAT acl: topic creation by a non-admin account refused: {e}");

    let mut consumer = DefaultMQPushConsumer::builder(runtime.clone())
        .consumer_group(a.group.clone())
        .name_server_addr(a.namesrv.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .rpc_hook(Some(hook))
        .build();
    let seen = record(&mut consumer, &a.topic, "*").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = |seen: &Seen| {
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            wanted.iter().filter(|b| s.contains_key(*b)).count(),
            s.values().filter(|(n, _)| *n > 1).count(),
            s.len(),
        )
    };
    while count(&seen).0 < wanted.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // duplicates would show up
    consumer.shutdown().await;
    producer.shutdown().await;
    let (got, duplicated, distinct) = count(&seen);
    println!(
        "COMPAT acl: signed consumer got {got}/{} messages, {duplicated} duplicated, {} others",
        wanted.len(),
        distinct - got
    );
    if got == wanted.len() && duplicated == 0 && distinct == got {
        println!("COMPAT OK");
        Ok(())
    } else {
        Err("the signed consumer did not get every message exactly once".into())
    }
}
