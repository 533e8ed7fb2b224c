//! The cluster scenario: the client finds two broker groups (each a SYNC_MASTER and its
//! slave) only through RocketMQ's name server, and a driver script (compat/run.sh) kills
//! one master mid-run.
//!
//! 1. All up: a producer sends `n` messages; two push-consumer instances of one
//!    clustering group consume every one exactly once, both groups took a share, both
//!    instances consumed. Meanwhile the script kills the name server and restarts it:
//!    the clients go on with the routes they hold. The consumers stop (their offsets go
//!    to the masters, which the script checks before it creates `<signal>.1`).
//! 2. Failover: `n` more messages; after a third of them (`PROGRESS two sent=` lines)
//!    the script kills master a with SIGKILL. A failed send is retried until it succeeds
//!    (the window in which sends failed is reported). Only then do the consumers start
//!    again: group a's messages can only come from a's slave.
//! 3. The script restarts master a and creates `<signal>.2`; `n / 2` more messages, all
//!    consumed; the consumers run 35 s more (past the client's 30 s route refresh and
//!    5 s offset persistence, so their offsets reach master a again) and stop.
//!
//! At the end: no message missing; duplicates are counted (at-least-once allows them
//! around a failover, not in phase 1).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientConfig, ClientResult, ClientRuntime, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;

type Error = Box<dyn std::error::Error>;

/// Everything both consumer instances received.
#[derive(Default)]
struct Received {
    /// Body → times received.
    count: HashMap<String, u32>,
    /// Messages per consumer instance.
    by_instance: [usize; 2],
    /// Messages per broker group.
    by_group: HashMap<String, usize>,
}

#[derive(Clone)]
struct Recorder {
    received: Arc<Mutex<Received>>,
    instance: usize,
}

impl MessageListenerConcurrently for Recorder {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut r = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        let group = context.get_message_queue().broker_name().to_string();
        for m in msgs {
            let body = m
                .body()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            *r.count.entry(body).or_insert(0) += 1;
            r.by_instance[self.instance] += 1;
            *r.by_group.entry(group.clone()).or_insert(0) += 1;
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

struct Scenario {
    runtime: Arc<ClientRuntime>,
    namesrv: String,
    topic: String,
    group: String,
    received: Arc<Mutex<Received>>,
}

/// What one production run saw.
#[derive(Default)]
struct Produced {
    /// Acknowledged sends per broker group.
    by_group: HashMap<String, usize>,
    /// Failed attempts (each retried).
    failures: usize,
    first_failure: Option<Instant>,
    last_failure: Option<Instant>,
}

impl Scenario {
    async fn consumers(&self) -> Result<Vec<DefaultMQPushConsumer>, Error> {
        let mut started = Vec::new();
        for instance in 0..2 {
            let mut config = ClientConfig::default();
            config.set_instance_name(format!("cluster-{instance}").into());
            let mut c = DefaultMQPushConsumer::builder(self.runtime.clone())
                .client_config(config)
                .name_server_addr(self.namesrv.clone())
                .consumer_group(self.group.clone())
                .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
                .build();
            c.subscribe(self.topic.as_str(), "*").await?;
            c.register_message_listener_concurrently(Recorder {
                received: Arc::clone(&self.received),
                instance,
            });
            c.start().await?;
            started.push(c);
        }
        Ok(started)
    }

    /// Sends bodies `prefix-0 .. prefix-(n-1)`, each retried until acknowledged.
    async fn produce(
        &self,
        producer: &mut DefaultMQProducer,
        prefix: &str,
        n: usize,
    ) -> Result<Produced, Error> {
        let mut p = Produced::default();
        for i in 0..n {
            let body = format!("{prefix}-{i}");
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let m = crate::message(&self.topic, "C", &body, &body);
                match producer.send_with_timeout(m, 3000).await {
                    Ok(Some(r)) => {
                        let group = r
                            .message_queue
                            .as_ref()
                            .map(|q| q.broker_name().to_string())
                            .unwrap_or_default();
                        *p.by_group.entry(group).or_insert(0) += 1;
                        break;
                    }
                    Ok(None) | Err(_) => {
                        let now = Instant::now();
                        p.failures += 1;
                        p.first_failure.get_or_insert(now);
                        p.last_failure = Some(now);
                        if now > deadline {
                            return Err(format!("{body}: no send succeeded for 120 s").into());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            if (i + 1) % 50 == 0 {
                say(&format!("PROGRESS {prefix} sent={}", i + 1));
            }
            // A steady stream rather than a burst, so that the kill lands mid-run.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(p)
    }

    /// Waits (at most `limit`) until every body `prefix-i` was received.
    async fn await_all(&self, prefix: &str, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let missing = {
                let r = self.received.lock().unwrap_or_else(PoisonError::into_inner);
                (0..n)
                    .filter(|i| !r.count.contains_key(&format!("{prefix}-{i}")))
                    .count()
            };
            if missing == 0 || Instant::now() > deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn duplicates(&self, prefix: &str) -> usize {
        let r = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        r.count
            .iter()
            .filter(|(b, c)| b.starts_with(&format!("{prefix}-")) && **c > 1)
            .map(|(_, c)| (*c - 1) as usize)
            .sum()
    }
}

/// Waits (3 minutes at most) for the driver script to create `<signal>.<step>`.
async fn await_signal(signal: &std::path::Path, step: u32) -> Result<(), Error> {
    let mut name = signal.as_os_str().to_owned();
    name.push(format!(".{step}"));
    let file = PathBuf::from(name);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !file.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} did not appear within 180 s", file.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn shares(p: &Produced) -> String {
    let mut v: Vec<String> = p.by_group.iter().map(|(g, n)| format!("{g}={n}")).collect();
    v.sort();
    v.join(" ")
}

pub async fn run(
    runtime: Arc<ClientRuntime>,
    namesrv: String,
    topic: String,
    group: String,
    n: usize,
    signal: PathBuf,
) -> Result<(), Error> {
    let s = Scenario {
        runtime: runtime.clone(),
        namesrv: namesrv.clone(),
        topic,
        group: group.clone(),
        received: Arc::default(),
    };
    let mut producer = DefaultMQProducer::builder(runtime.clone())
        .producer_group(format!("{group}_producer"))
        .name_server_addr(namesrv.clone())
        .build();
    producer.start().await?;
    let mut problems = Vec::new();

    // 1. All up: exactly once, both groups, both instances.
    let mut consumers = s.consumers().await?;
    let p1 = s.produce(&mut producer, "one", n).await?;
    let missing1 = s.await_all("one", n, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dup1 = s.duplicates("one");
    let (inst, groups) = {
        let r = s.received.lock().unwrap_or_else(PoisonError::into_inner);
        (r.by_instance, r.by_group.clone())
    };
    say(&format!(
        "CLUSTER phase 1: sent {n} ({}), {} failed attempts; consumed: missing {missing1}, duplicates {dup1}, per instance {inst:?}, per group {groups:?}",
        shares(&p1),
        p1.failures
    ));
    if missing1 > 0 || dup1 > 0 {
        problems.push(format!("phase 1: missing {missing1}, duplicates {dup1}"));
    }
    if p1.by_group.len() < 2 {
        problems.push(format!("phase 1: sends reached only {}", shares(&p1)));
    }
    if inst.contains(&0) {
        problems.push(format!(
            "phase 1: a consumer instance got nothing ({inst:?})"
        ));
    }
    for c in &mut consumers {
        c.shutdown().await;
    }
    drop(consumers);
    say("CLUSTER phase 1 done");
    await_signal(&signal, 1).await?;

    // 2. Master a is killed while this runs; consumers start after it.
    say("CLUSTER phase 2 producing");
    let p2 = s.produce(&mut producer, "two", n).await?;
    let window = match (p2.first_failure, p2.last_failure) {
        (Some(a), Some(b)) => format!("{:.1} s", (b - a).as_secs_f64()),
        _ => "none".into(),
    };
    say(&format!(
        "CLUSTER phase 2: sent {n} ({}), {} failed attempts, sends failing for {window}",
        shares(&p2),
        p2.failures
    ));
    let mut consumers = s.consumers().await?;
    let missing2 = s.await_all("two", n, Duration::from_secs(150)).await;
    let from_a = p2.by_group.get("broker-a").copied().unwrap_or(0);
    say(&format!(
        "CLUSTER phase 2: with master a down consumed all but {missing2} (of which {from_a} were stored on group a before the kill)"
    ));
    if missing2 > 0 {
        problems.push(format!(
            "phase 2: {missing2} not consumed with master a down"
        ));
    }
    if from_a == 0 {
        problems.push("phase 2: nothing reached group a before the kill".into());
    }

    // 3. Master a back.
    say("CLUSTER phase 2 drained; waiting for master a to restart");
    await_signal(&signal, 2).await?;
    let p3 = s.produce(&mut producer, "three", n / 2).await?;
    let missing3 = s.await_all("three", n / 2, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(35)).await;
    let (dup2, dup3) = (s.duplicates("two"), s.duplicates("three"));
    say(&format!(
        "CLUSTER phase 3: sent {} ({}), {} failed attempts; missing {missing3}; duplicates phase 2 {dup2}, phase 3 {dup3}",
        n / 2,
        shares(&p3),
        p3.failures
    ));
    if missing3 > 0 {
        problems.push(format!("phase 3: missing {missing3}"));
    }
    let phantoms = {
        let r = s.received.lock().unwrap_or_else(PoisonError::into_inner);
        r.count
            .keys()
            .filter(|b| {
                let (prefix, i) = b.rsplit_once('-').unwrap_or(("", ""));
                let i: usize = i.parse().unwrap_or(usize::MAX);
                !matches!((prefix, i), ("one" | "two", i) if i < n)
                    && !matches!((prefix, i), ("three", i) if i < n / 2)
            })
            .count()
    };
    if phantoms > 0 {
        problems.push(format!("{phantoms} messages that were never sent"));
    }
    for c in &mut consumers {
        c.shutdown().await;
    }
    producer.shutdown().await;
    if problems.is_empty() {
        say("COMPAT CLUSTER OK");
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}
