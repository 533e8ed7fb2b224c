//! `perf`: the send rates the unmodified client reaches against a broker — one producer,
//! sync sends of 1 KiB one at a time, then batches of 16 × 1 KiB — with latency
//! percentiles. A measurement, not a check: it fails only when a send fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{ClientRuntime, DefaultMQProducer};
use rocketmq_model::common::message::message_single::Message;

const BODY: usize = 1024;
const BATCH: usize = 16;

fn message(topic: &str, i: usize, body: &[u8]) -> Message {
    Message::builder()
        .topic(topic.to_owned())
        .tags("TagA".to_owned())
        .key(format!("k{i}"))
        .body_slice(body)
        .build_unchecked()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Prints one `PERF` line: the rate and the latency percentiles of `lat` (sorted here).
fn report(what: &str, rate: f64, lat: &mut [Duration]) {
    lat.sort_unstable();
    println!(
        "PERF {what}: {rate:.0} msgs/s, p50 {:?} p99 {:?} p99.9 {:?}",
        percentile(lat, 0.5),
        percentile(lat, 0.99),
        percentile(lat, 0.999)
    );
}

pub async fn run(
    runtime: Arc<ClientRuntime>,
    namesrv: String,
    topic: String,
    group: String,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut producer = DefaultMQProducer::builder(runtime)
        .producer_group(format!("{group}_producer"))
        .name_server_addr(namesrv)
        .build();
    producer.start().await?;
    let body = vec![b'x'; BODY];
    // Warm-up: the topic's route, the connection.
    for i in 0..1000 {
        producer
            .send_with_timeout(message(&topic, i, &body), 10_000)
            .await?;
    }
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        producer
            .send_with_timeout(message(&topic, i, &body), 10_000)
            .await?;
        lat.push(t.elapsed());
    }
    let sync_rate = n as f64 / started.elapsed().as_secs_f64();
    report(
        &format!("sync send, 1 producer, {n} x 1 KiB"),
        sync_rate,
        &mut lat,
    );
    let batches = n / BATCH;
    let mut lat = Vec::with_capacity(batches);
    let started = Instant::now();
    for b in 0..batches {
        let batch: Vec<Message> = (0..BATCH)
            .map(|j| message(&topic, b * BATCH + j, &body))
            .collect();
        let t = Instant::now();
        producer.send_batch(batch).await?;
        lat.push(t.elapsed());
    }
    let batch_rate = (batches * BATCH) as f64 / started.elapsed().as_secs_f64();
    report(
        &format!("batch send ({BATCH} x 1 KiB), 1 producer, {batches} batches (latency per batch)"),
        batch_rate,
        &mut lat,
    );
    producer.shutdown().await;
    Ok(())
}
