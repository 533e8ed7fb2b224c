//! Acting on a consumer group from the tools: resetting its offsets to a point in time
//! (INVOKE_BROKER_TO_RESET_OFFSET), asking one of its clients how it runs
//! (GET_CONSUMER_RUNNING_INFO, forwarded), and reading a queue's raw units
//! (QUERY_CONSUME_QUEUE) — as RocketMQ 4.9's `AdminBrokerProcessor` and `Broker2Client` do.

use std::time::Duration;

use mqstore::QueueOffset;
use serde_json::{json, Value};

use crate::broker::Broker;
use crate::clients::CallError;
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;

use super::{field, opt_field, queue_keyed_map, reject, reply, Handled};

/// How long a call forwarded to a client may take (RocketMQ's `Broker2Client.callClient`).
const CLIENT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `MQVersion.Version.V3_0_7_SNAPSHOT.ordinal()`: clients below it cannot reset offsets.
const RESET_MIN_VERSION: i32 = 28;
/// `MQVersion.Version.V3_1_8_SNAPSHOT.ordinal()`: clients below it cannot answer calls.
const CALL_MIN_VERSION: i32 = 62;
/// Units QUERY_CONSUME_QUEUE reads at most, whatever `count` asks.
const MAX_UNITS_PER_QUERY: u64 = 1024;

impl Broker {
    /// INVOKE_BROKER_TO_RESET_OFFSET: each write queue of the topic goes back (or, with
    /// `isForce`, anywhere) to the offset of the first message stored at or after
    /// `timestamp` (-1: the queue's end). The group's online consumers are told with
    /// RESET_CONSUMER_CLIENT_OFFSET and commit it themselves; with
    /// `useServerSideResetOffset=true` the broker also commits it, so that an offline group
    /// is reset too. Without that setting an offline group is CONSUMER_NOT_ONLINE, as in
    /// RocketMQ 4.9 (whose tools then commit the offsets one by one).
    pub(super) fn reset_offset(&self, req: &RemotingCommand) -> Handled {
        let topic: String = field(req, "topic")?;
        let group: String = field(req, "group")?;
        let timestamp: i64 = field(req, "timestamp")?;
        let force = opt_field::<bool>(req, "isForce")?.unwrap_or(false);
        // RocketMQ 5's header may name one queue and an exact offset (server-side only).
        let one_queue = opt_field::<i32>(req, "queueId")?.and_then(|q| u32::try_from(q).ok());
        let exact = opt_field::<i64>(req, "offset")?.filter(|&o| o != -1);
        let server_side = self.config.use_server_side_reset_offset;
        if server_side && !self.config.is_master() {
            return reject(
                response::SYSTEM_ERROR,
                "Can not reset offset in slave broker",
            );
        }
        let Some(config) = self.topics.get(&topic) else {
            return reject(
                response::SYSTEM_ERROR,
                format!(
                    "[reset-offset] reset offset failed, no topic in this broker. topic={topic}"
                ),
            );
        };
        if let Some(version) = self
            .clients
            .consumer_versions(&group)
            .into_iter()
            .find(|&v| v < RESET_MIN_VERSION)
        {
            return reject(
                response::SYSTEM_ERROR,
                format!("the client does not support this feature. version={version}"),
            );
        }
        let queues: Vec<u32> = match one_queue {
            Some(q) if server_side => vec![q],
            _ => (0..config.write_queue_nums).collect(),
        };
        let mut table: Vec<(u32, u64)> = Vec::new();
        for queue_id in queues {
            let committed = self.offsets.query(&group, &topic, queue_id);
            let committed = match committed {
                Some(c) if c >= 0 => c as u64,
                // A group never seen has nothing to go back from, unless the broker
                // commits the reset itself.
                _ if server_side => u64::MAX,
                _ => {
                    return reject(
                        response::SYSTEM_ERROR,
                        format!("THe consumer group <{group}> not exist"),
                    )
                }
            };
            let target = if let (Some(offset), true, Some(_)) = (exact, server_side, one_queue) {
                let min = self.store.min_offset_in_queue(&topic, queue_id).0;
                let max = self.store.max_offset_in_queue(&topic, queue_id).0;
                match u64::try_from(offset) {
                    Ok(o) if (min..=max).contains(&o) => o,
                    _ => {
                        return reject(
                            response::SYSTEM_ERROR,
                            format!(
                                "Target offset {offset} not in consume queue range [{min}-{max}]"
                            ),
                        )
                    }
                }
            } else if timestamp == -1 {
                self.store.max_offset_in_queue(&topic, queue_id).0
            } else {
                self.store
                    .offset_in_queue_by_time(&topic, queue_id, timestamp)
                    .0
            };
            let offset = if force || target < committed {
                target
            } else {
                committed
            };
            table.push((queue_id, offset));
        }
        let entries: Vec<(&str, u32, Value)> = table
            .iter()
            .map(|&(q, o)| (topic.as_str(), q, Value::from(o)))
            .collect();
        let body = format!(
            "{{\"offsetTable\":{}}}",
            queue_keyed_map(&self.config.broker_name, &entries)
        );
        if server_side {
            for &(queue_id, offset) in &table {
                self.offsets.commit(
                    &group,
                    &topic,
                    queue_id,
                    i64::try_from(offset).unwrap_or(i64::MAX),
                );
            }
        }
        let told = self.clients.oneway_to_consumers(&group, || {
            RemotingCommand::request(request::RESET_CONSUMER_CLIENT_OFFSET)
                .with_ext("topic", &topic)
                .with_ext("group", &group)
                .with_ext("timestamp", timestamp)
                .with_ext("isForce", force)
                .with_body(body.clone())
        });
        tracing::info!(
            topic,
            group,
            timestamp,
            force,
            server_side,
            consumers_told = told,
            "[reset-offset] offsets reset"
        );
        if told == 0 && !server_side {
            return reject(
                response::CONSUMER_NOT_ONLINE,
                format!(
                    "Consumer not online, so can not reset offset, Group: {group} Topic: {topic} Timestamp: {timestamp}"
                ),
            );
        }
        reply(req.response(response::SUCCESS).with_body(body))
    }

    /// GET_CONSUMER_RUNNING_INFO: forwarded to the named client of the group; its answer
    /// (a `ConsumerRunningInfo`) goes back as it came.
    pub(super) fn consumer_running_info(&self, req: &RemotingCommand) -> Handled {
        let group: String = field(req, "consumerGroup")?;
        let client_id: String = field(req, "clientId")?;
        let Some((channel, version)) = self.clients.consumer_member(&group, &client_id) else {
            return reject(
                response::SYSTEM_ERROR,
                format!("The Consumer <{group}> <{client_id}> not online"),
            );
        };
        if version < CALL_MIN_VERSION {
            return reject(
                response::SYSTEM_ERROR,
                format!("The Consumer <{client_id}> Version <{version}> too low to finish, please upgrade it to V3_1_8_SNAPSHOT"),
            );
        }
        let mut forward = RemotingCommand::request(req.code).with_body(req.body.clone());
        forward.ext_fields.clone_from(&req.ext_fields);
        match self.clients.call(&channel, forward, CLIENT_CALL_TIMEOUT) {
            Ok(answer) => {
                let mut resp = req.response(answer.code).with_body(answer.body);
                resp.remark = answer.remark;
                reply(resp)
            }
            Err(e @ CallError::Timeout(_)) => reject(
                response::CONSUME_MSG_TIMEOUT,
                format!("consumer <{group}> <{client_id}> Timeout: {e}"),
            ),
            Err(e) => reject(
                response::SYSTEM_ERROR,
                format!("invoke consumer <{group}> <{client_id}> Exception: {e}"),
            ),
        }
    }

    /// QUERY_CONSUME_QUEUE: the queue's bounds and up to `count` of its units from `index`
    /// (`QueryConsumeQueueResponseBody`); with `consumerGroup`, that group's subscription.
    pub(super) fn query_consume_queue(&self, req: &RemotingCommand) -> Handled {
        let topic: String = field(req, "topic")?;
        let queue_id: u32 = field(req, "queueId")?;
        let index: u64 = field(req, "index")?;
        let count: u64 = field(req, "count")?;
        let group = req.ext("consumerGroup").filter(|g| !g.is_empty());
        let queues = self
            .topics
            .get(&topic)
            .map_or(0, |c| c.read_queue_nums.max(c.write_queue_nums));
        if queue_id >= queues {
            return reject(
                response::SYSTEM_ERROR,
                format!("{queue_id}@{topic} is not exist!"),
            );
        }
        let min = self.store.min_offset_in_queue(&topic, queue_id).0;
        let max = self.store.max_offset_in_queue(&topic, queue_id).0;
        let mut body = json!({ "maxQueueIndex": max, "minQueueIndex": min });
        if let Some(group) = group {
            match self.clients.subscription(group, &topic) {
                Some(s) => {
                    body["subscriptionData"] = s.to_rocketmq_json();
                    // Tag subscriptions carry no filter data (RocketMQ writes `null`).
                    body["filterData"] = Value::from("null");
                }
                None => body["filterData"] = Value::from(format!("{group}@{topic} is not online!")),
            }
        }
        if index < min || index >= max {
            let mut resp = req.response(response::SUCCESS);
            resp.remark = Some(format!("Index {index} of {queue_id}@{topic} is not exist!"));
            return reply(resp);
        }
        let end = max.min(index.saturating_add(count.min(MAX_UNITS_PER_QUERY)));
        let units: Vec<Value> = (index..end)
            .filter_map(|o| self.store.queue_unit(&topic, queue_id, QueueOffset(o)))
            .map(|u| {
                json!({
                    "eval": false,
                    "physicOffset": u.physical_offset,
                    "physicSize": u.size,
                    "tagsCode": u.tags_code,
                })
            })
            .collect();
        body["queueData"] = Value::from(units);
        reply(req.response(response::SUCCESS).with_body(body.to_string()))
    }
}
