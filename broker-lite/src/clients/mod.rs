//! Connected clients: producer and consumer groups, their subscriptions and idle expiry
//! (the registry, here); what they send about themselves ([`wire`]); the broker's requests
//! to them ([`calls`]).

pub mod calls;
pub mod wire;

pub use calls::CallError;
pub use wire::{
    java_hash, ClientConnection, ConsumerConnection, ConsumerData, HeartbeatData, ProducerData,
    SubscriptionData,
};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicI32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::remoting::RemotingCommand;

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

    /// Whether any consumer of `group` is connected.
    pub fn group_online(&self, group: &str) -> bool {
        self.lock().consumers.contains_key(group)
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
