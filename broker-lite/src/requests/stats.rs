//! Where topics and consumer groups stand: GET_TOPIC_STATS_INFO and GET_CONSUME_STATS,
//! answered with the bodies RocketMQ 4.9's `AdminBrokerProcessor` writes.

use serde_json::{json, Value};

use crate::broker::Broker;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;
use crate::state::progress;

use super::{field, queue_keyed_map, reject, reply, Handled};

impl Broker {
    /// GET_TOPIC_STATS_INFO: each write queue's min and max offset and the store time of
    /// its newest message (`TopicStatsTable`), or TOPIC_NOT_EXIST.
    pub(super) fn topic_stats(&self, req: &RemotingCommand) -> Handled {
        let topic: String = field(req, "topic")?;
        let Some(config) = self.topics.get(&topic) else {
            return reject(
                response::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist"),
            );
        };
        let entries: Vec<(&str, u32, Value)> = progress::topic_ranges(&self.store, &config)
            .into_iter()
            .map(|r| {
                let offsets = json!({
                    "lastUpdateTimestamp": r.last_stored_ms,
                    "maxOffset": r.max,
                    "minOffset": r.min,
                });
                (topic.as_str(), r.queue_id, offsets)
            })
            .collect();
        let body = format!(
            "{{\"offsetTable\":{},\"topicPutTps\":{}}}",
            queue_keyed_map(&self.config.broker_name, &entries),
            Value::from(self.progress.put_tps(&topic)),
        );
        reply(req.response(response::SUCCESS).with_body(body))
    }

    /// GET_CONSUME_STATS: for the named topic, or every topic the group committed offsets
    /// of, each read queue's broker and consumer offsets and the store time of the last
    /// message consumed (`ConsumeStats`). As RocketMQ's broker, a topic that no longer
    /// exists is left out, and so is one the group's online members do not subscribe to.
    /// `pullOffset` (RocketMQ 5) is the committed offset: broker-lite keeps no separate
    /// record of pull positions, and RocketMQ 5 answers the same when it has none.
    pub(super) fn consume_stats(&self, req: &RemotingCommand) -> Handled {
        let group: String = field(req, "consumerGroup")?;
        let topics: Vec<String> = if let Some(t) = req.ext("topic").filter(|t| !t.trim().is_empty())
        {
            vec![t.to_owned()]
        } else {
            let mut of_group: Vec<String> = self
                .offsets
                .of_group(&group)
                .into_iter()
                .map(|(t, _, _)| t)
                .collect();
            of_group.dedup();
            of_group
        };
        let subscribed = self.clients.subscribed_topics(&group);
        let mut entries: Vec<(&str, u32, Value)> = Vec::new();
        let mut consume_tps = 0.0;
        for topic in &topics {
            let Some(config) = self.topics.get(topic) else {
                continue;
            };
            if !subscribed.is_empty() && !subscribed.contains(topic) {
                continue;
            }
            for p in progress::group_progress(&self.store, &self.offsets, &config, &group) {
                let wrapper = json!({
                    "brokerOffset": p.broker_offset,
                    "consumerOffset": p.consumer_offset,
                    "lastTimestamp": p.last_consumed_ms,
                    "pullOffset": p.consumer_offset,
                });
                entries.push((topic.as_str(), p.queue_id, wrapper));
            }
            consume_tps += self.progress.consume_tps(&group, topic);
        }
        let body = format!(
            "{{\"consumeTps\":{},\"offsetTable\":{}}}",
            Value::from(consume_tps),
            queue_keyed_map(&self.config.broker_name, &entries),
        );
        reply(req.response(response::SUCCESS).with_body(body))
    }
}
