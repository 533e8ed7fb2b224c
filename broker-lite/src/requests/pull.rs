//! Pulls (PULL_MESSAGE, LITE_PULL_MESSAGE): read a queue from an offset, with tag filters,
//! the next offset to ask for, and long polling when nothing is there yet.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use std::time::Duration;

use mqstore::{GetMessageStatus, MessageFilter, QueueOffset, TagFilter};

use crate::broker::Broker;
use crate::remoting::codes::pull_flag;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;

use super::{field, opt_field, reject, reply, Handled, HeldPull, Outcome};

impl Broker {
    pub(super) fn pull(&self, req: &RemotingCommand, allow_suspend: bool) -> Handled {
        if !self.live.readable() {
            return reject(
                response::NO_PERMISSION,
                format!(
                    "the broker[{}] pulling message is forbidden",
                    self.config.broker_ip1
                ),
            );
        }
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
        ) = parsed?;
        let Some(config) = self.topics.get(&topic) else {
            return reject(
                response::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist, apply first please!"),
            );
        };
        if !config.readable() {
            return reject(
                response::NO_PERMISSION,
                format!("the topic[{topic}] pulling message is forbidden"),
            );
        }
        if queue_id < 0 || queue_id as u32 >= config.read_queue_nums {
            return reject(response::SYSTEM_ERROR,
                format!("queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]", config.read_queue_nums),
            );
        }
        let queue_id = queue_id as u32;
        let filter: Arc<TagFilter> = if sys_flag & pull_flag::SUBSCRIPTION != 0 {
            let expr_type = req.ext("expressionType").unwrap_or("TAG");
            if !expr_type.is_empty() && !expr_type.eq_ignore_ascii_case("TAG") {
                return reject(
                    response::SYSTEM_ERROR,
                    "The broker does not support consumer to filter message by SQL92",
                );
            }
            Arc::new(TagFilter::parse(req.ext("subscription").unwrap_or("*")))
        } else {
            let Some(sub) = self.clients.subscription(&group, &topic) else {
                return reject(
                    response::SUBSCRIPTION_NOT_EXIST,
                    format!("the consumer's subscription not exist, group: {group} topic: {topic}"),
                );
            };
            if sub.sub_version < sub_version {
                return reject(
                    response::SUBSCRIPTION_NOT_LATEST,
                    "the consumer's subscription not latest",
                );
            }
            if !sub.is_tag() {
                return reject(
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
                return reject(response::SYSTEM_ERROR, format!("store error: {e}"));
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
        // A slave not allowed to serve reads sends the consumer back to the master whatever
        // it found, and keeps no offset a pull carries (RocketMQ 4.9 PullMessageProcessor).
        let slave = !self.config.is_master();
        let code = if slave && !self.live.read().slave_read_enable {
            response::PULL_RETRY_IMMEDIATELY
        } else {
            code
        };
        if allow_suspend && !slave && sys_flag & pull_flag::COMMIT_OFFSET != 0 && commit_offset >= 0
        {
            self.offsets.commit(&group, &topic, queue_id, commit_offset);
        }
        if code == response::PULL_NOT_FOUND && allow_suspend && sys_flag & pull_flag::SUSPEND != 0 {
            let timeout = if self.config.long_polling_enable {
                Duration::from_millis(suspend_ms.clamp(0, 3_600_000) as u64)
            } else {
                self.config.short_polling_time
            };
            return Ok(Outcome::Hold(HeldPull {
                request: req.clone(),
                topic,
                queue_id,
                offset: offset.0,
                timeout,
                filter: Some(filter),
            }));
        }
        let suggest = self.suggest_broker(&group, result.suggest_pulling_from_slave);
        let mut resp = req
            .response(code)
            .with_remark(result.status.as_str())
            .with_ext("nextBeginOffset", result.next_begin_offset.0)
            .with_ext("minOffset", result.min_offset.0)
            .with_ext("maxOffset", result.max_offset.0)
            .with_ext("suggestWhichBrokerId", suggest)
            .with_ext("topicSysFlag", config.topic_sys_flag)
            .with_ext("groupSysFlag", 0);
        if code == response::SUCCESS {
            self.metrics.delivered(
                &topic,
                &group,
                result.messages.len() as u64,
                result.buffer_total_size,
            );
            let mut body = BytesMut::with_capacity(result.buffer_total_size as usize);
            for rec in &result.messages {
                body.put_slice(rec.bytes());
            }
            resp = resp.with_body(body.freeze());
        }
        reply(resp)
    }

    /// Which broker of the group the consumer should pull from next (RocketMQ 4.9
    /// `PullMessageProcessor`): the master unless `slaveReadEnable`; with it, a consumer
    /// reading far behind the end goes to the group's `whichBrokerWhenConsumeSlowly`, any
    /// other to the group's `brokerId`.
    fn suggest_broker(&self, group: &str, far_behind: bool) -> u64 {
        const MASTER_ID: u64 = 0;
        if !self.live.read().slave_read_enable {
            return MASTER_ID;
        }
        match self
            .subscriptions
            .find_or_create(group, self.live.read().auto_create_subscription_group)
        {
            Some(s) if far_behind => s.which_broker_when_consume_slowly,
            Some(s) => s.broker_id,
            None if far_behind => 1,
            None => MASTER_ID,
        }
    }
}
