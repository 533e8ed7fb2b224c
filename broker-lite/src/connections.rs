//! Connected clients: producer and consumer groups, their subscriptions, membership
//! notifications and idle expiry.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::remoting::codes::request;
use crate::remoting::{RemotingCommand, FLAG_ONEWAY};

/// A connection as the processors see it: where to send server-initiated requests.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Unique per connection.
    pub id: u64,
    /// The peer.
    pub remote: SocketAddr,
    /// The connection's outbound queue (bounded).
    pub tx: mpsc::Sender<RemotingCommand>,
}

/// HEART_BEAT body (`HeartbeatData`); every field optional, unknown ones ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    /// The client id.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Producer groups.
    pub producer_data_set: Vec<ProducerData>,
    /// Consumer groups.
    pub consumer_data_set: Vec<ConsumerData>,
}

/// A producer group of a heartbeat.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// The group.
    pub group_name: String,
}

/// A consumer group of a heartbeat.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// The group.
    pub group_name: String,
    /// `CONSUME_ACTIVELY` / `CONSUME_PASSIVELY`.
    pub consume_type: String,
    /// `CLUSTERING` / `BROADCASTING`.
    pub message_model: String,
    /// Where a new consumer starts.
    pub consume_from_where: String,
    /// Subscriptions.
    pub subscription_data_set: Vec<SubscriptionData>,
}

/// One subscription (`SubscriptionData`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// The topic.
    pub topic: String,
    /// The expression (`*`, `TagA || TagB`).
    pub sub_string: String,
    /// Version (client timestamp).
    pub sub_version: i64,
    /// `TAG` (the default when absent) or `SQL92`.
    pub expression_type: Option<String>,
    /// The tags of a TAG expression, as the client split them.
    pub tags_set: Vec<String>,
    /// Java `String.hashCode` of each tag.
    pub code_set: Vec<i32>,
    /// Filter classes (unsupported; kept as sent).
    pub class_filter_mode: bool,
}

/// Java's `String.hashCode`, which RocketMQ uses as a tag's code.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

impl SubscriptionData {
    /// The subscription as RocketMQ's `SubscriptionData` JSON, every field present (tags
    /// and codes derived from the expression when the client did not send them).
    pub fn to_rocketmq_json(&self) -> serde_json::Value {
        let tags: Vec<String> = if self.tags_set.is_empty() && self.is_tag() {
            self.sub_string
                .split("||")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        } else {
            self.tags_set.clone()
        };
        let codes: Vec<i32> = if self.code_set.is_empty() {
            tags.iter()
                .filter(|t| t.as_str() != "*")
                .map(|t| java_hash(t))
                .collect()
        } else {
            self.code_set.clone()
        };
        serde_json::json!({
            "classFilterMode": self.class_filter_mode,
            "topic": self.topic,
            "subString": self.sub_string,
            "tagsSet": tags,
            "codeSet": codes,
            "subVersion": self.sub_version,
            "expressionType": self.expression_type.as_deref().filter(|t| !t.is_empty()).unwrap_or("TAG"),
        })
    }

    /// Whether the expression is a TAG expression.
    pub fn is_tag(&self) -> bool {
        self.expression_type
            .as_deref()
            .is_none_or(|t| t.is_empty() || t.eq_ignore_ascii_case("TAG"))
    }
}

/// A client connection of a group, as its heartbeats describe it.
#[derive(Debug, Clone)]
struct Member {
    client_id: String,
    channel: Channel,
    last_seen: Instant,
    /// The client's language (`JAVA`, `RUST`, …) and version, from its heartbeat's header.
    language: &'static str,
    version: i32,
}

impl Member {
    fn connection(&self) -> ClientConnection {
        ClientConnection {
            client_id: self.client_id.clone(),
            client_addr: self.channel.remote.to_string(),
            language: self.language.to_owned(),
            version: self.version,
        }
    }
}

/// One connection as RocketMQ's admin answers list it (`Connection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    /// The client id.
    pub client_id: String,
    /// Its address (`ip:port`).
    pub client_addr: String,
    /// Its language.
    pub language: String,
    /// Its version.
    pub version: i32,
}

/// A consumer group as GET_CONSUMER_CONNECTION_LIST answers it (`ConsumerConnection`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnection {
    /// The members' connections.
    pub connection_set: Vec<ClientConnection>,
    /// Topic → subscription (RocketMQ's `SubscriptionData` JSON).
    pub subscription_table: BTreeMap<String, serde_json::Value>,
    /// `CONSUME_ACTIVELY` / `CONSUME_PASSIVELY`.
    pub consume_type: String,
    /// `CLUSTERING` / `BROADCASTING`.
    pub message_model: String,
    /// Where a new consumer starts.
    pub consume_from_where: String,
}

#[derive(Debug, Default)]
struct ConsumerGroup {
    /// Connection id → member.
    members: BTreeMap<u64, Member>,
    /// Topic → subscription (the latest heartbeat wins).
    subscriptions: HashMap<String, SubscriptionData>,
    message_model: String,
    consume_type: String,
    consume_from_where: String,
}

#[derive(Debug, Default)]
struct Registry {
    consumers: HashMap<String, ConsumerGroup>,
    /// Producer group → connection id → member.
    producers: HashMap<String, BTreeMap<u64, Member>>,
}

/// Producer and consumer registrations, and the broker's own requests to clients awaiting
/// their answers.
#[derive(Debug, Default)]
pub struct ConnectedClients {
    registry: Mutex<Registry>,
    next_opaque: AtomicI32,
    /// Opaque of a request sent to a client → (its connection, where the answer goes).
    awaiting: Mutex<HashMap<i32, (u64, std::sync::mpsc::SyncSender<RemotingCommand>)>>,
}

/// Why a request to a client got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The connection's outbound queue is full or the connection is gone.
    #[error("the request could not be queued on the client's connection")]
    NotSent,
    /// Nothing came back in time (or the connection closed meanwhile).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl ConnectedClients {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Producer connections, and consumer connections by group.
    pub fn connection_counts(&self) -> (usize, Vec<(String, usize)>) {
        let r = self.lock();
        let producers = r.producers.values().map(BTreeMap::len).sum();
        let mut consumers: Vec<(String, usize)> = r
            .consumers
            .iter()
            .map(|(g, c)| (g.clone(), c.members.len()))
            .collect();
        consumers.sort();
        (producers, consumers)
    }

    /// Applies a heartbeat from `channel` (a client in `language` at `version`); returns
    /// the consumer groups whose membership changed (they must be notified).
    pub fn heartbeat(
        &self,
        channel: &Channel,
        data: &HeartbeatData,
        language: &'static str,
        version: i32,
    ) -> Vec<String> {
        let member = Member {
            client_id: data.client_id.clone(),
            channel: channel.clone(),
            last_seen: Instant::now(),
            language,
            version,
        };
        let mut changed = Vec::new();
        let mut reg = self.lock();
        for p in &data.producer_data_set {
            reg.producers
                .entry(p.group_name.clone())
                .or_default()
                .insert(channel.id, member.clone());
        }
        for c in &data.consumer_data_set {
            let group = reg.consumers.entry(c.group_name.clone()).or_default();
            group.message_model.clone_from(&c.message_model);
            group.consume_type.clone_from(&c.consume_type);
            group.consume_from_where.clone_from(&c.consume_from_where);
            for s in &c.subscription_data_set {
                group.subscriptions.insert(s.topic.clone(), s.clone());
            }
            let is_new = !group.members.contains_key(&channel.id);
            group.members.insert(channel.id, member.clone());
            if is_new {
                changed.push(c.group_name.clone());
            }
        }
        changed
    }

    /// UNREGISTER_CLIENT; returns the consumer groups whose membership changed.
    pub fn unregister(
        &self,
        channel_id: u64,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> Vec<String> {
        let mut reg = self.lock();
        if let Some(g) = producer_group {
            if let Some(m) = reg.producers.get_mut(g) {
                m.remove(&channel_id);
            }
        }
        let mut changed = Vec::new();
        if let Some(g) = consumer_group {
            if let Some(group) = reg.consumers.get_mut(g) {
                if group.members.remove(&channel_id).is_some() {
                    changed.push(g.to_owned());
                }
                if group.members.is_empty() {
                    reg.consumers.remove(g);
                }
            }
        }
        changed
    }

    /// Removes a closed connection everywhere; returns the consumer groups it left.
    pub fn channel_closed(&self, channel_id: u64) -> Vec<String> {
        let mut reg = self.lock();
        for m in reg.producers.values_mut() {
            m.remove(&channel_id);
        }
        let mut changed = Vec::new();
        reg.consumers.retain(|name, group| {
            if group.members.remove(&channel_id).is_some() {
                changed.push(name.clone());
            }
            !group.members.is_empty()
        });
        changed
    }

    /// Drops members not heard from within `timeout`; returns (closed channel ids,
    /// groups changed).
    pub fn expire_idle(&self, timeout: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut reg = self.lock();
        for m in reg.producers.values_mut() {
            m.retain(|_, p| now.duration_since(p.last_seen) < timeout);
        }
        let mut changed = Vec::new();
        reg.consumers.retain(|name, group| {
            let before = group.members.len();
            group
                .members
                .retain(|_, m| now.duration_since(m.last_seen) < timeout);
            if group.members.len() != before {
                tracing::info!(group = %name, dropped = before - group.members.len(), "idle consumers expired");
                changed.push(name.clone());
            }
            !group.members.is_empty()
        });
        changed
    }

    /// Client ids of a consumer group (GET_CONSUMER_LIST_BY_GROUP), deduplicated.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let reg = self.lock();
        let mut ids: Vec<String> = reg
            .consumers
            .get(group)
            .map(|g| g.members.values().map(|m| m.client_id.clone()).collect())
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The subscription a group registered for `topic`.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.lock()
            .consumers
            .get(group)
            .and_then(|g| g.subscriptions.get(topic).cloned())
    }

    /// A live connection of producer group `group` (the newest), for transaction
    /// check-backs.
    pub fn producer_channel(&self, group: &str) -> Option<Channel> {
        self.lock()
            .producers
            .get(group)
            .and_then(|m| m.values().max_by_key(|p| p.last_seen))
            .map(|p| p.channel.clone())
    }

    /// The connections of producer group `group`, or `None` if it has none.
    pub fn producer_connections(&self, group: &str) -> Option<Vec<ClientConnection>> {
        self.lock()
            .producers
            .get(group)
            .filter(|m| !m.is_empty())
            .map(|m| m.values().map(Member::connection).collect())
    }

    /// Consumer group `group` as GET_CONSUMER_CONNECTION_LIST answers it, or `None` if no
    /// member is connected.
    pub fn consumer_connection(&self, group: &str) -> Option<ConsumerConnection> {
        let reg = self.lock();
        let g = reg.consumers.get(group)?;
        Some(ConsumerConnection {
            connection_set: g.members.values().map(Member::connection).collect(),
            subscription_table: g
                .subscriptions
                .iter()
                .map(|(t, s)| (t.clone(), s.to_rocketmq_json()))
                .collect(),
            consume_type: g.consume_type.clone(),
            message_model: g.message_model.clone(),
            consume_from_where: g.consume_from_where.clone(),
        })
    }

    /// The topics the online members of `group` subscribe to (none when it is offline).
    pub fn subscribed_topics(&self, group: &str) -> Vec<String> {
        self.lock()
            .consumers
            .get(group)
            .map(|g| g.subscriptions.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The connected consumer groups subscribed to `topic`.
    pub fn groups_subscribed_to(&self, topic: &str) -> Vec<String> {
        self.lock()
            .consumers
            .iter()
            .filter(|(_, g)| g.subscriptions.contains_key(topic))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A fresh opaque for a server-initiated request.
    pub fn next_opaque(&self) -> i32 {
        self.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether any consumer of `group` is connected.
    pub fn group_online(&self, group: &str) -> bool {
        self.lock().consumers.contains_key(group)
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every member of `group`. A member
    /// whose queue is full misses it; clients rebalance every 20 s anyway.
    pub fn notify_ids_changed(&self, group: &str) {
        self.oneway_to_consumers(group, || {
            RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED)
                .with_ext("consumerGroup", group)
        });
    }

    /// Sends the request `make` builds, oneway, to every member of consumer group `group`;
    /// returns how many it was queued for (a member whose queue is full misses it).
    pub fn oneway_to_consumers(&self, group: &str, make: impl Fn() -> RemotingCommand) -> usize {
        let mut queued = 0;
        for ch in self.consumer_channels(group) {
            let mut cmd = make();
            cmd.flag = FLAG_ONEWAY;
            cmd.opaque = self.next_opaque();
            if ch.tx.try_send(cmd).is_ok() {
                queued += 1;
            } else {
                tracing::debug!(group, remote = %ch.remote, "request to a consumer not queued");
            }
        }
        queued
    }

    /// The connections of `group`'s members.
    fn consumer_channels(&self, group: &str) -> Vec<Channel> {
        self.lock()
            .consumers
            .get(group)
            .map(|g| g.members.values().map(|m| m.channel.clone()).collect())
            .unwrap_or_default()
    }

    /// The client versions of `group`'s members.
    pub fn consumer_versions(&self, group: &str) -> Vec<i32> {
        self.lock()
            .consumers
            .get(group)
            .map(|g| g.members.values().map(|m| m.version).collect())
            .unwrap_or_default()
    }

    /// The connection of member `client_id` of consumer group `group`, with its version.
    pub fn consumer_member(&self, group: &str, client_id: &str) -> Option<(Channel, i32)> {
        self.lock().consumers.get(group).and_then(|g| {
            g.members
                .values()
                .find(|m| m.client_id == client_id)
                .map(|m| (m.channel.clone(), m.version))
        })
    }

    /// Sends `cmd` to a client over its connection and waits (blocking the calling thread:
    /// call from the blocking pool) for the answer, at most `timeout`.
    ///
    /// # Errors
    /// [`CallError`] when it could not be sent or nothing came back in time.
    pub fn call(
        &self,
        channel: &Channel,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, CallError> {
        let opaque = self.next_opaque();
        cmd.opaque = opaque;
        cmd.flag &= !FLAG_ONEWAY;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.lock_awaiting().insert(opaque, (channel.id, tx));
        let result = if channel.tx.try_send(cmd).is_ok() {
            rx.recv_timeout(timeout)
                .map_err(|_| CallError::Timeout(timeout))
        } else {
            Err(CallError::NotSent)
        };
        self.lock_awaiting().remove(&opaque);
        result
    }

    /// An answer that arrived on connection `channel_id`: handed to the [`call`](Self::call)
    /// waiting for it. False when nobody waits (late, or not from the connection asked).
    pub fn answer(&self, channel_id: u64, response: RemotingCommand) -> bool {
        let mut awaiting = self.lock_awaiting();
        let asked_there =
            matches!(awaiting.get(&response.opaque), Some((from, _)) if *from == channel_id);
        asked_there
            && awaiting
                .remove(&response.opaque)
                .is_some_and(|(_, tx)| tx.try_send(response).is_ok())
    }

    fn lock_awaiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<i32, (u64, std::sync::mpsc::SyncSender<RemotingCommand>)>>
    {
        self.awaiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn java_string_hash_codes_and_the_subscription_json() {
        // "TagA".hashCode() in Java.
        assert_eq!(java_hash("TagA"), 2_598_919);
        assert_eq!(java_hash(""), 0);
        let s = SubscriptionData {
            topic: "T".into(),
            sub_string: "TagA || TagB".into(),
            ..Default::default()
        };
        let j = s.to_rocketmq_json();
        assert_eq!(j["tagsSet"], serde_json::json!(["TagA", "TagB"]));
        assert_eq!(j["codeSet"][0], 2_598_919);
        assert_eq!(j["expressionType"], "TAG");
        assert_eq!(j["classFilterMode"], false);
    }

    #[test]
    fn a_call_takes_only_its_own_answer_from_the_connection_asked() {
        let clients = Arc::new(ConnectedClients::default());
        let (tx, mut rx) = mpsc::channel(4);
        let channel = Channel {
            id: 7,
            remote: "127.0.0.1:1".parse().expect("addr"),
            tx,
        };
        let answerer = {
            let clients = Arc::clone(&clients);
            std::thread::spawn(move || {
                let asked = rx.blocking_recv().expect("the request was queued");
                assert!(!clients.answer(8, asked.response(0)), "another connection");
                let mut stray = asked.response(0);
                stray.opaque += 1000;
                assert!(!clients.answer(7, stray), "an opaque nobody waits for");
                assert!(clients.answer(7, asked.response(0).with_remark("mine")));
                rx
            })
        };
        let got = clients
            .call(
                &channel,
                RemotingCommand::request(307),
                Duration::from_secs(30),
            )
            .expect("answered");
        assert_eq!(got.remark.as_deref(), Some("mine"));
        let mut rx = answerer.join().expect("answerer");
        // Nobody answers: a timeout, and the late answer is dropped.
        let err = clients
            .call(
                &channel,
                RemotingCommand::request(307),
                Duration::from_millis(50),
            )
            .expect_err("no answer");
        assert_eq!(err, CallError::Timeout(Duration::from_millis(50)));
        let late = rx.try_recv().expect("queued");
        assert!(!clients.answer(7, late.response(0)));
        // A closed connection cannot be asked.
        drop(rx);
        let err = clients
            .call(
                &channel,
                RemotingCommand::request(307),
                Duration::from_secs(30),
            )
            .expect_err("closed");
        assert_eq!(err, CallError::NotSent);
    }
}
