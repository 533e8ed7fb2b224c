//! The Prometheus endpoint (`metricsExporterType=PROM`, `metricsPromExporterHost`,
//! `metricsPromExporterPort`, as RocketMQ 5 names them): `GET /metrics` answers the
//! counters of [`BrokerMetrics`](crate::metrics::BrokerMetrics) and what is read from the
//! broker at that moment (consumer lag, connections, storage, replication).
//!
//! Bounded against bad clients: at most [`MAX_CONNECTIONS`] connections (more are closed
//! at once), a request head must arrive within [`HEAD_TIMEOUT`] and fit in
//! [`MAX_HEAD_BYTES`], one connection lives at most [`CONNECTION_LIFETIME`], and at most
//! [`CONCURRENT_SCRAPES`] scrapes are computed at once (others get 503). With ACL on, a
//! scrape must come from a `globalWhiteRemoteAddresses` address or carry HTTP Basic
//! credentials of an admin account.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
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
use crate::metrics::{is_system_group, is_system_topic};
use crate::progress;

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The longest one connection is served.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
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
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics connection refused: too many open");
            continue; // dropped: closed
        };
        let endpoint = Arc::clone(&endpoint);
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let endpoint = Arc::clone(&endpoint);
                async move { Ok::<_, Infallible>(respond(&endpoint, peer, &req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {}
                () = stop.cancelled() => {}
            }
            drop(permit);
        });
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn respond(
    endpoint: &Arc<Endpoint>,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics");
    }
    if !allowed(&endpoint.broker, peer, req) {
        let mut r = plain(
            StatusCode::UNAUTHORIZED,
            "ACL is on: scrape from a globalWhiteRemoteAddresses address or with an admin account's accessKey:secretKey (HTTP Basic)",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"broker-lite metrics\""),
        );
        return r;
    }
    let Ok(_scrape) = endpoint.scrapes.try_acquire() else {
        return plain(
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
        Ok(Ok(text)) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(OPENMETRICS),
            );
            r
        }
        _ => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        ),
    }
}

/// Without ACL: everyone (the port binds loopback unless configured otherwise). With ACL: a
/// white-listed address, or Basic credentials of an admin account.
fn allowed(broker: &Broker, peer: SocketAddr, req: &Request<Incoming>) -> bool {
    let Some(acl) = &broker.acl else {
        return true;
    };
    if acl.peer_allowed(peer.ip()) {
        return true;
    }
    let Some(credentials) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return false;
    };
    let Some((access_key, secret_key)) = credentials.split_once(':') else {
        return false;
    };
    acl.admin_password_matches(access_key, secret_key)
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

        let used = <mqstore::FsDiskUsage as mqstore::DiskUsage>::used_percent(
            &mqstore::FsDiskUsage,
            &b.config.store.store_path_root_dir,
        );
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
