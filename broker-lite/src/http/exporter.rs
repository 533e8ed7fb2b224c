//! The Prometheus endpoint (`metricsExporterType=PROM`, `metricsPromExporterHost`,
//! `metricsPromExporterPort`, as RocketMQ 5 names them): `GET /metrics` answers the
//! counters of [`BrokerMetrics`](crate::state::metrics::BrokerMetrics) and what is read from the
//! broker at that moment (consumer lag, connections, storage, replication).
//!
//! Served and guarded by [`crate::http`] (bounded connections, heads and lifetimes; the
//! ACL rule for HTTP ports); at most [`CONCURRENT_SCRAPES`] scrapes are computed at once
//! (others get 503).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::http::{self, HttpResponse};
use crate::state::metrics::{is_system_group, is_system_topic};
use crate::state::progress;

/// Scrapes computed at once; more are answered 503.
pub const CONCURRENT_SCRAPES: usize = 2;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Endpoint {
    broker: Arc<Broker>,
    registry: Registry,
    scrapes: Semaphore,
}

/// Serves `GET /metrics` on `listener` until `stop` fires.
pub async fn run(broker: Arc<Broker>, listener: TcpListener, stop: CancellationToken) {
    let labels = [
        ("cluster", broker.config.broker_cluster_name.clone()),
        ("node_type", "broker".to_owned()),
        ("node_id", broker.config.broker_name.clone()),
    ];
    let mut registry = Registry::with_labels(
        labels
            .into_iter()
            .map(|(k, v)| (std::borrow::Cow::Borrowed(k), std::borrow::Cow::Owned(v))),
    );
    broker.metrics.register(&mut registry);
    registry.register_collector(Box::new(StateGauges {
        broker: Arc::clone(&broker),
    }));
    let endpoint = Arc::new(Endpoint {
        broker,
        registry,
        scrapes: Semaphore::new(CONCURRENT_SCRAPES),
    });
    http::serve("metrics", listener, stop, move |peer, req| {
        let endpoint = Arc::clone(&endpoint);
        async move { respond(&endpoint, peer, &req).await }
    })
    .await;
}

async fn respond(
    endpoint: &Arc<Endpoint>,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> HttpResponse {
    if req.uri().path() != "/metrics" {
        return http::plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return http::plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics");
    }
    if !http::allowed(endpoint.broker.acl.as_deref(), peer, req.headers()) {
        return http::unauthorized("Basic realm=\"broker-lite metrics\"", "scrape");
    }
    let Ok(_scrape) = endpoint.scrapes.try_acquire() else {
        return http::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "scrapes in progress; try again",
        );
    };
    // The gauges read the store (a record per lagging queue): off the I/O threads.
    let e = Arc::clone(endpoint);
    let text = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &e.registry).map(|()| out)
    })
    .await;
    match text {
        Ok(Ok(text)) => http::with_type(StatusCode::OK, text, OPENMETRICS),
        _ => http::plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        ),
    }
}

/// What is read from the broker at each scrape.
#[derive(Debug)]
struct StateGauges {
    broker: Arc<Broker>,
}

type Labels = Vec<(&'static str, String)>;

fn gauge<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, N)],
) -> Result<(), std::fmt::Error>
where
    N: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug + Copy,
{
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let b = &self.broker;
        let store = &b.store;
        let now = now_ms();
        let (producers, consumers) = b.clients.connection_counts();
        gauge(
            &mut encoder,
            "rocketmq_producer_connections",
            "Producer connections",
            &[(Vec::new(), producers as i64)],
        )?;
        let per_group: Vec<(Labels, i64)> = consumers
            .into_iter()
            .map(|(g, n)| (vec![("consumer_group", g)], n as i64))
            .collect();
        gauge(
            &mut encoder,
            "rocketmq_consumer_connections",
            "Consumer connections by group",
            &per_group,
        )?;

        // Lag per (topic, group): the sum over queues of (max offset - committed), and the
        // age of the oldest message not consumed.
        let mut lag: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for (group, topic, queue_id, committed) in b.offsets.all() {
            let p = progress::queue_progress(store, &topic, queue_id, Some(committed));
            let entry = lag.entry((topic, group)).or_default();
            entry.0 += p.lag() as i64;
            if p.oldest_unconsumed_ms > 0 {
                entry.1 = entry.1.max(now - p.oldest_unconsumed_ms);
            }
        }
        let lag_labels = |topic: &str, group: &str| -> Labels {
            vec![
                ("topic", topic.to_owned()),
                ("consumer_group", group.to_owned()),
                ("is_retry", topic.starts_with("%RETRY%").to_string()),
                (
                    "is_system",
                    (is_system_topic(topic) || is_system_group(group)).to_string(),
                ),
            ]
        };
        let messages: Vec<(Labels, i64)> = lag
            .iter()
            .map(|((t, g), (m, _))| (lag_labels(t, g), *m))
            .collect();
        gauge(
            &mut encoder,
            "rocketmq_consumer_lag_messages",
            "Messages stored but not yet consumed, by topic and group",
            &messages,
        )?;
        let latency: Vec<(Labels, i64)> = lag
            .iter()
            .map(|((t, g), (_, l))| (lag_labels(t, g), *l))
            .collect();
        gauge(
            &mut encoder,
            "rocketmq_consumer_lag_latency",
            "Age in milliseconds of the oldest message not yet consumed, by topic and group",
            &latency,
        )?;

        let max = store.max_offset().0;
        let storage = vec![
            ("storage_type", "local".to_owned()),
            ("storage_medium", "disk".to_owned()),
        ];
        gauge(
            &mut encoder,
            "rocketmq_storage_size",
            "Bytes of the store's files on disk",
            &[(
                storage.clone(),
                dir_size(&b.config.store.store_path_root_dir),
            )],
        )?;
        gauge(
            &mut encoder,
            "rocketmq_storage_flush_behind_bytes",
            "CommitLog bytes written but not yet flushed",
            &[(
                storage.clone(),
                max.saturating_sub(store.flushed_offset().0),
            )],
        )?;
        gauge(
            &mut encoder,
            "rocketmq_storage_dispatch_behind_bytes",
            "CommitLog bytes not yet dispatched to ConsumeQueues and the index",
            &[(storage.clone(), store.dispatch_behind_bytes())],
        )?;
        let earliest = store.earliest_message_time();
        let reserve = if earliest > 0 { now - earliest } else { 0 };
        gauge(
            &mut encoder,
            "rocketmq_storage_message_reserve_time",
            "Age in milliseconds of the oldest stored message",
            &[(storage, reserve)],
        )?;

        let used = b.disk_used_percent();
        gauge(
            &mut encoder,
            "mqstore_disk_used_ratio",
            "Fraction of the store's filesystem in use (RocketMQ's used / (used + available))",
            &[(Vec::new(), f64::from(used.unwrap_or(0)) / 100.0)],
        )?;
        gauge(
            &mut encoder,
            "mqstore_commitlog_files",
            "CommitLog files",
            &[(Vec::new(), store.commit_log_file_count() as i64)],
        )?;
        gauge(
            &mut encoder,
            "mqstore_commitlog_max_offset",
            "CommitLog end offset",
            &[(Vec::new(), max)],
        )?;
        counter(
            &mut encoder,
            "mqstore_group_commit_flushes",
            "SYNC_FLUSH group-commit rounds",
            store.stats().group_commit_flushes,
        )?;
        let slaves: Vec<(Labels, u64)> =
            b.ha.slaves()
                .into_iter()
                .map(|s| {
                    (
                        vec![("slave", s.addr.to_string())],
                        max.saturating_sub(s.acked),
                    )
                })
                .collect();
        gauge(
            &mut encoder,
            "mqstore_replication_lag_bytes",
            "CommitLog bytes a connected slave has not acknowledged",
            &slaves,
        )?;
        counter(
            &mut encoder,
            "broker_lite_acl_refusals",
            "Requests refused by the ACL",
            b.stats
                .acl_refusals
                .load(std::sync::atomic::Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "broker_lite_busy_rejections",
            "Sends answered SYSTEM_BUSY",
            b.stats
                .busy_rejections
                .load(std::sync::atomic::Ordering::Relaxed),
        )?;
        Ok(())
    }
}

/// Bytes of the regular files under `dir` (the store's directories are shallow).
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => pending.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
