//! The request processors (§14): synchronous functions from a request to an outcome. The
//! network layer runs them on blocking threads, so the store is never called from the
//! runtime's reactor threads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use mqstore::format::{self, keys};
use mqstore::{
    GetMessageStatus, Message, MessageFilter, MessageStore, PhysicalOffset, PutResult, PutStatus,
    QueueOffset, TagFilter,
};

use crate::clients::{Channel, ClientManager, HeartbeatData};
use crate::codes::{pull_flag, request, response};
use crate::config::BrokerConfig;
use crate::locks::QueueLocks;
use crate::long_poll::PullWaiters;
use crate::offsets::OffsetManager;
use crate::remoting::RemotingCommand;
use crate::schedule::ScheduleService;
use crate::subscriptions::SubscriptionGroupManager;
use crate::topics::{self, TopicConfig, TopicManager};
use crate::transaction::{Transactions, CHECK_GROUP, OP_TOPIC};

/// Most messages one QUERY_MESSAGE returns (`defaultQueryMaxNum`).
const DEFAULT_QUERY_MAX_NUM: usize = 32;

/// What processing a request produced.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Reply(RemotingCommand),
    /// Oneway request: nothing to send.
    NoReply,
    /// A pull found nothing and may wait (§14.4).
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

/// Counters an operator (and the tests) can read.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Oneway sends that could not be stored (each is also logged).
    pub oneway_send_failures: AtomicU64,
    /// Sends answered SYSTEM_BUSY.
    pub busy_rejections: AtomicU64,
    /// Sends waiting for or inside the store right now.
    pub sends_in_flight: AtomicUsize,
    /// Messages stored.
    pub messages_stored: AtomicU64,
}

/// The broker: the store plus topics, offsets and clients.
#[derive(Debug)]
pub struct Broker {
    /// Configuration.
    pub config: BrokerConfig,
    /// The message store.
    pub store: Arc<MessageStore>,
    /// Topic configurations.
    pub topics: TopicManager,
    /// Consumer offsets.
    pub offsets: OffsetManager,
    /// Connected producers and consumers.
    pub clients: ClientManager,
    /// Held pulls.
    pub waiters: Arc<PullWaiters>,
    /// Counters.
    pub stats: BrokerStats,
    /// Subscription groups (retry settings).
    pub subscriptions: SubscriptionGroupManager,
    /// Delayed delivery.
    pub schedule: ScheduleService,
    /// Resolved transactions.
    pub transactions: Transactions,
    /// Orderly consumers' queue locks.
    pub locks: QueueLocks,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store did not open.
    #[error("store: {0}")]
    Store(#[from] mqstore::Error),
    /// A metadata file is corrupt.
    #[error("metadata: {0}")]
    Metadata(#[from] crate::json_file::LoadError),
}

/// A response with a code and a remark.
pub(crate) fn error(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> Outcome {
    Outcome::Reply(req.response(code).with_remark(remark))
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

/// SendMessageRequestHeader, from V1 (full names) or V2 (letters) ext fields.
struct SendHeader {
    topic: String,
    default_topic: String,
    default_topic_queue_nums: u32,
    queue_id: i32,
    sys_flag: i32,
    born_timestamp: i64,
    flag: i32,
    properties: String,
    reconsume_times: i32,
    batch: bool,
    max_reconsume_times: Option<i32>,
}

impl SendHeader {
    fn parse(req: &RemotingCommand) -> Result<Self, String> {
        let v2 = req.code == request::SEND_MESSAGE_V2 || req.code == request::SEND_BATCH_MESSAGE;
        let k = |long: &'static str, short: &'static str| if v2 { short } else { long };
        let _producer_group: String = field(req, k("producerGroup", "a"))?;
        Ok(SendHeader {
            topic: field(req, k("topic", "b"))?,
            default_topic: opt_field(req, k("defaultTopic", "c"))?
                .unwrap_or_else(|| topics::AUTO_CREATE_TOPIC.to_owned()),
            default_topic_queue_nums: opt_field(req, k("defaultTopicQueueNums", "d"))?.unwrap_or(4),
            queue_id: field(req, k("queueId", "e"))?,
            sys_flag: opt_field(req, k("sysFlag", "f"))?.unwrap_or(0),
            born_timestamp: opt_field(req, k("bornTimestamp", "g"))?.unwrap_or(0),
            flag: opt_field(req, k("flag", "h"))?.unwrap_or(0),
            properties: opt_field(req, k("properties", "i"))?.unwrap_or_default(),
            reconsume_times: opt_field(req, k("reconsumeTimes", "j"))?.unwrap_or(0),
            batch: opt_field(req, k("batch", "m"))?.unwrap_or(false)
                || req.code == request::SEND_BATCH_MESSAGE,
            max_reconsume_times: opt_field(req, k("maxReconsumeTimes", "l"))?,
        })
    }
}

/// Decodes a batch body (§4.5): per message `total, magic, bodyCRC, flag, bodyLen, body,
/// propsLen(i16), props`.
fn decode_batch(mut body: &[u8]) -> Result<Vec<(i32, Vec<u8>, String)>, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("batch body truncated".into());
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h)
    }
    fn int(b: &mut &[u8]) -> Result<i32, String> {
        let x = take(b, 4)?;
        Ok(i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
    }
    let mut out = Vec::new();
    while !body.is_empty() {
        let total = int(&mut body)?;
        let start_len = body.len();
        let _magic = int(&mut body)?;
        let _crc = int(&mut body)?;
        let flag = int(&mut body)?;
        let body_len = usize::try_from(int(&mut body)?).map_err(|_| "negative body length")?;
        let msg_body = take(&mut body, body_len)?.to_vec();
        let pl = take(&mut body, 2)?;
        let props_len = usize::try_from(i16::from_be_bytes([pl[0], pl[1]]))
            .map_err(|_| "negative properties length")?;
        let props = std::str::from_utf8(take(&mut body, props_len)?)
            .map_err(|_| "properties are not UTF-8")?
            .to_owned();
        if usize::try_from(total).ok() != Some(4 + start_len - body.len()) {
            return Err(format!("batch entry declares {total} bytes"));
        }
        out.push((flag, msg_body, props));
    }
    if out.is_empty() {
        return Err("empty batch".into());
    }
    Ok(out)
}

/// Adds the `extra` properties whose names `msg` does not already have.
fn with_missing_properties(mut msg: Message, extra: &[(&str, &str)]) -> Message {
    for (k, v) in extra {
        if msg.property(k).is_none() {
            msg = msg.with_property(k, v);
        }
    }
    msg
}

impl Broker {
    /// Opens the store and the metadata files.
    ///
    /// # Errors
    /// The store's error, or a corrupt metadata file without a usable backup.
    pub fn open(mut config: BrokerConfig) -> Result<Arc<Broker>, StartError> {
        config.sync_store_host();
        let waiters = Arc::new(PullWaiters::default());
        let store = MessageStore::builder(config.store.store_path_root_dir.clone())
            .config(config.store.clone())
            .arrival_listener(Arc::clone(&waiters) as Arc<dyn mqstore::ArrivalListener>)
            .open()?;
        let dir = config.config_dir();
        let topics = TopicManager::load(
            dir.join("topics.json"),
            &config.broker_cluster_name,
            &config.broker_name,
            config.auto_create_topic_enable,
            config.default_topic_queue_nums,
        )?;
        let offsets = OffsetManager::load(dir.join("consumerOffset.json"))?;
        let subscriptions = SubscriptionGroupManager::load(
            dir.join("subscriptionGroup.json"),
            config.auto_create_subscription_group,
        )?;
        topics.persist();
        let store = Arc::new(store);
        let op_from = offsets
            .query(CHECK_GROUP, OP_TOPIC, 0)
            .and_then(|o| u64::try_from(o).ok())
            .unwrap_or(0);
        let transactions = Transactions::load(&store, op_from);
        let schedule = ScheduleService::start(
            Arc::clone(&store),
            store.config().delay_levels()?,
            dir.join("delayOffset.json"),
        )?;
        Ok(Arc::new(Broker {
            config,
            store,
            topics,
            offsets,
            clients: ClientManager::default(),
            waiters,
            stats: BrokerStats::default(),
            subscriptions,
            schedule,
            transactions,
            locks: QueueLocks::default(),
        }))
    }

    /// Handles one broker request. `allow_suspend` is false when a held pull is processed
    /// again.
    pub fn process(
        &self,
        channel: &Channel,
        req: &RemotingCommand,
        allow_suspend: bool,
    ) -> Outcome {
        let outcome = match req.code {
            code if is_send(code) => self.send(channel.remote, req),
            request::PULL_MESSAGE | request::LITE_PULL_MESSAGE => self.pull(req, allow_suspend),
            request::HEART_BEAT => self.heartbeat(channel, req),
            request::UNREGISTER_CLIENT => self.unregister(channel, req),
            request::GET_CONSUMER_LIST_BY_GROUP => self.consumer_list(req),
            request::QUERY_CONSUMER_OFFSET => self.query_offset(req),
            request::UPDATE_CONSUMER_OFFSET => self.update_offset(req),
            request::GET_MAX_OFFSET => {
                self.queue_offset(req, |s, t, q| s.max_offset_in_queue(t, q).0 as i64)
            }
            request::GET_MIN_OFFSET => {
                self.queue_offset(req, |s, t, q| s.min_offset_in_queue(t, q).0 as i64)
            }
            request::SEARCH_OFFSET_BY_TIMESTAMP => self.search_offset(req),
            request::GET_EARLIEST_MSG_STORETIME => self.earliest_time(req),
            request::UPDATE_AND_CREATE_TOPIC => self.create_topic(req),
            request::GET_ALL_TOPIC_CONFIG => Outcome::Reply(
                req.response(response::SUCCESS)
                    .with_body(self.topics.to_json()),
            ),
            request::QUERY_MESSAGE => self.query_message(req),
            request::VIEW_MESSAGE_BY_ID => self.view_message(req),
            request::CHECK_CLIENT_CONFIG => Outcome::Reply(req.response(response::SUCCESS)),
            request::CONSUMER_SEND_MSG_BACK => self.send_back(req),
            request::END_TRANSACTION => self.end_transaction(req),
            request::LOCK_BATCH_MQ => self.lock_batch(req),
            request::UNLOCK_BATCH_MQ => self.unlock_batch(req),
            request::GET_ALL_DELAY_OFFSET => Outcome::Reply(
                req.response(response::SUCCESS)
                    .with_body(self.schedule.to_json()),
            ),
            request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => self.put_subscription_group(req),
            request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => Outcome::Reply(
                req.response(response::SUCCESS)
                    .with_body(self.subscriptions.to_json()),
            ),
            request::DELETE_EXPIRED_COMMITLOG => self.delete_expired_now(req),
            request::GET_ROUTEINFO_BY_TOPIC | request::GET_BROKER_CLUSTER_INFO => {
                Outcome::Reply(self.route(req))
            }
            code => error(
                req,
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {code} not supported"),
            ),
        };
        if req.is_oneway() {
            if let Outcome::Reply(resp) = &outcome {
                if is_send(req.code)
                    && !matches!(resp.code, response::SUCCESS | response::FLUSH_DISK_TIMEOUT)
                {
                    let n = self
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
            return match outcome {
                Outcome::Hold(h) => Outcome::Hold(h),
                _ => Outcome::NoReply,
            };
        }
        outcome
    }

    /// Handles a name-server request (the built-in route service).
    pub fn process_route(&self, req: &RemotingCommand) -> Outcome {
        match req.code {
            request::GET_ROUTEINFO_BY_TOPIC | request::GET_BROKER_CLUSTER_INFO => {
                Outcome::Reply(self.route(req))
            }
            _ if req.is_oneway() => Outcome::NoReply,
            code => error(
                req,
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {code} not supported"),
            ),
        }
    }

    fn broker_data(&self) -> serde_json::Value {
        serde_json::json!({
            "cluster": self.config.broker_cluster_name,
            "brokerName": self.config.broker_name,
            "brokerAddrs": { self.config.broker_id.to_string(): self.config.broker_addr().to_string() },
            "zoneName": null,
            "enableActingMaster": false,
        })
    }

    fn route(&self, req: &RemotingCommand) -> RemotingCommand {
        if req.code == request::GET_BROKER_CLUSTER_INFO {
            let body = serde_json::json!({
                "brokerAddrTable": { self.config.broker_name.clone(): self.broker_data() },
                "clusterAddrTable": { self.config.broker_cluster_name.clone(): [self.config.broker_name] },
            });
            return req.response(response::SUCCESS).with_body(body.to_string());
        }
        let topic = req.ext("topic").unwrap_or_default();
        let config = match self.topics.get(topic) {
            Some(c) => c,
            None if topic.starts_with(topics::RETRY_GROUP_TOPIC_PREFIX) => TopicConfig::new(
                topic,
                1,
                crate::codes::perm::READ | crate::codes::perm::WRITE,
            ),
            None => {
                return req.response(response::TOPIC_NOT_EXIST).with_remark(format!(
                    "No topic route info in name server for the topic: {topic}"
                ));
            }
        };
        let body = serde_json::json!({
            "orderTopicConf": null,
            "queueDatas": [{
                "brokerName": self.config.broker_name,
                "readQueueNums": config.read_queue_nums,
                "writeQueueNums": config.write_queue_nums,
                "perm": config.perm,
                "topicSysFlag": config.topic_sys_flag,
                "topicSynFlag": config.topic_sys_flag,
            }],
            "brokerDatas": [self.broker_data()],
            "filterServerTable": {},
            "topicQueueMappingInfo": null,
        });
        req.response(response::SUCCESS).with_body(body.to_string())
    }

    fn send(&self, born_host: SocketAddr, req: &RemotingCommand) -> Outcome {
        let h = match SendHeader::parse(req) {
            Ok(h) => h,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        if let Err(e) = topics::validate_topic(&h.topic) {
            return error(req, response::SYSTEM_ERROR, e);
        }
        if topics::is_not_allowed_send(&h.topic) {
            return error(
                req,
                response::SYSTEM_ERROR,
                format!("Sending message to topic[{}] is forbidden.", h.topic),
            );
        }
        let config = if h.topic.starts_with(topics::RETRY_GROUP_TOPIC_PREFIX) {
            let group = &h.topic[topics::RETRY_GROUP_TOPIC_PREFIX.len()..];
            Some(
                self.topics
                    .get(&h.topic)
                    .unwrap_or_else(|| self.topics.ensure_retry_topic(group)),
            )
        } else {
            self.topics
                .get_or_auto_create(&h.topic, &h.default_topic, h.default_topic_queue_nums)
        };
        let Some(config) = config else {
            return error(
                req,
                response::TOPIC_NOT_EXIST,
                format!("topic[{}] not exist, apply first please!", h.topic),
            );
        };
        if !config.writable() {
            return error(
                req,
                response::NO_PERMISSION,
                format!("the topic[{}] sending message is forbidden", h.topic),
            );
        }
        let queue_id = if h.queue_id < 0 {
            random_below(config.write_queue_nums.max(1))
        } else {
            let q = h.queue_id as u32;
            if q >= config.read_queue_nums.max(config.write_queue_nums) {
                return error(
                    req,
                    response::SYSTEM_ERROR,
                    format!(
                        "request queueId[{q}] is illegal, {:?} Producer: {born_host}",
                        config.topic_name
                    ),
                );
            }
            q
        };
        let cluster = [("CLUSTER", self.config.broker_cluster_name.as_str())];
        let template = Message {
            topic: h.topic.clone(),
            queue_id,
            flag: h.flag,
            body: Vec::new(),
            properties: String::new(),
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host,
            reconsume_times: h.reconsume_times,
            prepared_transaction_offset: 0,
        };
        let (result, uniq) = if h.batch {
            let entries = match decode_batch(&req.body) {
                Ok(e) => e,
                Err(e) => return error(req, response::MESSAGE_ILLEGAL, e),
            };
            let batch_props: Vec<(&str, &str)> = format::parse_properties(&h.properties)
                .chain(cluster.iter().copied())
                .collect();
            let mut msgs: Vec<Message> = Vec::with_capacity(entries.len());
            for (flag, body, properties) in entries {
                let msg = Message {
                    flag,
                    body,
                    properties,
                    ..template.clone()
                };
                match self.route_sent(
                    with_missing_properties(msg, &batch_props),
                    h.max_reconsume_times,
                ) {
                    Ok(m) => msgs.push(m),
                    Err((code, remark)) => return error(req, code, remark),
                }
            }
            let uniq: Vec<&str> = msgs
                .iter()
                .filter_map(|m| m.property(keys::UNIQ_KEY))
                .collect();
            let uniq = uniq.join(",");
            (self.store.put_batch(&msgs), uniq)
        } else {
            let msg = with_missing_properties(
                Message {
                    body: req.body.to_vec(),
                    properties: h.properties.clone(),
                    ..template
                },
                &cluster,
            );
            let msg = match self.route_sent(msg, h.max_reconsume_times) {
                Ok(m) => m,
                Err((code, remark)) => return error(req, code, remark),
            };
            let uniq = msg.property(keys::UNIQ_KEY).unwrap_or_default().to_owned();
            (self.store.put(&msg), uniq)
        };
        self.send_response(req, queue_id, result, &uniq)
    }

    fn send_response(
        &self,
        req: &RemotingCommand,
        queue_id: u32,
        result: mqstore::Result<PutResult>,
        uniq: &str,
    ) -> Outcome {
        let result = match result {
            Ok(r) => r,
            Err(mqstore::Error::DiskFull { .. }) => {
                return error(
                    req,
                    response::SYSTEM_ERROR,
                    "disk full: the message was not stored",
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "store failed a put");
                return error(req, response::SYSTEM_ERROR, format!("store error: {e}"));
            }
        };
        let code = match result.status {
            PutStatus::PutOk => response::SUCCESS,
            PutStatus::FlushDiskTimeout => response::FLUSH_DISK_TIMEOUT,
            PutStatus::FlushSlaveTimeout => response::FLUSH_SLAVE_TIMEOUT,
            PutStatus::SlaveNotAvailable => response::SLAVE_NOT_AVAILABLE,
            PutStatus::MessageIllegal | PutStatus::PropertiesSizeExceeded => {
                response::MESSAGE_ILLEGAL
            }
            PutStatus::ServiceNotAvailable => response::SERVICE_NOT_AVAILABLE,
            PutStatus::DiskFull => {
                return error(
                    req,
                    response::SERVICE_NOT_AVAILABLE,
                    "service not available now: the broker's disk is full \
                     (above diskSpaceWarningLevelRatio); the message was not stored",
                );
            }
            PutStatus::OsPageCacheBusy => {
                return error(
                    req,
                    response::SYSTEM_ERROR,
                    "[PC_SYNCHRONIZED]broker busy, start flow control for a while",
                );
            }
            _ => response::SYSTEM_ERROR,
        };
        let Some(appended) = result.appended.filter(|_| {
            matches!(
                code,
                response::SUCCESS
                    | response::FLUSH_DISK_TIMEOUT
                    | response::FLUSH_SLAVE_TIMEOUT
                    | response::SLAVE_NOT_AVAILABLE
            )
        }) else {
            return error(req, code, result.status.as_str());
        };
        self.stats
            .messages_stored
            .fetch_add(u64::from(appended.msg_count), Ordering::Relaxed);
        let mut resp = req
            .response(code)
            .with_ext("msgId", appended.msg_id())
            .with_ext("queueId", queue_id)
            .with_ext("queueOffset", appended.queue_offset.0)
            .with_ext("MSG_REGION", &self.config.region_id)
            .with_ext("TRACE_ON", self.config.trace_on);
        if !uniq.is_empty() {
            resp = resp.with_ext("transactionId", uniq);
        }
        Outcome::Reply(resp)
    }

    fn pull(&self, req: &RemotingCommand, allow_suspend: bool) -> Outcome {
        let parsed = (|| -> Result<_, String> {
            Ok((
                field::<String>(req, "consumerGroup")?,
                field::<String>(req, "topic")?,
                field::<i32>(req, "queueId")?,
                field::<i64>(req, "queueOffset")?,
                field::<i32>(req, "maxMsgNums")?,
                field::<i32>(req, "sysFlag")?,
                opt_field::<i64>(req, "commitOffset")?.unwrap_or(-1),
                opt_field::<i64>(req, "suspendTimeoutMillis")?.unwrap_or(15_000),
                opt_field::<i64>(req, "subVersion")?.unwrap_or(0),
            ))
        })();
        let (
            group,
            topic,
            queue_id,
            queue_offset,
            max_msgs,
            sys_flag,
            commit_offset,
            suspend_ms,
            sub_version,
        ) = match parsed {
            Ok(p) => p,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        let Some(config) = self.topics.get(&topic) else {
            return error(
                req,
                response::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist, apply first please!"),
            );
        };
        if !config.readable() {
            return error(
                req,
                response::NO_PERMISSION,
                format!("the topic[{topic}] pulling message is forbidden"),
            );
        }
        if queue_id < 0 || queue_id as u32 >= config.read_queue_nums {
            return error(
                req,
                response::SYSTEM_ERROR,
                format!("queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]", config.read_queue_nums),
            );
        }
        let queue_id = queue_id as u32;
        let filter: Arc<TagFilter> = if sys_flag & pull_flag::SUBSCRIPTION != 0 {
            let expr_type = req.ext("expressionType").unwrap_or("TAG");
            if !expr_type.is_empty() && !expr_type.eq_ignore_ascii_case("TAG") {
                return error(
                    req,
                    response::SYSTEM_ERROR,
                    "The broker does not support consumer to filter message by SQL92",
                );
            }
            Arc::new(TagFilter::parse(req.ext("subscription").unwrap_or("*")))
        } else {
            let Some(sub) = self.clients.subscription(&group, &topic) else {
                return error(
                    req,
                    response::SUBSCRIPTION_NOT_EXIST,
                    format!("the consumer's subscription not exist, group: {group} topic: {topic}"),
                );
            };
            if sub.sub_version < sub_version {
                return error(
                    req,
                    response::SUBSCRIPTION_NOT_LATEST,
                    "the consumer's subscription not latest",
                );
            }
            if !sub.is_tag() {
                return error(
                    req,
                    response::SYSTEM_ERROR,
                    "The broker does not support consumer to filter message by SQL92",
                );
            }
            Arc::new(TagFilter::parse(&sub.sub_string))
        };
        let offset = QueueOffset(queue_offset.max(0) as u64);
        let max = max_msgs.clamp(1, 32) as u32;
        let result = match self.store.get_message(
            &group,
            &topic,
            queue_id,
            offset,
            max,
            Some(filter.as_ref() as &dyn MessageFilter),
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, topic, queue_id, "pull failed");
                return error(req, response::SYSTEM_ERROR, format!("store error: {e}"));
            }
        };
        let code = match result.status {
            GetMessageStatus::Found => response::SUCCESS,
            GetMessageStatus::MessageWasRemoving | GetMessageStatus::NoMatchedMessage => {
                response::PULL_RETRY_IMMEDIATELY
            }
            GetMessageStatus::NoMatchedLogicQueue | GetMessageStatus::NoMessageInQueue => {
                if queue_offset != 0 {
                    response::PULL_OFFSET_MOVED
                } else {
                    response::PULL_NOT_FOUND
                }
            }
            GetMessageStatus::OffsetOverflowBadly | GetMessageStatus::OffsetTooSmall => {
                response::PULL_OFFSET_MOVED
            }
            _ => response::PULL_NOT_FOUND,
        };
        if allow_suspend && sys_flag & pull_flag::COMMIT_OFFSET != 0 && commit_offset >= 0 {
            self.offsets.commit(&group, &topic, queue_id, commit_offset);
        }
        if code == response::PULL_NOT_FOUND && allow_suspend && sys_flag & pull_flag::SUSPEND != 0 {
            let timeout = if self.config.long_polling_enable {
                Duration::from_millis(suspend_ms.clamp(0, 3_600_000) as u64)
            } else {
                self.config.short_polling_time
            };
            return Outcome::Hold(HeldPull {
                request: req.clone(),
                topic,
                queue_id,
                offset: offset.0,
                timeout,
                filter: Some(filter),
            });
        }
        let mut resp = req
            .response(code)
            .with_remark(result.status.as_str())
            .with_ext("nextBeginOffset", result.next_begin_offset.0)
            .with_ext("minOffset", result.min_offset.0)
            .with_ext("maxOffset", result.max_offset.0)
            .with_ext("suggestWhichBrokerId", 0)
            .with_ext("topicSysFlag", config.topic_sys_flag)
            .with_ext("groupSysFlag", 0);
        if code == response::SUCCESS {
            let mut body = BytesMut::with_capacity(result.buffer_total_size as usize);
            for rec in &result.messages {
                body.put_slice(rec.bytes());
            }
            resp = resp.with_body(body.freeze());
        }
        Outcome::Reply(resp)
    }

    fn heartbeat(&self, channel: &Channel, req: &RemotingCommand) -> Outcome {
        let data: HeartbeatData = match serde_json::from_slice(&req.body) {
            Ok(d) => d,
            Err(e) => return error(req, response::SYSTEM_ERROR, format!("heartbeat body: {e}")),
        };
        for c in &data.consumer_data_set {
            self.topics.ensure_retry_topic(&c.group_name);
            self.subscriptions.find_or_create(&c.group_name);
        }
        for group in self.clients.heartbeat(channel, &data) {
            tracing::info!(group, client = %data.client_id, "consumer joined");
            self.clients.notify_ids_changed(&group);
        }
        Outcome::Reply(
            req.response(response::SUCCESS)
                .with_ext("IS_SUB_CHANGE", true)
                .with_ext("IS_SUPPORT_HEART_BEAT_V2", false),
        )
    }

    fn unregister(&self, channel: &Channel, req: &RemotingCommand) -> Outcome {
        let changed = self.clients.unregister(
            channel.id,
            req.ext("producerGroup"),
            req.ext("consumerGroup"),
        );
        for group in changed {
            self.clients.notify_ids_changed(&group);
        }
        Outcome::Reply(req.response(response::SUCCESS))
    }

    fn consumer_list(&self, req: &RemotingCommand) -> Outcome {
        let group = req.ext("consumerGroup").unwrap_or_default();
        let ids = self.clients.consumer_ids(group);
        if ids.is_empty() {
            return error(
                req,
                response::SYSTEM_ERROR,
                format!("no consumer for this group, {group}"),
            );
        }
        let body = serde_json::json!({ "consumerIdList": ids });
        Outcome::Reply(req.response(response::SUCCESS).with_body(body.to_string()))
    }

    fn query_offset(&self, req: &RemotingCommand) -> Outcome {
        let (group, topic, queue_id) = match (|| -> Result<_, String> {
            Ok((
                field::<String>(req, "consumerGroup")?,
                field::<String>(req, "topic")?,
                field::<u32>(req, "queueId")?,
            ))
        })() {
            Ok(p) => p,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        if let Some(o) = self
            .offsets
            .query(&group, &topic, queue_id)
            .filter(|&o| o >= 0)
        {
            return Outcome::Reply(req.response(response::SUCCESS).with_ext("offset", o));
        }
        // No stored offset: a queue that still holds its first message starts at 0
        // (RocketMQ 4.x answers 0 while that message is "in memory"; we answer 0 whenever
        // the queue still starts at 0).
        if self.store.min_offset_in_queue(&topic, queue_id).0 == 0 {
            return Outcome::Reply(req.response(response::SUCCESS).with_ext("offset", 0));
        }
        error(
            req,
            response::QUERY_NOT_FOUND,
            "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
        )
    }

    fn update_offset(&self, req: &RemotingCommand) -> Outcome {
        match (|| -> Result<_, String> {
            Ok((
                field::<String>(req, "consumerGroup")?,
                field::<String>(req, "topic")?,
                field::<u32>(req, "queueId")?,
                field::<i64>(req, "commitOffset")?,
            ))
        })() {
            Ok((group, topic, queue_id, offset)) => {
                if offset >= 0 {
                    self.offsets.commit(&group, &topic, queue_id, offset);
                }
                Outcome::Reply(req.response(response::SUCCESS))
            }
            Err(e) => error(req, response::SYSTEM_ERROR, e),
        }
    }

    fn topic_queue(req: &RemotingCommand) -> Result<(String, u32), String> {
        Ok((field(req, "topic")?, field(req, "queueId")?))
    }

    fn queue_offset(
        &self,
        req: &RemotingCommand,
        f: impl Fn(&MessageStore, &str, u32) -> i64,
    ) -> Outcome {
        match Self::topic_queue(req) {
            Ok((t, q)) => Outcome::Reply(
                req.response(response::SUCCESS)
                    .with_ext("offset", f(&self.store, &t, q)),
            ),
            Err(e) => error(req, response::SYSTEM_ERROR, e),
        }
    }

    fn search_offset(&self, req: &RemotingCommand) -> Outcome {
        match Self::topic_queue(req).and_then(|tq| Ok((tq, field::<i64>(req, "timestamp")?))) {
            Ok(((t, q), ts)) => Outcome::Reply(
                req.response(response::SUCCESS)
                    .with_ext("offset", self.store.offset_in_queue_by_time(&t, q, ts).0),
            ),
            Err(e) => error(req, response::SYSTEM_ERROR, e),
        }
    }

    fn earliest_time(&self, req: &RemotingCommand) -> Outcome {
        match Self::topic_queue(req) {
            Ok((t, q)) => Outcome::Reply(req.response(response::SUCCESS).with_ext(
                "timestamp",
                self.store.earliest_message_time_in_queue(&t, q),
            )),
            Err(e) => error(req, response::SYSTEM_ERROR, e),
        }
    }

    fn create_topic(&self, req: &RemotingCommand) -> Outcome {
        let parsed = (|| -> Result<TopicConfig, String> {
            let topic: String = field(req, "topic")?;
            let read: u32 = opt_field(req, "readQueueNums")?.unwrap_or(16);
            let write: u32 = opt_field(req, "writeQueueNums")?.unwrap_or(16);
            let mut c = TopicConfig::new(&topic, read, 6);
            c.write_queue_nums = write;
            c.perm = opt_field(req, "perm")?.unwrap_or(6);
            c.topic_filter_type =
                opt_field(req, "topicFilterType")?.unwrap_or_else(|| "SINGLE_TAG".into());
            c.topic_sys_flag = opt_field(req, "topicSysFlag")?.unwrap_or(0);
            c.order = opt_field(req, "order")?.unwrap_or(false);
            Ok(c)
        })();
        let config = match parsed {
            Ok(c) => c,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        if let Err(e) = topics::validate_topic(&config.topic_name) {
            return error(req, response::SYSTEM_ERROR, e);
        }
        if topics::is_not_allowed_send(&config.topic_name)
            || config.topic_name == topics::AUTO_CREATE_TOPIC
        {
            return error(
                req,
                response::SYSTEM_ERROR,
                format!(
                    "The topic[{}] is conflict with system topic.",
                    config.topic_name
                ),
            );
        }
        if config.read_queue_nums == 0
            || config.write_queue_nums == 0
            || config.read_queue_nums > 1024
            || config.write_queue_nums > 1024
        {
            return error(
                req,
                response::SYSTEM_ERROR,
                "queue numbers must be within 1..=1024",
            );
        }
        tracing::info!(topic = %config.topic_name, queues = config.write_queue_nums, "topic created or updated");
        self.topics.put(config);
        Outcome::Reply(req.response(response::SUCCESS))
    }

    fn query_message(&self, req: &RemotingCommand) -> Outcome {
        let parsed = (|| -> Result<_, String> {
            Ok((
                field::<String>(req, "topic")?,
                field::<String>(req, "key")?,
                opt_field::<usize>(req, "maxNum")?.unwrap_or(DEFAULT_QUERY_MAX_NUM),
                opt_field::<i64>(req, "beginTimestamp")?.unwrap_or(0),
                opt_field::<i64>(req, "endTimestamp")?.unwrap_or(i64::MAX),
            ))
        })();
        let (topic, key, mut max, begin, end) = match parsed {
            Ok(p) => p,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        if req.ext("_UNIQUE_KEY_QUERY") == Some("true") {
            max = DEFAULT_QUERY_MAX_NUM;
        }
        let found = self.store.query_message(&topic, &key, max, begin, end);
        if found.messages.is_empty() {
            return error(
                req,
                response::QUERY_NOT_FOUND,
                "can not find message, maybe time range not correct",
            );
        }
        let mut body = BytesMut::new();
        let mut last_ts = 0;
        for rec in &found.messages {
            body.put_slice(rec.bytes());
            if let Ok(v) = rec.view() {
                last_ts = last_ts.max(v.store_timestamp);
            }
        }
        Outcome::Reply(
            req.response(response::SUCCESS)
                .with_ext("indexLastUpdateTimestamp", last_ts)
                .with_ext("indexLastUpdatePhyoffset", self.store.dispatched_offset().0)
                .with_body(body.freeze()),
        )
    }

    fn view_message(&self, req: &RemotingCommand) -> Outcome {
        let offset: u64 = match field(req, "offset") {
            Ok(o) => o,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        match self.store.read(PhysicalOffset(offset)) {
            Ok(Some(rec)) => Outcome::Reply(
                req.response(response::SUCCESS)
                    .with_body(Bytes::copy_from_slice(rec.bytes())),
            ),
            _ => error(
                req,
                response::SYSTEM_ERROR,
                format!("can not find message by the offset, {offset}"),
            ),
        }
    }

    /// Persists offsets and topics, then shuts the store down cleanly (the next start is
    /// a normal recovery).
    ///
    /// # Errors
    /// The store's shutdown error.
    pub fn close(&self) -> Result<(), mqstore::Error> {
        self.schedule.stop();
        self.persist_offsets();
        self.topics.persist();
        let out = self.store.close();
        tracing::info!(ok = out.is_ok(), "store closed");
        out
    }

    /// Writes consumer offsets (periodically and at shutdown).
    pub fn persist_offsets(&self) {
        self.schedule.persist();
        if let Err(e) = self.offsets.persist() {
            tracing::error!(error = %e, "could not persist consumer offsets; will retry");
        }
    }

    /// Time since a send was received, for the send-queue fast failure (§14.2.1).
    pub fn send_waited_too_long(&self, received: Instant) -> bool {
        received.elapsed() > self.config.wait_time_in_send_queue
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
    fn batch_body_decodes_and_rejects_lies() {
        let mut b = Vec::new();
        for (body, props) in [(&b"one"[..], "TAGS\u{1}A"), (&b"three"[..], "")] {
            let total = 4 + 4 + 4 + 4 + 4 + body.len() + 2 + props.len();
            b.put_i32(total as i32);
            b.put_i32(0);
            b.put_i32(0);
            b.put_i32(7);
            b.put_i32(body.len() as i32);
            b.put_slice(body);
            b.put_i16(props.len() as i16);
            b.put_slice(props.as_bytes());
        }
        let d = decode_batch(&b).expect("decodes");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].1, b"three");
        assert_eq!(d[0].2, "TAGS\u{1}A");
        b[3] = 99;
        assert!(decode_batch(&b).is_err());
        assert!(decode_batch(&b[..10]).is_err());
    }

    #[test]
    fn merged_properties_keep_inner_values() {
        let mut m = Message::new("T", 0, Vec::new());
        m.properties = "UNIQ_KEY\u{1}a\u{2}TAGS\u{1}x".into();
        let p = with_missing_properties(m, &[("UNIQ_KEY", "b"), ("CLUSTER", "c")]).properties;
        assert_eq!(format::property(&p, "UNIQ_KEY"), Some("a"));
        assert_eq!(format::property(&p, "CLUSTER"), Some("c"));
        assert_eq!(format::property(&p, "TAGS"), Some("x"));
    }
}
