//! The web console (`consolePort`, loopback unless `consoleHost` says otherwise): pages
//! rendered on the server from the broker's live state, with plain HTML forms and no
//! JavaScript — the broker and its disk and flush state, topics with each queue's offsets and
//! rates, consumer groups with each queue's lag and a lag-over-time chart (SVG drawn here
//! from [`ProgressHistory`](crate::state::progress::ProgressHistory)), message lookup by key, id or
//! queue offset, and sending a test message.
//!
//! Served and guarded by [`crate::http`]; query strings over [`MAX_QUERY_BYTES`] are
//! refused (414), unknown paths are 404, a page is built off the I/O threads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use mqstore::format::{self, RecordView};
use mqstore::{PhysicalOffset, QueueOffset, RecordGuard};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::client::ops::{self, Outgoing};
use crate::http::{self, HttpResponse};
use crate::remoting::codes::response;
use crate::requests::Outcome;
use crate::state::progress;

/// Query strings longer than this are refused (414).
pub const MAX_QUERY_BYTES: usize = 4096;
/// Messages a key lookup shows at most.
const MAX_FOUND: usize = 32;
/// Body bytes shown as text (UTF-8 bodies).
const TEXT_PREVIEW: usize = 4096;
/// Body bytes shown as hex (other bodies).
const HEX_PREVIEW: usize = 512;
/// The console's own style sheet (no third-party code is shipped).
const CSS: &str = include_str!("console.css");

/// Serves the console on `listener` until `stop` fires.
pub async fn run(broker: Arc<Broker>, listener: TcpListener, stop: CancellationToken) {
    http::serve("console", listener, stop, move |peer, req| {
        let broker = Arc::clone(&broker);
        async move { respond(broker, peer, req).await }
    })
    .await;
}

async fn respond(
    broker: Arc<Broker>,
    peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> HttpResponse {
    if !http::allowed(broker.acl.as_deref(), peer, req.headers()) {
        return http::unauthorized("Basic realm=\"broker-lite console\"", "use the console");
    }
    let query = req.uri().query().unwrap_or_default();
    if query.len() > MAX_QUERY_BYTES {
        return http::plain(
            StatusCode::URI_TOO_LONG,
            &format!("the query string is longer than {MAX_QUERY_BYTES} bytes"),
        );
    }
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method == Method::POST && path == "/send" {
        let body = match http::read_body(req).await {
            Ok(b) => b,
            Err(answer) => return answer,
        };
        let form: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        let b = Arc::clone(&broker);
        return blocking(move || send_test_message(&b, peer, &form)).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return http::plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console reads with GET; it sends with POST /send",
        );
    }
    let page = match path.as_str() {
        "/" => overview,
        "/topics" => topics,
        "/topic" => topic,
        "/groups" => groups,
        "/group" => group,
        "/message" => message,
        "/console.css" => {
            return http::with_type(StatusCode::OK, CSS, "text/css; charset=utf-8");
        }
        _ => {
            let markup = layout(
                "Not found",
                &html! {
                    p { "Nothing is at " code { (path) } ". The pages are listed above." }
                },
            );
            return html_page(StatusCode::NOT_FOUND, markup);
        }
    };
    blocking(move || match page(&broker, &params) {
        Ok(markup) => html_page(StatusCode::OK, markup),
        Err((status, why)) => html_page(status, layout("Cannot show that", &html! { p { (why) } })),
    })
    .await
}

/// Builds a page on the blocking pool: pages read the store (message lookups touch disk).
async fn blocking(build: impl FnOnce() -> HttpResponse + Send + 'static) -> HttpResponse {
    tokio::task::spawn_blocking(build)
        .await
        .unwrap_or_else(|_| {
            http::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be built",
            )
        })
}

fn html_page(status: StatusCode, markup: Markup) -> HttpResponse {
    http::with_type(status, markup.into_string(), "text/html; charset=utf-8")
}

/// What a page needs that the request lacks or names wrongly.
type PageResult = Result<Markup, (StatusCode, String)>;

fn layout(title: &str, content: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — broker-lite" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                nav {
                    span.brand { "broker-lite" }
                    a href="/" { "Broker" }
                    a href="/topics" { "Topics" }
                    a href="/groups" { "Consumer groups" }
                    a href="/message" { "Messages" }
                }
                main {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// `path?key=value&…`, encoded.
fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    let q = q.finish();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

fn param<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(
    params: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>, (StatusCode, String)> {
    match param(params, key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("`{key}` must be a number, not `{v}`"),
            )
        }),
    }
}

/// A store time as a UTC date; "—" for none.
fn when(ms: i64) -> String {
    if ms <= 0 {
        return "—".to_owned();
    }
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
    )
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[allow(clippy::unnecessary_wraps)] // every page has the one signature of the router
fn overview(b: &Broker, _: &BTreeMap<String, String>) -> PageResult {
    let store = &b.store;
    let c = &b.config;
    let max = store.max_offset().0;
    let flushed = store.flushed_offset().0;
    let used = b.disk_used_percent();
    let (producers, consumers) = b.clients.connection_counts();
    let uptime_s = (crate::state::metadata::now_millis() - b.started_at_ms).max(0) / 1000;
    let stored = b
        .stats
        .messages_stored
        .load(std::sync::atomic::Ordering::Relaxed);
    let rows: Vec<(&str, String)> = vec![
        ("Cluster", c.broker_cluster_name.clone()),
        (
            "Broker",
            format!("{} (brokerId {})", c.broker_name, c.broker_id),
        ),
        ("Role", c.store.broker_role.as_str().to_owned()),
        ("Clients dial", c.broker_addr().to_string()),
        (
            "Permission",
            format!(
                "{} ({})",
                b.live.read().broker_permission,
                crate::config::broker_key::broker_permission
            ),
        ),
        (
            "Version",
            format!("broker-lite {}", env!("CARGO_PKG_VERSION")),
        ),
        ("Started", when(b.started_at_ms)),
        (
            "Up",
            format!(
                "{}h {:02}m {:02}s",
                uptime_s / 3600,
                uptime_s / 60 % 60,
                uptime_s % 60
            ),
        ),
        (
            "Connections",
            format!(
                "{producers} producer, {} consumer",
                consumers.iter().map(|(_, n)| n).sum::<usize>()
            ),
        ),
        ("Messages stored since start", stored.to_string()),
    ];
    let disk: Vec<(&str, String)> = vec![
        ("Store", c.store.store_path_root_dir.display().to_string()),
        ("Flush", format!("{:?}", c.store.flush_disk_type)),
        (
            "CommitLog",
            format!(
                "{} – {} ({}, {} files)",
                store.min_offset().0,
                max,
                bytes(max.saturating_sub(store.min_offset().0)),
                store.commit_log_file_count()
            ),
        ),
        (
            "Flushed up to",
            format!("{flushed} ({} behind)", bytes(max.saturating_sub(flushed))),
        ),
        (
            "Dispatched up to",
            format!(
                "{} ({} behind)",
                store.dispatched_offset().0,
                bytes(store.dispatch_behind_bytes())
            ),
        ),
        (
            "Disk used",
            used.map_or_else(|| "not measurable".to_owned(), |u| format!("{u} %")),
        ),
        (
            "Writes refused (disk full)",
            store.is_disk_full().to_string(),
        ),
        ("Oldest message", when(store.earliest_message_time())),
    ];
    let runtime = b.runtime_table();
    Ok(layout(
        &format!("Broker {}", c.broker_name),
        &html! {
            section {
                h2 { "Broker" }
                (pairs_table(&rows))
            }
            section {
                h2 { "Disk and flush" }
                (pairs_table(&disk))
            }
            section {
                h2 { "Runtime (GET_BROKER_RUNTIME_INFO)" }
                table {
                    @for (k, v) in &runtime {
                        tr { th { (k) } td { (v) } }
                    }
                }
            }
        },
    ))
}

fn pairs_table(rows: &[(&str, String)]) -> Markup {
    html! {
        table.pairs {
            @for (k, v) in rows {
                tr { th { (k) } td { (v) } }
            }
        }
    }
}

#[allow(clippy::unnecessary_wraps)] // every page has the one signature of the router
fn topics(b: &Broker, _: &BTreeMap<String, String>) -> PageResult {
    let mut all = b.topics.all();
    all.sort_by(|x, y| x.topic_name.cmp(&y.topic_name));
    Ok(layout(
        "Topics",
        &html! {
            table {
                thead { tr { th { "Topic" } th.num { "Queues (r/w)" } th.num { "Perm" } th.num { "Messages" } th.num { "In / s (1 min)" } th { "Newest message" } } }
                tbody {
                    @for t in &all {
                        @let ranges = progress::topic_ranges(&b.store, t);
                        @let messages: u64 = ranges.iter().map(|r| r.max - r.min).sum();
                        @let newest = ranges.iter().map(|r| r.last_stored_ms).max().unwrap_or(0);
                        tr {
                            td { a href=(link("/topic", &[("name", &t.topic_name)])) { (t.topic_name) } }
                            td.num { (t.read_queue_nums) " / " (t.write_queue_nums) }
                            td.num { (t.perm) }
                            td.num { (messages) }
                            td.num { (format!("{:.1}", b.progress.put_tps(&t.topic_name))) }
                            td { (when(newest)) }
                        }
                    }
                }
            }
        },
    ))
}

fn topic(b: &Broker, params: &BTreeMap<String, String>) -> PageResult {
    let name = param(params, "name")
        .ok_or((StatusCode::BAD_REQUEST, "which topic? (?name=…)".to_owned()))?;
    let t = b.topics.get(name).ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("no topic {name} on this broker"),
        )
    })?;
    let ranges = progress::topic_ranges(&b.store, &t);
    let mut groups: BTreeSet<String> = b.offsets.groups_of_topic(name).into_iter().collect();
    groups.extend(b.clients.groups_subscribed_to(name));
    let sent = param(params, "sent");
    let failed = param(params, "failed");
    Ok(layout(
        &format!("Topic {name}"),
        &html! {
            @if let Some(id) = sent {
                p.notice { "Sent: message id " a href=(link("/message", &[("id", id)])) { code { (id) } } }
            }
            @if let Some(why) = failed {
                p.error { "Not sent: " (why) }
            }
            p { "Read queues " (t.read_queue_nums) ", write queues " (t.write_queue_nums) ", perm " (t.perm)
                ", " (format!("{:.1}", b.progress.put_tps(name))) " messages in per second over the last minute." }
            table {
                thead { tr { th.num { "Queue" } th.num { "Min offset" } th.num { "Max offset" } th.num { "Messages" } th { "Newest message" } th { "" } } }
                tbody {
                    @for r in &ranges {
                        tr {
                            td.num { (r.queue_id) }
                            td.num { (r.min) }
                            td.num { (r.max) }
                            td.num { (r.max - r.min) }
                            td { (when(r.last_stored_ms)) }
                            td {
                                @if r.max > r.min {
                                    a href=(link("/message", &[("topic", name), ("queue", &r.queue_id.to_string()), ("offset", &(r.max - 1).to_string())])) { "newest" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Consumer groups" }
            @if groups.is_empty() {
                p { "No group has consumed from this topic." }
            } @else {
                ul { @for g in &groups { li { a href=(link("/group", &[("name", g)])) { (g) } } } }
            }
            h2 { "Send a test message" }
            form method="post" action="/send" {
                input type="hidden" name="topic" value=(name);
                label { "Tags " input name="tags" value="console"; }
                label { "Keys " input name="keys"; }
                label.wide { "Body " textarea name="body" rows="3" { "hello from the console" } }
                button type="submit" { "Send" }
            }
        },
    ))
}

fn send_test_message(
    b: &Broker,
    peer: SocketAddr,
    form: &BTreeMap<String, String>,
) -> HttpResponse {
    let Some(topic) = param(form, "topic") else {
        return http::plain(StatusCode::BAD_REQUEST, "which topic? (topic=…)");
    };
    let mut m = Outgoing::new(topic, -1, form.get("body").cloned().unwrap_or_default());
    m.tags = param(form, "tags").map(str::to_owned);
    m.keys = param(form, "keys").map(str::to_owned);
    let req = ops::send_request("CONSOLE_PRODUCER_GROUP", &m);
    let outcome = match b.send(peer, &req) {
        Ok(Outcome::Reply(r)) if r.code == response::SUCCESS => {
            Ok(r.ext("msgId").unwrap_or_default().to_owned())
        }
        Ok(Outcome::Reply(r)) => Err(format!("code {}: {}", r.code, r.remark.unwrap_or_default())),
        Ok(_) => Err("no answer".to_owned()),
        Err(reject) => Err(format!("code {}: {}", reject.code, reject.remark)),
    };
    if let Err(why) = &outcome {
        tracing::info!(topic, why, "console test message refused");
    }
    let target = match &outcome {
        Ok(id) => link("/topic", &[("name", topic), ("sent", id)]),
        Err(why) => link("/topic", &[("name", topic), ("failed", why)]),
    };
    let mut r = http::plain(StatusCode::SEE_OTHER, "sent; see the topic page");
    if let Ok(location) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(hyper::header::LOCATION, location);
    }
    r
}

/// Every group this broker knows: with committed offsets, online, or configured.
fn known_groups(b: &Broker) -> BTreeSet<String> {
    let mut groups: BTreeSet<String> = b.offsets.all().into_iter().map(|(g, ..)| g).collect();
    groups.extend(b.clients.connection_counts().1.into_iter().map(|(g, _)| g));
    groups
}

#[allow(clippy::unnecessary_wraps)] // every page has the one signature of the router
fn groups(b: &Broker, _: &BTreeMap<String, String>) -> PageResult {
    let groups = known_groups(b);
    let (_, online) = b.clients.connection_counts();
    let online: BTreeMap<String, usize> = online.into_iter().collect();
    Ok(layout(
        "Consumer groups",
        &html! {
            table {
                thead { tr { th { "Group" } th.num { "Members online" } th { "Topics" } th.num { "Lag (messages)" } th.num { "Consumed / s (1 min)" } } }
                tbody {
                    @for g in &groups {
                        @let topics = group_topics(b, g);
                        @let lag: u64 = topics.iter().filter_map(|t| b.topics.get(t)).flat_map(|c| progress::group_progress(&b.store, &b.offsets, &c, g)).map(|p| p.lag()).sum();
                        @let tps: f64 = topics.iter().map(|t| b.progress.consume_tps(g, t)).sum();
                        tr {
                            td { a href=(link("/group", &[("name", g)])) { (g) } }
                            td.num { (online.get(g).copied().unwrap_or(0)) }
                            td { (topics.iter().cloned().collect::<Vec<_>>().join(", ")) }
                            td.num { (lag) }
                            td.num { (format!("{tps:.1}")) }
                        }
                    }
                }
            }
        },
    ))
}

/// The topics of a group: committed offsets and current subscriptions.
fn group_topics(b: &Broker, group: &str) -> BTreeSet<String> {
    let mut topics: BTreeSet<String> = b
        .offsets
        .of_group(group)
        .into_iter()
        .map(|(t, ..)| t)
        .collect();
    topics.extend(b.clients.subscribed_topics(group));
    topics
}

fn group(b: &Broker, params: &BTreeMap<String, String>) -> PageResult {
    let name = param(params, "name")
        .ok_or((StatusCode::BAD_REQUEST, "which group? (?name=…)".to_owned()))?;
    if !known_groups(b).contains(name) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no consumer group {name} on this broker"),
        ));
    }
    let members = b.clients.consumer_connection(name);
    let topics = group_topics(b, name);
    Ok(layout(
        &format!("Consumer group {name}"),
        &html! {
            @match &members {
                Some(c) => {
                    p { (c.connection_set.len()) " member(s) online, " (c.message_model) ", " (c.consume_type) ", " (c.consume_from_where) }
                    ul { @for m in &c.connection_set { li { code { (m.client_id) } " at " (m.client_addr) " (" (m.language) ")" } } }
                }
                None => { p { "No member online." } }
            }
            @for t in &topics {
                @let config = b.topics.get(t);
                section {
                    h2 { "Topic " a href=(link("/topic", &[("name", t)])) { (t) } }
                    @match &config {
                        None => { p { "The topic no longer exists on this broker." } }
                        Some(config) => {
                            @let queues = progress::group_progress(&b.store, &b.offsets, config, name);
                            p { "Lag " (queues.iter().map(progress::QueueProgress::lag).sum::<u64>()) " messages; "
                                (format!("{:.1}", b.progress.consume_tps(name, t))) " consumed per second over the last minute." }
                            table {
                                thead { tr { th.num { "Queue" } th.num { "Broker offset" } th.num { "Consumer offset" } th.num { "Lag" } th { "Last consumed message stored" } } }
                                tbody {
                                    @for q in &queues {
                                        tr {
                                            td.num { (q.queue_id) }
                                            td.num { (q.broker_offset) }
                                            td.num { (q.consumer_offset) }
                                            td.num { (q.lag()) }
                                            td { (when(q.last_consumed_ms)) }
                                        }
                                    }
                                }
                            }
                            (lag_chart(&b.progress.lag_series(name, t)))
                        }
                    }
                }
            }
        },
    ))
}

/// The lag samples as an SVG line chart (time across, messages up).
fn lag_chart(series: &[(i64, u64)]) -> Markup {
    const W: f64 = 640.0;
    const H: f64 = 160.0;
    const PAD: f64 = 40.0;
    if series.len() < 2 {
        return html! { p.muted { "The lag chart appears after two samples (one every " (progress::SAMPLE_INTERVAL.as_secs()) " s)." } };
    }
    let (t0, t1) = (series[0].0, series[series.len() - 1].0);
    let top = series.iter().map(|&(_, l)| l).max().unwrap_or(0).max(1);
    let span = (t1 - t0).max(1) as f64;
    let mut points = String::new();
    for &(t, lag) in series {
        let x = PAD + (t - t0) as f64 / span * (W - 2.0 * PAD);
        let y = H - PAD / 2.0 - lag as f64 / top as f64 * (H - PAD);
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    html! {
        figure {
            svg.chart width=(W) height=(H) viewBox=(format!("0 0 {W} {H}")) role="img" {
                title { "Lag over time" }
                // Explicit end tags: inside <svg> a bare `<line>` is not closed by HTML's
                // parser and would swallow what follows.
                line x1=(PAD) y1=(H - PAD / 2.0) x2=(W - PAD) y2=(H - PAD / 2.0) class="axis" {}
                line x1=(PAD) y1=(PAD / 2.0) x2=(PAD) y2=(H - PAD / 2.0) class="axis" {}
                text x="4" y=(PAD / 2.0 + 4.0) { (top) }
                text x="4" y=(H - PAD / 2.0) { "0" }
                polyline points=(points.trim_end()) class="lag" {}
            }
            figcaption { "Lag (messages) from " (when(t0)) " to " (when(t1)) }
        }
    }
}

fn message(b: &Broker, params: &BTreeMap<String, String>) -> PageResult {
    let topic = param(params, "topic");
    let key = param(params, "key");
    let id = param(params, "id");
    let queue: Option<u32> = number(params, "queue")?;
    let offset: Option<u64> = number(params, "offset")?;
    let found: Option<Vec<RecordGuard>> = if let Some(id) = id {
        let (_, phys) = format::parse_offset_msg_id(id).ok_or((
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not an offset message id (32 hex digits)"),
        ))?;
        Some(
            b.store
                .read(PhysicalOffset(phys))
                .ok()
                .flatten()
                .into_iter()
                .collect(),
        )
    } else if let (Some(topic), Some(key)) = (topic, key) {
        Some(
            b.store
                .query_message(topic, key, MAX_FOUND, 0, i64::MAX)
                .messages,
        )
    } else if let (Some(topic), Some(queue), Some(offset)) = (topic, queue, offset) {
        let at = b
            .store
            .commit_log_offset_in_queue(topic, queue, QueueOffset(offset));
        Some(
            at.and_then(|p| b.store.read(p).ok().flatten())
                .into_iter()
                .collect(),
        )
    } else {
        None
    };
    Ok(layout(
        "Messages",
        &html! {
            form method="get" action="/message" {
                fieldset {
                    legend { "By key" }
                    label { "Topic " input name="topic" value=(topic.unwrap_or_default()); }
                    label { "Key " input name="key" value=(key.unwrap_or_default()); }
                    button type="submit" { "Find" }
                }
            }
            form method="get" action="/message" {
                fieldset {
                    legend { "By message id" }
                    label { "Id " input name="id" size="34" value=(id.unwrap_or_default()); }
                    button type="submit" { "Find" }
                }
            }
            form method="get" action="/message" {
                fieldset {
                    legend { "By queue offset" }
                    label { "Topic " input name="topic" value=(topic.unwrap_or_default()); }
                    label { "Queue " input name="queue" size="4" value=(queue.map(|q| q.to_string()).unwrap_or_default()); }
                    label { "Offset " input name="offset" size="10" value=(offset.map(|o| o.to_string()).unwrap_or_default()); }
                    button type="submit" { "Find" }
                }
            }
            @match &found {
                None => {}
                Some(list) if list.is_empty() => { p.error { "No message found." } }
                Some(list) => {
                    p { (list.len()) " message(s)" }
                    @for rec in list {
                        @match rec.view() {
                            Ok(v) => (message_view(&v)),
                            Err(e) => { p.error { "A record that does not decode: " (e) } }
                        }
                    }
                }
            }
        },
    ))
}

fn message_view(v: &RecordView<'_>) -> Markup {
    let id = format::offset_msg_id(v.store_host, v.physical_offset as u64);
    let rows: Vec<(&str, String)> = vec![
        ("Message id", id),
        ("Topic", v.topic.to_owned()),
        (
            "Queue / offset",
            format!("{} / {}", v.queue_id, v.queue_offset),
        ),
        ("CommitLog offset", v.physical_offset.to_string()),
        (
            "Size",
            format!("{} bytes ({} of body)", v.total_size, v.body.len()),
        ),
        (
            "Stored",
            format!("{} by {}", when(v.store_timestamp), v.store_host),
        ),
        (
            "Born",
            format!("{} at {}", when(v.born_timestamp), v.born_host),
        ),
        ("Reconsume times", v.reconsume_times.to_string()),
        ("Flag / sys flag", format!("{} / {:#x}", v.flag, v.sys_flag)),
    ];
    let text = std::str::from_utf8(v.body).ok();
    html! {
        article.message {
            (pairs_table(&rows))
            h3 { "Properties" }
            table.pairs {
                @for (k, val) in format::parse_properties(v.properties) {
                    tr { th { (k) } td { (val) } }
                }
            }
            h3 { "Body" }
            @match text {
                Some(t) => {
                    pre.body { (t.chars().take(TEXT_PREVIEW).collect::<String>()) }
                    @if t.len() > TEXT_PREVIEW { p.muted { "(first " (TEXT_PREVIEW) " characters)" } }
                }
                None => {
                    pre.body { (hex_dump(&v.body[..v.body.len().min(HEX_PREVIEW)])) }
                    @if v.body.len() > HEX_PREVIEW { p.muted { "(first " (HEX_PREVIEW) " bytes, hex)" } }
                }
            }
        }
    }
}

/// 16 bytes a line: offset, hex, printable ASCII.
fn hex_dump(bytes: &[u8]) -> PreEscaped<String> {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", i * 16);
        for b in chunk {
            let _ = write!(out, "{b:02x} ");
        }
        for _ in chunk.len()..16 {
            out.push_str("   ");
        }
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    // Only hex digits, spaces and ASCII graphics: escape the few that matter in HTML.
    PreEscaped(maud::html! { (out) }.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_escapes_what_html_would_read() {
        let dump = hex_dump(b"<a&b>\x00\x01").into_string();
        assert!(dump.starts_with("00000000  3c 61 26 62 3e 00 01"), "{dump}");
        assert!(dump.contains("&lt;a&amp;b&gt;.."), "{dump}");
    }

    #[test]
    fn links_encode_names_with_percent_signs() {
        assert_eq!(
            link("/group", &[("name", "%RETRY%g 1")]),
            "/group?name=%25RETRY%25g+1"
        );
        assert_eq!(link("/topics", &[]), "/topics");
    }

    #[test]
    fn dates_and_sizes_read_as_people_write_them() {
        assert_eq!(when(0), "—");
        assert_eq!(when(1_767_243_600_123), "2026-01-01 05:00:00.123 UTC");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
