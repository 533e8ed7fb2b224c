//! Administration: topics (create, list), subscription groups (create, list, delete),
//! who produces and consumes (connection lists, a topic's groups), client config check,
//! deleting expired CommitLog files now. Bodies as RocketMQ 4.9's `AdminBrokerProcessor`
//! answers them.

use crate::broker::Broker;
use crate::config;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;
use crate::state::subscriptions::SubscriptionGroupConfig;
use crate::state::topics::{self, TopicConfig};

use super::{field, opt_field, reject, reply, Handled};

impl Broker {
    pub(super) fn create_topic(&self, req: &RemotingCommand) -> Handled {
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
        let config = parsed?;
        if let Err(e) = topics::validate_topic(&config.topic_name) {
            return reject(response::SYSTEM_ERROR, e);
        }
        if topics::is_not_allowed_send(&config.topic_name)
            || config.topic_name == topics::AUTO_CREATE_TOPIC
        {
            return reject(
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
            return reject(
                response::SYSTEM_ERROR,
                "queue numbers must be within 1..=1024",
            );
        }
        tracing::info!(topic = %config.topic_name, queues = config.write_queue_nums, "topic created or updated");
        self.topics.put(config);
        reply(req.response(response::SUCCESS))
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: body = a SubscriptionGroupConfig.
    pub(super) fn put_subscription_group(&self, req: &RemotingCommand) -> Handled {
        match serde_json::from_slice::<SubscriptionGroupConfig>(&req.body) {
            Ok(c) if !c.group_name.is_empty() => {
                tracing::info!(group = %c.group_name, "subscription group created or updated");
                self.subscriptions.put(c);
                reply(req.response(response::SUCCESS))
            }
            Ok(_) => reject(response::SYSTEM_ERROR, "groupName is empty"),
            Err(e) => reject(
                response::SYSTEM_ERROR,
                format!("subscription group body: {e}"),
            ),
        }
    }

    /// DELETE_EXPIRED_COMMITLOG: the next cleanup passes delete expired files whatever the
    /// hour; one runs now.
    pub(super) fn delete_expired_now(&self, req: &RemotingCommand) -> Handled {
        self.store.delete_expired_files_manually();
        match self.store.run_cleanup() {
            Ok(r) => {
                tracing::info!(
                    removed = r.removed.len(),
                    "expired files deleted on request"
                );
                reply(req.response(response::SUCCESS))
            }
            Err(e) => reject(response::SYSTEM_ERROR, format!("cleanup: {e}")),
        }
    }

    /// GET_PRODUCER_CONNECTION_LIST: the group's connections (`ProducerConnection`).
    pub(super) fn producer_connection_list(&self, req: &RemotingCommand) -> Handled {
        let group: String = field(req, "producerGroup")?;
        match self.clients.producer_connections(&group) {
            Some(set) => {
                let body = serde_json::json!({ "connectionSet": set });
                reply(req.response(response::SUCCESS).with_body(body.to_string()))
            }
            None => reject(
                response::SYSTEM_ERROR,
                format!("the producer group[{group}] not exist"),
            ),
        }
    }

    /// GET_CONSUMER_CONNECTION_LIST: the group's members and subscriptions
    /// (`ConsumerConnection`), or CONSUMER_NOT_ONLINE.
    pub(super) fn consumer_connection_list(&self, req: &RemotingCommand) -> Handled {
        let group: String = field(req, "consumerGroup")?;
        match self.clients.consumer_connection(&group) {
            Some(c) => match serde_json::to_string(&c) {
                Ok(body) => reply(req.response(response::SUCCESS).with_body(body)),
                Err(e) => reject(response::SYSTEM_ERROR, e.to_string()),
            },
            None => reject(
                response::CONSUMER_NOT_ONLINE,
                format!("the consumer group[{group}] not online"),
            ),
        }
    }

    /// QUERY_TOPIC_CONSUME_BY_WHO: the groups subscribed to the topic now and those that
    /// committed offsets of it (`GroupList`).
    pub(super) fn topic_consumed_by(&self, req: &RemotingCommand) -> Handled {
        let topic: String = field(req, "topic")?;
        let mut groups = self.clients.groups_subscribed_to(&topic);
        groups.extend(self.offsets.groups_of_topic(&topic));
        groups.sort();
        groups.dedup();
        let body = serde_json::json!({ "groupList": groups });
        reply(req.response(response::SUCCESS).with_body(body.to_string()))
    }

    /// DELETE_SUBSCRIPTIONGROUP: the group's configuration, and with `removeOffset=true`
    /// (RocketMQ 4.9's header; 5.x clients send `cleanOffset`) its committed offsets. A
    /// slave refuses, as RocketMQ's does: it copies its master's metadata.
    pub(super) fn delete_subscription_group(&self, req: &RemotingCommand) -> Handled {
        if !self.config.is_master() {
            return reject(
                response::SYSTEM_ERROR,
                "Can't modify topic or subscription group from slave broker, please execute it from master broker.",
            );
        }
        let group: String = field(req, "groupName")?;
        let remove_offsets = opt_field::<bool>(req, "removeOffset")?.unwrap_or(false)
            || opt_field::<bool>(req, "cleanOffset")?.unwrap_or(false);
        let existed = self.subscriptions.remove(&group);
        let topics = if remove_offsets {
            self.offsets.remove_group(&group)
        } else {
            0
        };
        tracing::info!(
            group,
            existed,
            offsets_of_topics = topics,
            "subscription group deleted"
        );
        reply(req.response(response::SUCCESS))
    }

    /// DELETE_TOPIC_IN_NAMESRV on the route port, which mqadmin's deleteTopic sends after
    /// the brokers' deletions: the built-in route service lists this broker's own topics,
    /// so a topic deleted from the broker is already gone from its routes (as in RocketMQ,
    /// a topic the broker still has comes back with its next registration).
    pub(super) fn delete_topic_route(&self, req: &RemotingCommand) -> Handled {
        let topic: String = field(req, "topic")?;
        tracing::debug!(
            topic,
            still_served = self.topics.contains(&topic),
            "route deletion asked"
        );
        reply(req.response(response::SUCCESS))
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER and GET_TOPICS_BY_CLUSTER on the route port:
    /// this broker's topics (`TopicList`); for another cluster, none.
    pub(super) fn topic_list(&self, req: &RemotingCommand) -> Handled {
        let cluster = req.ext("cluster");
        let topics: Vec<String> = if cluster.is_none_or(|c| c == self.config.broker_cluster_name) {
            let mut names: Vec<String> = self
                .topics
                .all()
                .into_iter()
                .map(|t| t.topic_name)
                .collect();
            names.sort();
            names
        } else {
            Vec::new()
        };
        let body = serde_json::json!({ "topicList": topics, "brokerAddr": null });
        reply(req.response(response::SUCCESS).with_body(body.to_string()))
    }

    /// GET_BROKER_CONFIG: every configuration key as `key=value` lines (RocketMQ's
    /// `getAllConfigsFormatString`), live values included, and the configuration's
    /// `version` (a `DataVersion` counting the updates since the start).
    pub(super) fn broker_config(&self, req: &RemotingCommand) -> Handled {
        let body = self.live.read().to_conf_text();
        let version = serde_json::json!({
            "stateVersion": 0,
            "timestamp": self.started_at_ms,
            "counter": self.live.updates(),
        });
        reply(
            req.response(response::SUCCESS)
                .with_ext("version", version)
                .with_body(body),
        )
    }

    /// UPDATE_BROKER_CONFIG: body = `key=value` lines. Only the keys that can change while
    /// running ([`LIVE_KEYS`](config::LIVE_KEYS)) are taken, all or none: one other key or a bad value refuses
    /// the request and nothing changes. The pairs are written to the `-c` file first (so
    /// they survive a restart, as RocketMQ persists them), then take effect; a new
    /// `brokerPermission` is registered with the name servers at once.
    pub(super) fn update_broker_config(&self, req: &RemotingCommand) -> Handled {
        let text = std::str::from_utf8(&req.body)
            .map_err(|_| "the configuration body is not UTF-8".to_owned())?;
        let pairs: Vec<(String, String)> = config::conf_pairs(text)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if pairs.is_empty() {
            return reply(req.response(response::SUCCESS));
        }
        let persist = || -> Result<(), String> {
            let Some(path) = &self.config.config_file else {
                return Ok(());
            };
            let old = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            crate::state::metadata::store(path, &config::rewrite_conf(&old, &pairs))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        if let Err(e) = self.live.update(&pairs, persist) {
            return reject(response::SYSTEM_ERROR, e.to_string());
        }
        tracing::info!(
            ?pairs,
            persisted = self.config.config_file.is_some(),
            "broker configuration updated"
        );
        if pairs
            .iter()
            .any(|(k, _)| k == crate::config::broker_key::broker_permission)
        {
            self.topics.next_version();
        }
        reply(req.response(response::SUCCESS))
    }

    /// DELETE_TOPIC_IN_BROKER: the topic's configuration, its queues (files removed once
    /// no reader holds them; its next message starts again at queue offset 0) and every
    /// group's offsets of it, as RocketMQ 5 does. System topics and slaves refuse. The
    /// topic's messages stay in the CommitLog until they expire.
    pub(super) fn delete_topic(&self, req: &RemotingCommand) -> Handled {
        let topic: String = field(req, "topic")?;
        self.delete_topics(req, &[topic])
    }

    /// DELETE_TOPIC_IN_BROKER_LIST (5002, not a RocketMQ code: rocketmq-rust's, which its
    /// `rocketmq-admin-cli topic deleteTopic` sends): body `{"topicList":[…]}`, each topic
    /// deleted as DELETE_TOPIC_IN_BROKER deletes one; every name is checked first.
    pub(super) fn delete_topic_list(&self, req: &RemotingCommand) -> Handled {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct TopicList {
            topic_list: Vec<String>,
        }
        let list: TopicList = serde_json::from_slice(&req.body)
            .map_err(|e| format!("the topic list body does not parse: {e}"))?;
        self.delete_topics(req, &list.topic_list)
    }

    fn delete_topics(&self, req: &RemotingCommand, topics: &[String]) -> Handled {
        if !self.config.is_master() {
            return reject(
                response::SYSTEM_ERROR,
                "Can't modify topic or subscription group from slave broker, please execute it from master broker.",
            );
        }
        for topic in topics {
            if let Err(e) = topics::validate_topic(topic) {
                return reject(response::SYSTEM_ERROR, e);
            }
            if crate::state::metrics::is_system_topic(topic) {
                return reject(
                    response::SYSTEM_ERROR,
                    format!("The topic[{topic}] is conflict with system topic."),
                );
            }
        }
        for topic in topics {
            let existed = self.topics.remove(topic);
            let groups = self.offsets.remove_topic(topic);
            match self.store.delete_topic(topic) {
                Ok(files) => {
                    tracing::info!(
                        topic,
                        existed,
                        offsets_of_groups = groups,
                        queue_files = files.len(),
                        "topic deleted"
                    );
                }
                Err(e) => {
                    tracing::error!(topic, error = %e, "deleting the topic's queues failed");
                    return reject(
                        response::SYSTEM_ERROR,
                        format!("deleting the queues of {topic}: {e}"),
                    );
                }
            }
        }
        reply(req.response(response::SUCCESS))
    }
}
