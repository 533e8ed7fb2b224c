//! Client-side operations over the protocol, shared by the subcommands, tests and benchmark.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::client::{decode_messages, Client, ClientError, ReceivedMessage};
use crate::remoting::codes::{pull_flag, request, response};
use crate::remoting::RemotingCommand;

/// Default request timeout.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A failed operation.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Transport.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker answered with an error code.
    #[error("broker answered code {code}: {remark}")]
    Refused {
        /// Response code.
        code: i32,
        /// Remark.
        remark: String,
    },
    /// The answer does not parse.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

fn refused(r: &RemotingCommand) -> OpError {
    OpError::Refused {
        code: r.code,
        remark: r.remark.clone().unwrap_or_default(),
    }
}

/// `Ok(r)` for SUCCESS, the refusal otherwise.
fn success(r: RemotingCommand) -> Result<RemotingCommand, OpError> {
    if r.code == response::SUCCESS {
        Ok(r)
    } else {
        Err(refused(&r))
    }
}

fn ext_num<T: std::str::FromStr>(r: &RemotingCommand, key: &str) -> Result<T, OpError> {
    r.ext(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| OpError::BadAnswer(format!("missing or bad `{key}`")))
}

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// Queue (-1: the broker picks).
    pub queue_id: i32,
    /// Body.
    pub body: Bytes,
    /// TAGS.
    pub tags: Option<String>,
    /// KEYS.
    pub keys: Option<String>,
    /// UNIQ_KEY.
    pub uniq_key: Option<String>,
    /// DELAY level (delivered after the level's delay).
    pub delay_level: Option<u32>,
}

impl Outgoing {
    /// A message with only a topic, a queue and a body.
    pub fn new(topic: &str, queue_id: i32, body: impl Into<Bytes>) -> Self {
        Outgoing {
            topic: topic.to_owned(),
            queue_id,
            body: body.into(),
            ..Outgoing::default()
        }
    }
}

/// What a send returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// Response code (0, or a "sent but" code like FLUSH_DISK_TIMEOUT).
    pub code: i32,
    /// Offset message id.
    pub msg_id: String,
    /// Queue used.
    pub queue_id: u32,
    /// Queue offset of the message.
    pub queue_offset: u64,
}

/// The SEND_MESSAGE_V2 request for `m` (what Java clients send).
pub fn send_request(producer_group: &str, m: &Outgoing) -> RemotingCommand {
    let props = message_properties(m);
    RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_ext("a", producer_group)
        .with_ext("b", &m.topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", m.queue_id)
        .with_ext("f", 0)
        .with_ext("g", crate::state::metadata::now_millis())
        .with_ext("h", 0)
        .with_ext("i", props)
        .with_ext("j", 0)
        .with_ext("k", false)
        .with_ext("m", false)
        .with_body(m.body.clone())
}

/// A SEND_BATCH_MESSAGE request carrying `msgs` (one topic and queue: the first's), each
/// encoded as RocketMQ's `MessageDecoder.encodeMessages` does (total size, magic, body
/// CRC, flag, body, properties).
pub fn send_batch_request(producer_group: &str, msgs: &[Outgoing]) -> RemotingCommand {
    let mut body = Vec::new();
    for m in msgs {
        let props = message_properties(m);
        let total = 4 + 4 + 4 + 4 + 4 + m.body.len() + 2 + props.len();
        for field in [total as i32, 0, 0, 0, m.body.len() as i32] {
            body.extend_from_slice(&field.to_be_bytes());
        }
        body.extend_from_slice(&m.body);
        body.extend_from_slice(&(props.len() as i16).to_be_bytes());
        body.extend_from_slice(props.as_bytes());
    }
    let (topic, queue_id) = msgs
        .first()
        .map_or(("", -1), |m| (m.topic.as_str(), m.queue_id));
    RemotingCommand::request(request::SEND_BATCH_MESSAGE)
        .with_ext("a", producer_group)
        .with_ext("b", topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", queue_id)
        .with_ext("f", 0)
        .with_ext("g", crate::state::metadata::now_millis())
        .with_ext("h", 0)
        .with_ext("i", mqstore::format::encode_properties([("WAIT", "true")]))
        .with_ext("j", 0)
        .with_ext("k", false)
        .with_ext("m", true)
        .with_body(Bytes::from(body))
}

/// TAGS, KEYS, UNIQ_KEY, DELAY and WAIT, encoded.
fn message_properties(m: &Outgoing) -> String {
    let mut props = Vec::new();
    if let Some(t) = &m.tags {
        props.push(("TAGS", t.as_str()));
    }
    if let Some(k) = &m.keys {
        props.push(("KEYS", k.as_str()));
    }
    if let Some(u) = &m.uniq_key {
        props.push(("UNIQ_KEY", u.as_str()));
    }
    let delay = m.delay_level.map(|d| d.to_string());
    if let Some(d) = &delay {
        props.push(("DELAY", d.as_str()));
    }
    props.push(("WAIT", "true"));
    mqstore::format::encode_properties(props)
}

/// Sends one message and waits for the receipt.
///
/// # Errors
/// Transport errors, or [`OpError::Refused`] for a non-success code.
pub async fn send(client: &Client, group: &str, m: &Outgoing) -> Result<SendReceipt, OpError> {
    receipt(&client.invoke(send_request(group, m), TIMEOUT).await?)
}

/// Sends messages for one topic and queue as one batch and waits for the receipt (its
/// queue offset is the first message's; `msg_id` lists every id, comma-separated).
///
/// # Errors
/// Transport errors, or [`OpError::Refused`] for a non-success code.
pub async fn send_batch(
    client: &Client,
    group: &str,
    msgs: &[Outgoing],
) -> Result<SendReceipt, OpError> {
    receipt(
        &client
            .invoke(send_batch_request(group, msgs), TIMEOUT)
            .await?,
    )
}

fn receipt(r: &RemotingCommand) -> Result<SendReceipt, OpError> {
    if !matches!(
        r.code,
        response::SUCCESS
            | response::FLUSH_DISK_TIMEOUT
            | response::FLUSH_SLAVE_TIMEOUT
            | response::SLAVE_NOT_AVAILABLE
    ) {
        return Err(refused(r));
    }
    Ok(SendReceipt {
        code: r.code,
        msg_id: r.ext("msgId").unwrap_or_default().to_owned(),
        queue_id: ext_num(r, "queueId")?,
        queue_offset: ext_num(r, "queueOffset")?,
    })
}

/// What a pull returned.
#[derive(Debug)]
pub struct Pulled {
    /// Response code (SUCCESS, PULL_NOT_FOUND, …).
    pub code: i32,
    /// Where to pull next.
    pub next_begin_offset: u64,
    /// Queue max offset.
    pub max_offset: u64,
    /// Messages (SUCCESS only).
    pub messages: Vec<ReceivedMessage>,
}

/// A pull request with the subscription carried in the request.
#[allow(clippy::too_many_arguments)]
pub fn pull_request(
    group: &str,
    topic: &str,
    queue_id: u32,
    offset: u64,
    max: u32,
    expression: &str,
    suspend: Option<Duration>,
    commit_offset: Option<u64>,
) -> RemotingCommand {
    let mut flag = pull_flag::SUBSCRIPTION;
    if suspend.is_some() {
        flag |= pull_flag::SUSPEND;
    }
    if commit_offset.is_some() {
        flag |= pull_flag::COMMIT_OFFSET;
    }
    RemotingCommand::request(request::PULL_MESSAGE)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("queueOffset", offset)
        .with_ext("maxMsgNums", max)
        .with_ext("sysFlag", flag)
        .with_ext("commitOffset", commit_offset.map_or(-1, |o| o as i64))
        .with_ext(
            "suspendTimeoutMillis",
            suspend.map_or(0, |d| d.as_millis() as u64),
        )
        .with_ext("subscription", expression)
        .with_ext("subVersion", 0)
        .with_ext("expressionType", "TAG")
}

/// Pulls and decodes.
///
/// # Errors
/// Transport errors; a body that does not decode.
pub async fn pull(client: &Client, req: RemotingCommand) -> Result<Pulled, OpError> {
    let wait = TIMEOUT
        + req
            .ext("suspendTimeoutMillis")
            .and_then(|v| v.parse().ok())
            .map_or(Duration::ZERO, Duration::from_millis);
    let r = client.invoke(req, wait).await?;
    let messages = if r.code == response::SUCCESS {
        decode_messages(&r.body).map_err(OpError::BadAnswer)?
    } else {
        Vec::new()
    };
    if !matches!(
        r.code,
        response::SUCCESS
            | response::PULL_NOT_FOUND
            | response::PULL_RETRY_IMMEDIATELY
            | response::PULL_OFFSET_MOVED
    ) {
        return Err(refused(&r));
    }
    Ok(Pulled {
        code: r.code,
        next_begin_offset: ext_num(&r, "nextBeginOffset")?,
        max_offset: ext_num(&r, "maxOffset")?,
        messages,
    })
}

/// A request with a topic and queue, answered with an `offset` ext field.
///
/// # Errors
/// Transport errors or a refusal.
pub async fn queue_number(
    client: &Client,
    code: i32,
    topic: &str,
    queue_id: u32,
    group: Option<&str>,
) -> Result<Option<i64>, OpError> {
    let mut req = RemotingCommand::request(code)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id);
    if let Some(g) = group {
        req = req.with_ext("consumerGroup", g);
    }
    let r = client.invoke(req, TIMEOUT).await?;
    match r.code {
        response::SUCCESS => Ok(Some(ext_num(&r, "offset")?)),
        response::QUERY_NOT_FOUND => Ok(None),
        _ => Err(refused(&r)),
    }
}

/// Commits a consumer offset (two-way).
///
/// # Errors
/// Transport errors or a refusal.
pub async fn commit(
    client: &Client,
    group: &str,
    topic: &str,
    queue_id: u32,
    offset: u64,
) -> Result<(), OpError> {
    let r = client
        .invoke(
            RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
                .with_ext("consumerGroup", group)
                .with_ext("topic", topic)
                .with_ext("queueId", queue_id)
                .with_ext("commitOffset", offset),
            TIMEOUT,
        )
        .await?;
    success(r).map(drop)
}

/// Topic configurations (GET_ALL_TOPIC_CONFIG).
///
/// # Errors
/// Transport errors, a refusal or a body that does not parse.
pub async fn topics(client: &Client) -> Result<crate::state::topics::TopicTable, OpError> {
    let r = client
        .invoke(
            RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG),
            TIMEOUT,
        )
        .await?;
    let r = success(r)?;
    serde_json::from_slice(&r.body).map_err(|e| OpError::BadAnswer(e.to_string()))
}

/// Creates (or updates) a topic.
///
/// # Errors
/// Transport errors or a refusal.
pub async fn create_topic(client: &Client, topic: &str, queues: u32) -> Result<(), OpError> {
    let r = client
        .invoke(
            RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
                .with_ext("topic", topic)
                .with_ext("defaultTopic", "TBW102")
                .with_ext("readQueueNums", queues)
                .with_ext("writeQueueNums", queues)
                .with_ext("perm", 6)
                .with_ext("topicFilterType", "SINGLE_TAG")
                .with_ext("topicSysFlag", 0)
                .with_ext("order", false),
            TIMEOUT,
        )
        .await?;
    success(r).map(drop)
}

/// The number of queues of a topic (its read queues), from the broker's topic table.
///
/// # Errors
/// As [`topics`]; [`OpError::Refused`] with TOPIC_NOT_EXIST for an unknown topic.
pub async fn queue_count(client: &Client, topic: &str) -> Result<u32, OpError> {
    topics(client)
        .await?
        .topic_config_table
        .get(topic)
        .map(|t| t.read_queue_nums)
        .ok_or(OpError::Refused {
            code: response::TOPIC_NOT_EXIST,
            remark: format!("topic {topic} does not exist"),
        })
}

/// Connects to `addr`.
///
/// # Errors
/// The connect error.
pub async fn connect(addr: SocketAddr) -> Result<Client, OpError> {
    Ok(Client::connect(addr).await?)
}

/// QUERY_MESSAGE: messages of `topic` with `key` stored within `[begin, end]` ms.
///
/// # Errors
/// Transport errors; [`OpError::Refused`] with QUERY_NOT_FOUND (22) when none matches.
pub async fn query_by_key(
    client: &Client,
    topic: &str,
    key: &str,
    max: u32,
    begin: i64,
    end: i64,
) -> Result<Vec<ReceivedMessage>, OpError> {
    let req = RemotingCommand::request(request::QUERY_MESSAGE)
        .with_ext("topic", topic)
        .with_ext("key", key)
        .with_ext("maxNum", max)
        .with_ext("beginTimestamp", begin)
        .with_ext("endTimestamp", end)
        .with_ext("indexType", "K");
    let r = success(client.invoke(req, TIMEOUT).await?)?;
    let mut found = decode_messages(&r.body).map_err(OpError::BadAnswer)?;
    // The index matches by hash; the key itself is checked here as clients do.
    found.retain(|m| {
        m.property("UNIQ_KEY") == Some(key)
            || m.property("KEYS")
                .is_some_and(|k| k.split(' ').any(|k| k == key))
    });
    Ok(found)
}

/// VIEW_MESSAGE_BY_ID for an offset message id (32 hex digits: store host + offset).
///
/// # Errors
/// [`OpError::BadAnswer`] for an id that is not an offset message id; the broker's
/// refusal (SYSTEM_ERROR) when no message starts at that offset.
pub async fn view_by_id(client: &Client, msg_id: &str) -> Result<ReceivedMessage, OpError> {
    let (_, offset) = mqstore::format::parse_offset_msg_id(msg_id)
        .ok_or_else(|| OpError::BadAnswer(format!("`{msg_id}` is not an offset message id")))?;
    let req = RemotingCommand::request(request::VIEW_MESSAGE_BY_ID).with_ext("offset", offset);
    let r = success(client.invoke(req, TIMEOUT).await?)?;
    decode_messages(&r.body)
        .map_err(OpError::BadAnswer)?
        .into_iter()
        .next()
        .ok_or_else(|| OpError::BadAnswer("empty body".into()))
}

/// DELETE_EXPIRED_COMMITLOG: the broker deletes expired CommitLog files now.
///
/// # Errors
/// Transport errors or the broker's refusal.
pub async fn delete_expired(client: &Client) -> Result<(), OpError> {
    let req = RemotingCommand::request(request::DELETE_EXPIRED_COMMITLOG);
    success(client.invoke(req, TIMEOUT).await?).map(|_| ())
}

/// GET_BROKER_RUNTIME_INFO: the broker's key/value status table.
///
/// # Errors
/// Transport errors, a refusal, or a body that is not a `KVTable`.
pub async fn runtime_info(
    client: &Client,
) -> Result<std::collections::BTreeMap<String, String>, OpError> {
    #[derive(serde::Deserialize)]
    struct KvTable {
        table: std::collections::BTreeMap<String, String>,
    }
    let req = RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO);
    let resp = success(client.invoke(req, TIMEOUT).await?)?;
    let t: KvTable = serde_json::from_slice(&resp.body)
        .map_err(|e| OpError::BadAnswer(format!("runtime info: {e}")))?;
    Ok(t.table)
}

/// A broker group as a name server lists it (`BrokerData`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerGroup {
    /// The cluster the group belongs to.
    #[serde(default)]
    pub cluster: String,
    /// The group's `brokerName`.
    pub broker_name: String,
    /// brokerId → address (0 is the master).
    #[serde(default)]
    pub broker_addrs: std::collections::BTreeMap<u64, String>,
}

impl BrokerGroup {
    /// The master's address, if the group has one registered.
    pub fn master(&self) -> Option<&str> {
        self.broker_addrs.get(&0).map(String::as_str)
    }
}

/// GET_BROKER_CLUSTER_INFO's answer (`ClusterInfo`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// brokerName → group.
    #[serde(default)]
    pub broker_addr_table: std::collections::BTreeMap<String, BrokerGroup>,
    /// cluster name → its brokerNames.
    #[serde(default)]
    pub cluster_addr_table: std::collections::BTreeMap<String, Vec<String>>,
}

impl ClusterInfo {
    /// The groups of `cluster`, by brokerName.
    pub fn groups_of(&self, cluster: &str) -> Vec<&BrokerGroup> {
        self.cluster_addr_table
            .get(cluster)
            .into_iter()
            .flatten()
            .filter_map(|name| self.broker_addr_table.get(name))
            .collect()
    }
}

/// One group's queues of a topic in a route (`QueueData`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteQueues {
    /// The group.
    pub broker_name: String,
    /// Readable queues.
    pub read_queue_nums: u32,
    /// Writable queues.
    pub write_queue_nums: u32,
    /// Permission bits.
    #[serde(default)]
    pub perm: u32,
}

/// GET_ROUTEINFO_BY_TOPIC's answer (`TopicRouteData`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRoute {
    /// Queues per group.
    #[serde(default)]
    pub queue_datas: Vec<RouteQueues>,
    /// The groups' addresses.
    #[serde(default)]
    pub broker_datas: Vec<BrokerGroup>,
}

/// GET_BROKER_CLUSTER_INFO from a name server (or a broker's built-in route service).
///
/// # Errors
/// Transport errors, a refusal, or a body that does not parse (fastjson's unquoted
/// integer keys are accepted).
pub async fn cluster_info(namesrv: &Client) -> Result<ClusterInfo, OpError> {
    let req = RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO);
    let resp = success(namesrv.invoke(req, TIMEOUT).await?)?;
    crate::state::metadata::parse(&String::from_utf8_lossy(&resp.body))
        .map_err(|e| OpError::BadAnswer(format!("cluster info: {e}")))
}

/// GET_ROUTEINFO_BY_TOPIC from a name server.
///
/// # Errors
/// Transport errors; [`OpError::Refused`] with TOPIC_NOT_EXIST for a topic no broker
/// serves; a body that does not parse.
pub async fn topic_route(namesrv: &Client, topic: &str) -> Result<TopicRoute, OpError> {
    let req = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic);
    let resp = success(namesrv.invoke(req, TIMEOUT).await?)?;
    crate::state::metadata::parse(&String::from_utf8_lossy(&resp.body))
        .map_err(|e| OpError::BadAnswer(format!("route of {topic}: {e}")))
}

/// Creates (or updates) `topic` on every master of `cluster`, as mqadmin's
/// `updateTopic -c` does: the name server lists the cluster's groups, each master gets
/// UPDATE_AND_CREATE_TOPIC. Returns the masters' addresses, by brokerName.
///
/// # Errors
/// [`OpError::BadAnswer`] when the cluster is unknown or has no master; the first master
/// that cannot be reached or refuses (the ones before it keep the topic).
pub async fn create_topic_in_cluster(
    namesrv: &Client,
    cluster: &str,
    topic: &str,
    queues: u32,
) -> Result<Vec<(String, String)>, OpError> {
    let info = cluster_info(namesrv).await?;
    let masters: Vec<(String, String)> = info
        .groups_of(cluster)
        .into_iter()
        .filter_map(|g| Some((g.broker_name.clone(), g.master()?.to_owned())))
        .collect();
    if masters.is_empty() {
        return Err(OpError::BadAnswer(format!(
            "the name server knows no master of cluster {cluster} (clusters: {})",
            info.cluster_addr_table
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (name, addr) in &masters {
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| OpError::BadAnswer(format!("{name}'s master address {addr}")))?;
        let client = connect(sock).await?;
        create_topic(&client, topic, queues).await?;
    }
    Ok(masters)
}
