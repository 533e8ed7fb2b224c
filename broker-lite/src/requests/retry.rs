//! Retries and dead letters: CONSUMER_SEND_MSG_BACK, and where a send to a `%RETRY%` topic
//! goes once a message has been retried too often.

use mqstore::format::{self, keys};
use mqstore::PhysicalOffset;

use crate::broker::Broker;
use crate::delivery::half_messages::HALF_TOPIC;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;
use crate::state::topics::DLQ_GROUP_TOPIC_PREFIX;

use super::{field, opt_field, random_below, reject, reply, Handled};

/// Property naming the topic a retried message came from.
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Property naming the first delivery's offset message id.
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Delay level of a first retry (10 s at RocketMQ's defaults); each retry adds one.
const FIRST_RETRY_DELAY_LEVEL: i32 = 3;

impl Broker {
    /// The dead-letter destination of `group` (one queue, created if missing).
    pub(super) fn dead_letter(&self, group: &str) -> (String, u32) {
        let topic = format!("{DLQ_GROUP_TOPIC_PREFIX}{group}");
        self.topics.ensure_topic(&topic, 1);
        (topic, 0)
    }

    /// CONSUMER_SEND_MSG_BACK: the consumer failed the message at `offset`; store
    /// a copy for `%RETRY%group` after a delay, or in `%DLQ%group` when retries are used up.
    pub(super) fn send_back(&self, req: &RemotingCommand) -> Handled {
        let parsed = (|| -> Result<_, String> {
            Ok((
                field::<u64>(req, "offset")?,
                field::<String>(req, "group")?,
                opt_field::<i32>(req, "delayLevel")?.unwrap_or(0),
                opt_field::<i32>(req, "maxReconsumeTimes")?,
            ))
        })();
        let (offset, group, delay_level, header_max) = parsed?;
        let Some(config) = self
            .subscriptions
            .find_or_create(&group, self.live.read().auto_create_subscription_group)
        else {
            return reject(
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {group}"),
            );
        };
        if config.retry_queue_nums == 0 {
            return reply(req.response(response::SUCCESS));
        }
        let Ok(Some(record)) = self.store.read(PhysicalOffset(offset)) else {
            return reject(
                response::SYSTEM_ERROR,
                format!("look message by offset failed, {offset}"),
            );
        };
        let Ok(v) = record.view() else {
            return reject(
                response::SYSTEM_ERROR,
                format!("look message by offset failed, {offset}"),
            );
        };
        if !format::enters_consume_queue(v.sys_flag) || v.topic == HALF_TOPIC {
            return reject(
                response::SYSTEM_ERROR,
                format!("the record at {offset} is not a consumable message"),
            );
        }
        let mut msg = v.to_message();
        if msg.property(RETRY_TOPIC).is_none() {
            msg = msg.with_property(RETRY_TOPIC, v.topic);
        }
        if msg.property(ORIGIN_MESSAGE_ID).is_none() {
            msg = msg.with_property(
                ORIGIN_MESSAGE_ID,
                &format::offset_msg_id(v.store_host, offset),
            );
        }
        let max = header_max.unwrap_or(config.retry_max_times);
        msg = msg.without_property(keys::DELAY);
        if v.reconsume_times >= max || delay_level < 0 {
            let (topic, queue) = self.dead_letter(&group);
            tracing::info!(
                group,
                offset,
                reconsume = v.reconsume_times,
                "message sent to the dead-letter queue"
            );
            msg.topic = topic;
            msg.queue_id = queue;
        } else {
            let retry = self.topics.ensure_retry_topic(&group);
            msg.topic.clone_from(&retry.topic_name);
            msg.queue_id = random_below(config.retry_queue_nums.min(retry.write_queue_nums).max(1));
            let level = if delay_level == 0 {
                FIRST_RETRY_DELAY_LEVEL + v.reconsume_times
            } else {
                delay_level
            };
            msg = msg.with_property(keys::DELAY, &level.to_string());
        }
        msg.reconsume_times = v.reconsume_times + 1;
        drop(record);
        let msg = self.apply_delay(msg)?;
        match self.store.put(&msg) {
            Ok(r) if r.appended.is_some() => {
                self.note_stored(1);
                reply(req.response(response::SUCCESS))
            }
            Ok(r) => reject(response::SYSTEM_ERROR, r.status.as_str()),
            Err(e) => reject(response::SYSTEM_ERROR, format!("store error: {e}")),
        }
    }
}
