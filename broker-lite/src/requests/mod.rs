//! Every request broker-lite serves: [`TABLE`] maps each request code to its handler and
//! says where it runs; the handlers live in one module per family, each with its header
//! types. Adding a request code means one row here and a handler in its family's module.

mod access;
mod admin;
mod consumer_admin;
mod delay;
mod locks;
mod offsets;
mod pull;
mod query;
mod replication;
mod retry;
mod route;
mod send;
mod sessions;
mod stats;
mod transactions;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mqstore::TagFilter;
use serde_json::Value;

use crate::broker::Broker;
use crate::clients::Channel;
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;

pub use access::Access;
pub use retry::{ORIGIN_MESSAGE_ID, RETRY_TOPIC};
pub use transactions::CheckReport;

/// What processing a request produced.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Reply(RemotingCommand),
    /// Oneway request: nothing to send.
    NoReply,
    /// A pull found nothing and may wait.
    Hold(HeldPull),
}

/// A pull waiting for messages.
#[derive(Debug)]
pub struct HeldPull {
    /// The original request, processed again (without suspension) when woken.
    pub request: RemotingCommand,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Queue offset the pull asked for.
    pub offset: u64,
    /// How long to wait at most.
    pub timeout: Duration,
    /// The subscription's filter.
    pub filter: Option<Arc<TagFilter>>,
}

/// A refusal: the response code and remark a handler answers with instead of an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Response code.
    pub code: i32,
    /// Why, for the client.
    pub remark: String,
}

/// A header or body that does not parse is a SYSTEM_ERROR with the parser's words, as
/// RocketMQ answers a `RemotingCommandException`.
impl From<String> for Reject {
    fn from(remark: String) -> Self {
        Reject {
            code: response::SYSTEM_ERROR,
            remark,
        }
    }
}

/// What a handler returns: an outcome, or a refusal (so a bad header is one `?`).
pub type Handled = Result<Outcome, Reject>;

/// Answers with `response`.
#[allow(clippy::unnecessary_wraps)] // a handler's tail, in the handler's type
pub(crate) fn reply(response: RemotingCommand) -> Handled {
    Ok(Outcome::Reply(response))
}

/// Refuses a request with `code` and `remark`.
pub(crate) fn reject(code: i32, remark: impl Into<String>) -> Handled {
    Err(Reject {
        code,
        remark: remark.into(),
    })
}

/// Reads a required ext field as `T`.
pub(crate) fn field<T: std::str::FromStr>(req: &RemotingCommand, key: &str) -> Result<T, String> {
    let raw = req
        .ext(key)
        .ok_or_else(|| format!("the custom header lacks `{key}`"))?;
    raw.trim()
        .parse()
        .map_err(|_| format!("`{key}`=`{raw}` does not parse"))
}

/// Reads an optional ext field as `T`.
pub(crate) fn opt_field<T: std::str::FromStr>(
    req: &RemotingCommand,
    key: &str,
) -> Result<Option<T>, String> {
    match req.ext(key) {
        None => Ok(None),
        Some(raw) if raw.is_empty() || raw == "null" => Ok(None),
        Some(raw) => raw
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("`{key}`=`{raw}` does not parse")),
    }
}

/// Which listening port a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The broker port (`listenPort`, 10911).
    Broker,
    /// The built-in name-server port (9876): route requests only.
    NameServer,
}

/// Where a request may run.
#[derive(Debug, Clone, Copy)]
pub enum Runs {
    /// On the I/O thread: memory only, never waits. A hand-off to a blocking thread costs
    /// two thread wake-ups, on a small machine most of a cheap request's latency (measured:
    /// 1 producer 3–5 k msgs/s handed off vs 14 k inline).
    Inline,
    /// On the blocking pool: may fsync, read cold pages or wait for a lock.
    Blocking,
    /// Inline when the predicate says the request is cheap this time.
    InlineIf(fn(&Broker, &RemotingCommand) -> bool),
}

/// One row of the request table.
pub struct Route {
    /// The request code.
    pub code: i32,
    /// RocketMQ's name for it (logs).
    pub name: &'static str,
    /// The handler; the flag is whether a pull may be held (false when a held pull is
    /// processed again).
    pub handler: fn(&Broker, &Channel, &RemotingCommand, bool) -> Handled,
    /// Where it runs.
    pub runs: Runs,
    /// What an ACL account needs to make it (when `aclEnable=true`).
    pub access: Access,
    /// Also answered on the name-server port.
    pub name_server: bool,
}

const fn row(
    code: i32,
    name: &'static str,
    handler: fn(&Broker, &Channel, &RemotingCommand, bool) -> Handled,
    runs: Runs,
    access: Access,
) -> Route {
    Route {
        code,
        name,
        handler,
        runs,
        access,
        name_server: false,
    }
}

/// An ASYNC_FLUSH send to an existing topic is a copy into the mapping: cheap enough for
/// the I/O thread. A SYNC_FLUSH send waits for the disk, a SYNC_MASTER one for a slave; a
/// new topic is written to disk.
fn cheap_send(broker: &Broker, req: &RemotingCommand) -> bool {
    let topic_key = if req.code == request::SEND_MESSAGE {
        "topic"
    } else {
        "b"
    };
    broker.config.store.flush_disk_type == mqstore::FlushMode::Async
        && broker.config.store.broker_role != mqstore::BrokerRole::SyncMaster
        && req
            .ext(topic_key)
            .is_some_and(|t| broker.topics.contains(t))
}

/// Every request code broker-lite serves: the only list. One row per code: the code, its
/// RocketMQ name, the handler, where it runs, what an ACL account needs to send it (a code
/// without a row is refused with or without ACL).
#[rustfmt::skip]
pub const TABLE: &[Route] = &[
    row(request::SEND_MESSAGE, "SEND_MESSAGE", |b, ch, r, _| b.send(ch.remote, r), Runs::InlineIf(cheap_send), Access::Resources(access::send)),
    row(request::SEND_MESSAGE_V2, "SEND_MESSAGE_V2", |b, ch, r, _| b.send(ch.remote, r), Runs::InlineIf(cheap_send), Access::Resources(access::send)),
    row(request::SEND_BATCH_MESSAGE, "SEND_BATCH_MESSAGE", |b, ch, r, _| b.send(ch.remote, r), Runs::InlineIf(cheap_send), Access::Resources(access::send)),
    row(request::PULL_MESSAGE, "PULL_MESSAGE", |b, _, r, hold| b.pull(r, hold), Runs::Blocking, Access::Resources(access::pull)),
    row(request::LITE_PULL_MESSAGE, "LITE_PULL_MESSAGE", |b, _, r, hold| b.pull(r, hold), Runs::Blocking, Access::Resources(access::pull)),
    row(request::HEART_BEAT, "HEART_BEAT", |b, ch, r, _| b.heartbeat(ch, r), Runs::Blocking, Access::Resources(access::heartbeat)),
    row(request::UNREGISTER_CLIENT, "UNREGISTER_CLIENT", |b, ch, r, _| b.unregister(ch, r), Runs::Inline, Access::Signed),
    row(request::GET_CONSUMER_LIST_BY_GROUP, "GET_CONSUMER_LIST_BY_GROUP", |b, _, r, _| b.consumer_list(r), Runs::Inline, Access::Resources(access::group_sub)),
    row(request::QUERY_CONSUMER_OFFSET, "QUERY_CONSUMER_OFFSET", |b, _, r, _| b.query_offset(r), Runs::Inline, Access::Resources(access::group_offset)),
    row(request::UPDATE_CONSUMER_OFFSET, "UPDATE_CONSUMER_OFFSET", |b, _, r, _| b.update_offset(r), Runs::Inline, Access::Resources(access::group_offset)),
    row(request::GET_MAX_OFFSET, "GET_MAX_OFFSET", |b, _, r, _| b.queue_offset(r, |s, t, q| s.max_offset_in_queue(t, q).0 as i64), Runs::Inline, Access::Resources(access::topic_sub)),
    row(request::GET_MIN_OFFSET, "GET_MIN_OFFSET", |b, _, r, _| b.queue_offset(r, |s, t, q| s.min_offset_in_queue(t, q).0 as i64), Runs::Inline, Access::Resources(access::topic_sub)),
    row(request::SEARCH_OFFSET_BY_TIMESTAMP, "SEARCH_OFFSET_BY_TIMESTAMP", |b, _, r, _| b.search_offset(r), Runs::Blocking, Access::Resources(access::topic_sub)),
    row(request::GET_EARLIEST_MSG_STORETIME, "GET_EARLIEST_MSG_STORETIME", |b, _, r, _| b.earliest_time(r), Runs::Blocking, Access::Resources(access::topic_sub)),
    row(request::UPDATE_AND_CREATE_TOPIC, "UPDATE_AND_CREATE_TOPIC", |b, _, r, _| b.create_topic(r), Runs::Blocking, Access::Admin),
    row(request::GET_ALL_TOPIC_CONFIG, "GET_ALL_TOPIC_CONFIG", |b, _, r, _| ok(r, b.topics.to_json()), Runs::Blocking, Access::Admin),
    row(request::QUERY_MESSAGE, "QUERY_MESSAGE", |b, _, r, _| b.query_message(r), Runs::Blocking, Access::Resources(access::topic_sub)),
    row(request::VIEW_MESSAGE_BY_ID, "VIEW_MESSAGE_BY_ID", |b, _, r, _| b.view_message(r), Runs::Blocking, Access::Signed),
    row(request::CHECK_CLIENT_CONFIG, "CHECK_CLIENT_CONFIG", |_, _, r, _| Ok(Outcome::Reply(r.response(response::SUCCESS))), Runs::Inline, Access::Signed),
    row(request::CONSUMER_SEND_MSG_BACK, "CONSUMER_SEND_MSG_BACK", |b, _, r, _| b.send_back(r), Runs::Blocking, Access::Resources(access::send_back)),
    row(request::END_TRANSACTION, "END_TRANSACTION", |b, _, r, _| b.end_transaction(r), Runs::Blocking, Access::Signed),
    row(request::LOCK_BATCH_MQ, "LOCK_BATCH_MQ", |b, _, r, _| b.lock_batch(r), Runs::Blocking, Access::Resources(access::lock)),
    row(request::UNLOCK_BATCH_MQ, "UNLOCK_BATCH_MQ", |b, _, r, _| b.unlock_batch(r), Runs::Blocking, Access::Resources(access::lock)),
    row(request::GET_ALL_DELAY_OFFSET, "GET_ALL_DELAY_OFFSET", |b, _, r, _| ok(r, b.schedule.to_json()), Runs::Blocking, Access::Admin),
    row(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP", |b, _, r, _| b.put_subscription_group(r), Runs::Blocking, Access::Admin),
    row(request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, "GET_ALL_SUBSCRIPTIONGROUP_CONFIG", |b, _, r, _| ok(r, b.subscriptions.to_json()), Runs::Blocking, Access::Admin),
    row(request::DELETE_EXPIRED_COMMITLOG, "DELETE_EXPIRED_COMMITLOG", |b, _, r, _| b.delete_expired_now(r), Runs::Blocking, Access::Admin),
    row(request::GET_ALL_CONSUMER_OFFSET, "GET_ALL_CONSUMER_OFFSET", |b, _, r, _| ok(r, b.offsets.to_json()), Runs::Blocking, Access::Admin),
    row(request::GET_BROKER_RUNTIME_INFO, "GET_BROKER_RUNTIME_INFO", |b, _, r, _| ok(r, b.runtime_info()), Runs::Inline, Access::Signed),
    row(request::UPDATE_BROKER_CONFIG, "UPDATE_BROKER_CONFIG", |b, _, r, _| b.update_broker_config(r), Runs::Blocking, Access::Admin),
    row(request::GET_BROKER_CONFIG, "GET_BROKER_CONFIG", |b, _, r, _| b.broker_config(r), Runs::Inline, Access::Admin),
    row(request::GET_PRODUCER_CONNECTION_LIST, "GET_PRODUCER_CONNECTION_LIST", |b, _, r, _| b.producer_connection_list(r), Runs::Inline, Access::Admin),
    row(request::GET_CONSUMER_CONNECTION_LIST, "GET_CONSUMER_CONNECTION_LIST", |b, _, r, _| b.consumer_connection_list(r), Runs::Inline, Access::Admin),
    row(request::QUERY_TOPIC_CONSUME_BY_WHO, "QUERY_TOPIC_CONSUME_BY_WHO", |b, _, r, _| b.topic_consumed_by(r), Runs::Inline, Access::Admin),
    row(request::GET_TOPIC_STATS_INFO, "GET_TOPIC_STATS_INFO", |b, _, r, _| b.topic_stats(r), Runs::Blocking, Access::Resources(access::topic_sub)),
    row(request::GET_CONSUME_STATS, "GET_CONSUME_STATS", |b, _, r, _| b.consume_stats(r), Runs::Blocking, Access::Resources(access::group_sub)),
    row(request::INVOKE_BROKER_TO_RESET_OFFSET, "INVOKE_BROKER_TO_RESET_OFFSET", |b, _, r, _| b.reset_offset(r), Runs::Blocking, Access::Admin),
    row(request::GET_CONSUMER_RUNNING_INFO, "GET_CONSUMER_RUNNING_INFO", |b, _, r, _| b.consumer_running_info(r), Runs::Blocking, Access::Admin),
    row(request::QUERY_CONSUME_QUEUE, "QUERY_CONSUME_QUEUE", |b, _, r, _| b.query_consume_queue(r), Runs::Blocking, Access::Resources(access::topic_sub)),
    row(request::DELETE_TOPIC_IN_BROKER, "DELETE_TOPIC_IN_BROKER", |b, _, r, _| b.delete_topic(r), Runs::Blocking, Access::Admin),
    row(request::DELETE_TOPIC_IN_BROKER_LIST, "DELETE_TOPIC_IN_BROKER_LIST", |b, _, r, _| b.delete_topic_list(r), Runs::Blocking, Access::Admin),
    row(request::DELETE_SUBSCRIPTIONGROUP, "DELETE_SUBSCRIPTIONGROUP", |b, _, r, _| b.delete_subscription_group(r), Runs::Blocking, Access::Admin),
    Route { name_server: true, ..row(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, "GET_ALL_TOPIC_LIST_FROM_NAMESERVER", |b, _, r, _| b.topic_list(r), Runs::Inline, Access::Signed) },
    Route { name_server: true, ..row(request::DELETE_TOPIC_IN_NAMESRV, "DELETE_TOPIC_IN_NAMESRV", |b, _, r, _| b.delete_topic_route(r), Runs::Inline, Access::Admin) },
    Route { name_server: true, ..row(request::GET_TOPICS_BY_CLUSTER, "GET_TOPICS_BY_CLUSTER", |b, _, r, _| b.topic_list(r), Runs::Inline, Access::Signed) },
    Route { name_server: true, ..row(request::REGISTER_BROKER, "REGISTER_BROKER", |b, _, r, _| b.register_group_member(r), Runs::Inline, Access::Admin) },
    Route { name_server: true, ..row(request::UNREGISTER_BROKER, "UNREGISTER_BROKER", |b, _, r, _| b.unregister_group_member(r), Runs::Inline, Access::Admin) },
    Route { name_server: true, ..row(request::GET_ROUTEINFO_BY_TOPIC, "GET_ROUTEINFO_BY_TOPIC", |b, _, r, _| Ok(Outcome::Reply(b.route(r))), Runs::Inline, Access::Signed) },
    Route { name_server: true, ..row(request::GET_BROKER_CLUSTER_INFO, "GET_BROKER_CLUSTER_INFO", |b, _, r, _| Ok(Outcome::Reply(b.route(r))), Runs::Inline, Access::Signed) },
];

/// A SUCCESS response with a JSON body.
#[allow(clippy::unnecessary_wraps)] // a handler's tail, in the handler's type
fn ok(req: &RemotingCommand, body: String) -> Handled {
    Ok(Outcome::Reply(
        req.response(response::SUCCESS).with_body(body),
    ))
}

/// A map keyed by `MessageQueue` as RocketMQ's fastjson writes it: each key is the queue
/// object itself (`{{"brokerName":"b","queueId":0,"topic":"t"}:{...}}`). Not strict JSON,
/// but what RocketMQ's Java tools read back, and what rocketmq-client-rust's admin decoder
/// normalises; a string key would be read by neither as a `MessageQueue`.
pub(crate) fn queue_keyed_map(broker_name: &str, entries: &[(&str, u32, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (topic, queue_id, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Fields in fastjson's (alphabetical) order.
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{{\"brokerName\":{},\"queueId\":{queue_id},\"topic\":{}}}:{value}",
            Value::from(broker_name),
            Value::from(*topic),
        );
    }
    out.push('}');
    out
}

/// The table row serving `code` on `port`.
pub fn route_of(port: Port, code: i32) -> Option<&'static Route> {
    TABLE
        .iter()
        .find(|r| r.code == code && (port == Port::Broker || r.name_server))
}

/// Whether a request may run on the I/O thread. Everything on the name-server port does
/// (route lookups are memory only); unknown codes are answered at once too.
pub fn runs_inline(port: Port, broker: &Broker, req: &RemotingCommand) -> bool {
    if port == Port::NameServer {
        return true;
    }
    match route_of(port, req.code).map(|r| r.runs) {
        Some(Runs::Inline) => true,
        Some(Runs::InlineIf(cheap)) => cheap(broker, req),
        Some(Runs::Blocking) | None => false,
    }
}

/// Handles one request. `allow_suspend` is false when a held pull is processed again.
pub fn process(
    port: Port,
    broker: &Broker,
    channel: &Channel,
    req: &RemotingCommand,
    allow_suspend: bool,
) -> Outcome {
    let handled = match route_of(port, req.code) {
        Some(route) => match permitted(broker, channel, route, req) {
            Ok(()) => (route.handler)(broker, channel, req, allow_suspend),
            Err(refused) => Err(refused),
        },
        None if port == Port::NameServer && req.is_oneway() => Ok(Outcome::NoReply),
        None => reject(
            response::REQUEST_CODE_NOT_SUPPORTED,
            format!(" request type {} not supported", req.code),
        ),
    };
    let outcome =
        handled.unwrap_or_else(|r| Outcome::Reply(req.response(r.code).with_remark(r.remark)));
    if !req.is_oneway() {
        return outcome;
    }
    if let Outcome::Reply(resp) = &outcome {
        if is_send(req.code)
            && !matches!(resp.code, response::SUCCESS | response::FLUSH_DISK_TIMEOUT)
        {
            let n = broker
                .stats
                .oneway_send_failures
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            tracing::warn!(
                code = resp.code,
                remark = resp.remark.as_deref().unwrap_or(""),
                failures = n,
                remote = %channel.remote,
                "oneway send not stored"
            );
        }
    }
    match outcome {
        Outcome::Hold(h) => Outcome::Hold(h),
        _ => Outcome::NoReply,
    }
}

/// The ACL check (when `aclEnable=true`): NO_PERMISSION with the reason, before the
/// handler has touched anything.
fn permitted(
    broker: &Broker,
    channel: &Channel,
    route: &Route,
    req: &RemotingCommand,
) -> Result<(), Reject> {
    let Some(acl) = &broker.acl else {
        return Ok(());
    };
    acl.check(channel.remote.ip(), req, route.access.needs(req), route.name)
        .map_err(|remark| {
            let n = broker.stats.acl_refusals.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(remote = %channel.remote, code = route.name, remark, refusals = n, "request refused by ACL");
            Reject {
                code: response::NO_PERMISSION,
                remark,
            }
        })
}

impl Broker {
    /// Handles one request on the broker port (see [`process`]).
    pub fn process(
        &self,
        channel: &Channel,
        req: &RemotingCommand,
        allow_suspend: bool,
    ) -> Outcome {
        process(Port::Broker, self, channel, req, allow_suspend)
    }
}

/// Whether `code` is one of the send requests (10, 310, 320).
pub fn is_send(code: i32) -> bool {
    matches!(
        code,
        request::SEND_MESSAGE | request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE
    )
}

/// A pseudo-random number below `n` (queue choice for `queueId < 0`).
pub(crate) fn random_below(n: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() % u64::from(n)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_are_written_as_fastjson_writes_them() {
        let map = queue_keyed_map(
            "broker-a",
            &[
                ("T\"q", 0, serde_json::json!({"maxOffset": 3})),
                ("T\"q", 1, serde_json::json!({"maxOffset": 4})),
            ],
        );
        assert_eq!(
            map,
            r#"{{"brokerName":"broker-a","queueId":0,"topic":"T\"q"}:{"maxOffset":3},{"brokerName":"broker-a","queueId":1,"topic":"T\"q"}:{"maxOffset":4}}"#
        );
        assert_eq!(queue_keyed_map("b", &[]), "{}");
    }

    #[test]
    fn every_code_has_one_row_and_only_route_requests_are_on_the_name_server_port() {
        let mut codes: Vec<i32> = TABLE.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n, "a code appears twice");
        for r in TABLE {
            assert_eq!(
                r.name_server,
                matches!(
                    r.code,
                    request::GET_ROUTEINFO_BY_TOPIC
                        | request::GET_BROKER_CLUSTER_INFO
                        | request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER
                        | request::GET_TOPICS_BY_CLUSTER
                        | request::DELETE_TOPIC_IN_NAMESRV
                        | request::REGISTER_BROKER
                        | request::UNREGISTER_BROKER
                ),
                "{}",
                r.name
            );
            assert!(route_of(Port::Broker, r.code).is_some(), "{}", r.name);
        }
        assert!(route_of(Port::NameServer, request::SEND_MESSAGE).is_none());
        assert!(route_of(Port::Broker, 999_999).is_none());
    }

    /// Every request that changes or dumps broker-wide state needs an admin account.
    #[test]
    fn administration_needs_admin_and_data_requests_name_their_resources() {
        let admin = [
            request::UPDATE_AND_CREATE_TOPIC,
            request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
            request::DELETE_EXPIRED_COMMITLOG,
            request::GET_ALL_TOPIC_CONFIG,
            request::GET_ALL_CONSUMER_OFFSET,
            request::GET_ALL_DELAY_OFFSET,
            request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
            request::REGISTER_BROKER,
            request::UNREGISTER_BROKER,
            request::GET_BROKER_CONFIG,
            request::UPDATE_BROKER_CONFIG,
            request::DELETE_TOPIC_IN_BROKER,
            request::DELETE_TOPIC_IN_BROKER_LIST,
            request::DELETE_TOPIC_IN_NAMESRV,
            request::GET_PRODUCER_CONNECTION_LIST,
            request::GET_CONSUMER_CONNECTION_LIST,
            request::QUERY_TOPIC_CONSUME_BY_WHO,
            request::DELETE_SUBSCRIPTIONGROUP,
            request::INVOKE_BROKER_TO_RESET_OFFSET,
            request::GET_CONSUMER_RUNNING_INFO,
        ];
        for r in TABLE {
            assert_eq!(
                matches!(r.access, Access::Admin),
                admin.contains(&r.code),
                "{}",
                r.name
            );
        }
        let send = RemotingCommand::request(request::SEND_MESSAGE_V2).with_ext("b", "T");
        let needs = route_of(Port::Broker, send.code)
            .expect("row")
            .access
            .needs(&send)
            .expect("needs");
        assert_eq!(
            needs.resources,
            vec![(
                crate::acl::Resource::Topic("T".into()),
                crate::acl::Perm::PUB
            )]
        );
        let retry = RemotingCommand::request(request::SEND_MESSAGE).with_ext("topic", "%RETRY%g");
        let needs = route_of(Port::Broker, retry.code)
            .expect("row")
            .access
            .needs(&retry)
            .expect("needs");
        assert_eq!(
            needs.resources,
            vec![(
                crate::acl::Resource::Group("g".into()),
                crate::acl::Perm::SUB
            )]
        );
        let pull = RemotingCommand::request(request::PULL_MESSAGE).with_ext("topic", "T");
        assert!(
            route_of(Port::Broker, pull.code)
                .expect("row")
                .access
                .needs(&pull)
                .is_err(),
            "a pull without its group cannot be judged"
        );
    }
}
