//! Drives the crates.io client `rocketmq-client-rust` 1.0, unmodified, against a broker:
//! a producer sends sync, async, oneway and batch messages with KEYS and TAGS to a topic
//! that does not exist yet (auto-created through TBW102), then a clustering push consumer
//! subscribed to one tag must receive every message with that tag exactly once, none of
//! the others and nothing that was never sent (a phantom), each with the topic, tag and
//! key it was sent with.
//!
//! Usage: `compat-rust-client <namesrv host:port> <topic> <group> <messages per kind>`,
//! `… <group> delivery` for the delivery scenario (src/delivery.rs), or
//! `… <group> cluster <n> <signal file>` for the cluster scenario (src/cluster.rs), or
//! `… <group> perf <n>` for the send rates (src/perf.rs), or
//! `… <group> acl <n> <accessKey> <secretKey> <denied topic> <broker addr>` for the ACL
//! scenario (src/acl.rs), or `… <group> admin <broker addr> <cluster>` for the admin API
//! (src/admin.rs).
//! Exit code 0 on success; the summary line starts with `COMPAT`.

#![recursion_limit = "512"]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

mod acl;
mod admin;
mod cluster;
mod delivery;
mod perf;

/// Per body received: how often, and the (topic, tags, keys) of the last copy.
type Seen = Arc<Mutex<HashMap<String, (u32, Fields)>>>;

/// What a received message says about itself.
type Fields = (String, Option<String>, Option<String>);

struct Recorder(Seen);

impl MessageListenerConcurrently for Recorder {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in msgs {
            let body = m
                .body()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let fields = (
                m.topic().to_string(),
                m.tags().map(|t| t.to_string()),
                m.get_keys().map(|k| k.to_string()),
            );
            let entry = seen.entry(body).or_insert((0, fields.clone()));
            entry.0 += 1;
            entry.1 = fields;
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// Subscribes `consumer` (built, not started) to `topic` with `expression`, records every
/// message it receives (body → times seen, fields), and starts it.
async fn record(
    consumer: &mut DefaultMQPushConsumer,
    topic: &str,
    expression: &str,
) -> Result<Seen, Box<dyn std::error::Error>> {
    let seen: Seen = Arc::default();
    consumer.subscribe(topic, expression).await?;
    consumer.register_message_listener_concurrently(Recorder(Arc::clone(&seen)));
    consumer.start().await?;
    Ok(seen)
}

fn message(topic: &str, tag: &str, key: &str, body: &str) -> Message {
    Message::builder()
        .topic(topic.to_owned())
        .tags(tag.to_owned())
        .key(key.to_owned())
        .body_slice(body.as_bytes())
        .build_unchecked()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cluster = args.len() == 6 && args[3] == "cluster";
    let perf = args.len() == 5 && args[3] == "perf";
    let acl = args.len() == 9 && args[3] == "acl";
    let admin = args.len() == 6 && args[3] == "admin";
    if args.len() != 4 && !cluster && !perf && !acl && !admin {
        return Err(
            "usage: compat-rust-client <namesrv> <topic> <group> <n | delivery | cluster <n> <signal file> | perf <n> | acl <n> <ak> <sk> <denied topic> <broker> | admin <broker> <cluster>>"
                .into(),
        );
    }
    let (namesrv, topic, group) = (args[0].clone(), args[1].clone(), args[2].clone());
    let delivery = args[3] == "delivery";
    let n: usize = if delivery || admin {
        0
    } else if cluster || perf || acl {
        args[4].parse()?
    } else {
        args[3].parse()?
    };
    let owner = RuntimeOwner::plan(RuntimeConfig {
        thread_name: "compat".into(),
        ..Default::default()
    })?
    .build()?;
    let telemetry = rocketmq_observability::TelemetryRuntimeGuard::noop();
    let runtime = ClientRuntime::try_new(
        owner.root_context().component("compat"),
        ClientRuntimeConfig::default(),
        telemetry.handle(),
    )?;
    let outcome = if cluster {
        owner.block_on(cluster::run(
            runtime.clone(),
            namesrv,
            topic,
            group,
            n,
            args[5].clone().into(),
        ))
    } else if delivery {
        owner.block_on(delivery::run(runtime.clone(), namesrv, topic, group))
    } else if perf {
        owner.block_on(perf::run(runtime.clone(), namesrv, topic, group, n))
    } else if admin {
        owner.block_on(admin::run(
            runtime.clone(),
            namesrv,
            topic,
            group,
            args[4].clone(),
            args[5].clone(),
        ))
    } else if acl {
        owner.block_on(acl::run(
            runtime.clone(),
            acl::Args {
                namesrv,
                topic,
                group,
                n,
                access_key: args[5].clone(),
                secret_key: args[6].clone(),
                denied_topic: args[7].clone(),
                broker_addr: args[8].clone(),
            },
        ))
    } else {
        owner.block_on(run(runtime.clone(), namesrv, topic, group, n))
    };
    let _ = owner.block_on(runtime.shutdown());
    let _ = owner.shutdown_runtime_blocking();
    outcome
}

async fn run(
    runtime: Arc<ClientRuntime>,
    namesrv: String,
    topic: String,
    group: String,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut producer = DefaultMQProducer::builder(runtime.clone())
        .producer_group(format!("{group}_producer"))
        .name_server_addr(namesrv.clone())
        .build();
    producer.start().await?;
    let mut wanted: Vec<String> = Vec::new();
    let mut unwanted: Vec<String> = Vec::new();
    // Sync sends: TagA and TagB interleaved.
    for i in 0..n {
        let body = format!("sync-{i}");
        producer
            .send_with_timeout(message(&topic, "TagA", &body, &body), 10_000)
            .await?;
        wanted.push(body);
        let other = format!("sync-b-{i}");
        producer
            .send_with_timeout(message(&topic, "TagB", &other, &other), 10_000)
            .await?;
        unwanted.push(other);
    }
    // Async sends: all issued before waiting for the callbacks.
    let acked = Arc::new(Mutex::new(0usize));
    for i in 0..n {
        let body = format!("async-{i}");
        let acked = Arc::clone(&acked);
        producer
            .send_with_callback(message(&topic, "TagA", &body, &body), move |r, e| {
                if r.is_some() && e.is_none() {
                    *acked
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
                } else {
                    eprintln!("async send failed: {e:?}");
                }
            })
            .await?;
        wanted.push(body);
    }
    // Oneway sends.
    for i in 0..n {
        let body = format!("oneway-{i}");
        producer
            .send_oneway(message(&topic, "TagA", &body, &body))
            .await?;
        wanted.push(body);
    }
    // Batches of 4.
    for chunk in 0..n.div_ceil(4) {
        let batch: Vec<Message> = (0..4)
            .map(|j| {
                let body = format!("batch-{chunk}-{j}");
                wanted.push(body.clone());
                message(&topic, "TagA", &body, &body)
            })
            .collect();
        producer.send_batch(batch).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while *acked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        < n
    {
        if Instant::now() > deadline {
            return Err("async sends were not all acknowledged".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "COMPAT produced {} TagA + {} TagB messages in {:?}",
        wanted.len(),
        unwanted.len(),
        started.elapsed()
    );

    let mut consumer = DefaultMQPushConsumer::builder(runtime.clone())
        .consumer_group(group.clone())
        .name_server_addr(namesrv.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    let seen = record(&mut consumer, &topic, "TagA").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = {
            let s = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            wanted.iter().filter(|b| s.contains_key(*b)).count()
        };
        if got == wanted.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give duplicates a chance to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    consumer.shutdown().await;
    producer.shutdown().await;

    let s = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let missing: Vec<&String> = wanted.iter().filter(|b| !s.contains_key(*b)).collect();
    let duplicated: Vec<(&String, u32)> = s
        .iter()
        .filter(|(_, (c, _))| *c > 1)
        .map(|(b, (c, _))| (b, *c))
        .collect();
    let foreign: Vec<&String> = unwanted.iter().filter(|b| s.contains_key(*b)).collect();
    let phantoms: Vec<&String> = s
        .keys()
        .filter(|b| !wanted.contains(b) && !unwanted.contains(b))
        .collect();
    // Each message was sent with the test's topic, TagA and its body as its key.
    let altered: Vec<(&String, &Fields)> = s
        .iter()
        .filter(|(b, _)| wanted.contains(b))
        .filter(|(b, (_, (t, tags, keys)))| {
            *t != topic || tags.as_deref() != Some("TagA") || keys.as_deref() != Some(b.as_str())
        })
        .map(|(b, (_, f))| (b, f))
        .collect();
    println!(
        "COMPAT consumed {} distinct messages: missing {}, duplicated {}, wrong tag {}, phantoms {}, altered topic/tag/key {} ({:?} in all)",
        s.len(),
        missing.len(),
        duplicated.len(),
        foreign.len(),
        phantoms.len(),
        altered.len(),
        started.elapsed()
    );
    if missing.is_empty()
        && duplicated.is_empty()
        && foreign.is_empty()
        && phantoms.is_empty()
        && altered.is_empty()
    {
        println!("COMPAT OK");
        Ok(())
    } else {
        Err(format!(
            "missing {:?}, duplicated {:?}, wrong tag {:?}, phantoms {:?}, altered {:?}",
            &missing[..missing.len().min(10)],
            &duplicated[..duplicated.len().min(10)],
            &foreign[..foreign.len().min(10)],
            &phantoms[..phantoms.len().min(10)],
            &altered[..altered.len().min(10)]
        )
        .into())
    }
}
