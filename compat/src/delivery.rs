//! The delivery scenario: the crate client's transaction producer (commit, rollback, and
//! an unknown state resolved by the broker's check-back), a delayed message, a consumer
//! that answers ReconsumeLater once (send-back, redelivered with reconsumeTimes 1), an
//! orderly consumer (queue locks, per-queue order) and query by key.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientResult, ClientRuntime, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQProducer, DefaultMQPushConsumer,
    LocalTransactionState, MQPushConsumer, MessageListenerConcurrently, MessageListenerOrderly,
    TransactionListener, TransactionMQProducer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;

type Error = Box<dyn std::error::Error>;

fn body_of(m: &MessageExt) -> String {
    m.body()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

struct Local {
    checks: Arc<AtomicU32>,
}

impl TransactionListener for Local {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let body = msg
            .get_body()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        match body.as_str() {
            "tx-commit" => LocalTransactionState::CommitMessage,
            "tx-rollback" => LocalTransactionState::RollbackMessage,
            _ => LocalTransactionState::Unknown,
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        self.checks.fetch_add(1, Ordering::Relaxed);
        if body_of(msg) == "tx-unknown" {
            LocalTransactionState::CommitMessage
        } else {
            LocalTransactionState::RollbackMessage
        }
    }
}

/// body → (deliveries, reconsume times seen, arrival time)
type Seen = Arc<Mutex<HashMap<String, Vec<(i32, Instant)>>>>;

struct FailOnce(Seen);

impl MessageListenerConcurrently for FailOnce {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut status = ConsumeConcurrentlyStatus::ConsumeSuccess;
        for m in msgs {
            let body = body_of(m);
            if body == "retry-me" && m.reconsume_times() == 0 {
                status = ConsumeConcurrentlyStatus::ReconsumeLater;
            }
            seen.entry(body)
                .or_default()
                .push((m.reconsume_times(), Instant::now()));
        }
        Ok(status)
    }
}

/// queue → bodies in arrival order
type Ordered = Arc<Mutex<HashMap<i32, Vec<u32>>>>;

struct InOrder(Ordered);

impl MessageListenerOrderly for InOrder {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &mut ConsumeOrderlyContext,
    ) -> ClientResult<ConsumeOrderlyStatus> {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for m in msgs {
            if let Ok(n) = body_of(m).trim_start_matches("seq-").parse() {
                seen.entry(m.queue_id()).or_default().push(n);
            }
        }
        Ok(ConsumeOrderlyStatus::Success)
    }
}

fn message(topic: &str, key: &str, body: &str) -> Message {
    Message::builder()
        .topic(topic.to_owned())
        .tags("TagD".to_owned())
        .key(key.to_owned())
        .body_slice(body.as_bytes())
        .build_unchecked()
}

async fn wait_until(
    what: &str,
    within: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

pub async fn run(
    runtime: Arc<ClientRuntime>,
    namesrv: String,
    topic: String,
    group: String,
) -> Result<(), Error> {
    let started = Instant::now();
    let checks = Arc::new(AtomicU32::new(0));
    let mut tx_producer = TransactionMQProducer::builder(runtime.clone())
        .producer_group(format!("{group}_tx"))
        .name_server_addr(namesrv.clone())
        .transaction_listener(Local {
            checks: Arc::clone(&checks),
        })
        .build();
    tx_producer.start().await?;
    let mut producer = DefaultMQProducer::builder(runtime.clone())
        .producer_group(format!("{group}_producer"))
        .name_server_addr(namesrv.clone())
        .build();
    producer.start().await?;
    // The topic exists before the transaction (auto-created by a plain send).
    producer
        .send_with_timeout(message(&topic, "warm-up", "warm-up"), 10_000)
        .await?;
    for body in ["tx-commit", "tx-rollback", "tx-unknown"] {
        tx_producer
            .send_message_in_transaction::<(), _>(message(&topic, body, body), None)
            .await?;
    }
    let mut delayed = message(&topic, "delayed", "delayed");
    delayed.set_delay_time_level(2);
    let delayed_sent = Instant::now();
    producer.send_with_timeout(delayed, 10_000).await?;
    producer
        .send_with_timeout(message(&topic, "retry-me", "retry-me"), 10_000)
        .await?;

    let seen: Seen = Arc::default();
    let mut consumer = DefaultMQPushConsumer::builder(runtime.clone())
        .consumer_group(group.clone())
        .name_server_addr(namesrv.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    consumer.subscribe(topic.as_str(), "*").await?;
    consumer.register_message_listener_concurrently(FailOnce(Arc::clone(&seen)));
    consumer.start().await?;
    let s = Arc::clone(&seen);
    wait_until(
        "commit, check-back, delay and retry",
        Duration::from_secs(60),
        || {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            ["tx-commit", "tx-unknown", "delayed"]
                .iter()
                .all(|b| s.contains_key(*b))
                && s.get("retry-me").is_some_and(|d| d.len() >= 2)
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    consumer.shutdown().await;
    let s = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if s.contains_key("tx-rollback") {
        return Err("a rolled-back transaction message was delivered".into());
    }
    for once in ["tx-commit", "tx-unknown", "delayed"] {
        if s.get(once).map(Vec::len) != Some(1) {
            return Err(format!("{once} delivered {:?} times", s.get(once).map(Vec::len)).into());
        }
    }
    let retries: Vec<i32> = s["retry-me"].iter().map(|(r, _)| *r).collect();
    if retries != [0, 1] {
        return Err(format!("retry-me reconsume times {retries:?}, expected [0, 1]").into());
    }
    let delay = s["delayed"][0].1.duration_since(delayed_sent);
    if delay < Duration::from_millis(1900) {
        return Err(format!("delayed (level 2 = 2 s) arrived after {delay:?}").into());
    }
    println!(
        "COMPAT delivery: commit ok, rollback invisible, unknown committed by check-back ({} checks), \
         delayed arrived after {delay:?}, retry-me redelivered with reconsumeTimes {retries:?}",
        checks.load(Ordering::Relaxed)
    );

    // Query by key.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let found = producer
        .query_message(&topic, "retry-me", 32, 0, now + 1000)
        .await?;
    let hits = found
        .message_list()
        .iter()
        .filter(|m| body_of(m) == "retry-me")
        .count();
    if hits == 0 {
        return Err("query by key found nothing".into());
    }
    println!("COMPAT delivery: query by key found {hits} message(s)");

    // Orderly consumer: 40 messages over 4 queues by order id, consumed in send order.
    let ordered_topic = format!("{topic}_ordered");
    producer
        .send_with_timeout(message(&ordered_topic, "warm-up", "warm-up"), 10_000)
        .await?;
    let ordered: Ordered = Arc::default();
    let mut orderly = DefaultMQPushConsumer::builder(runtime.clone())
        .consumer_group(format!("{group}_orderly"))
        .name_server_addr(namesrv.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    orderly.subscribe(ordered_topic.as_str(), "*").await?;
    orderly.register_message_listener_orderly(InOrder(Arc::clone(&ordered)));
    orderly.start().await?;
    let mut sent_per_queue: HashMap<i32, Vec<u32>> = HashMap::new();
    for i in 0..40u32 {
        let r = producer
            .send_with_timeout(
                message(&ordered_topic, &format!("seq-{i}"), &format!("seq-{i}")),
                10_000,
            )
            .await?;
        if let Some(q) = r.and_then(|r| r.message_queue.map(|mq| mq.queue_id())) {
            sent_per_queue.entry(q).or_default().push(i);
        }
    }
    let o = Arc::clone(&ordered);
    wait_until("orderly consumption", Duration::from_secs(60), || {
        o.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Vec::len)
            .sum::<usize>()
            >= 40
    })
    .await?;
    orderly.shutdown().await;
    producer.shutdown().await;
    tx_producer.shutdown().await;
    let got = ordered
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for (q, bodies) in &got {
        if !bodies.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("queue {q} consumed out of order: {bodies:?}").into());
        }
        if let Some(sent) = sent_per_queue.get(q) {
            if sent != bodies {
                return Err(format!("queue {q}: sent {sent:?}, consumed {bodies:?}").into());
            }
        }
    }
    println!("COMPAT delivery: orderly consumer got 40 messages in send order per queue");
    println!("COMPAT delivery OK ({:?})", started.elapsed());
    Ok(())
}
