//! Orderly consumers' queue locks: LOCK_BATCH_MQ, UNLOCK_BATCH_MQ.

use crate::broker::Broker;
use crate::delivery::queue_locks::{LockBatchBody, MessageQueue};
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;

use super::{reject, reply, Handled};

impl Broker {
    /// LOCK_BATCH_MQ: locks (or renews) the queues for the client; answers the
    /// ones it holds. Queues of an unknown topic, or beyond its queue count, are refused
    /// with TOPIC_NOT_EXIST and nothing in the request is locked.
    pub(super) fn lock_batch(&self, req: &RemotingCommand) -> Handled {
        let body: LockBatchBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => return reject(response::SYSTEM_ERROR, format!("lock body: {e}")),
        };
        if let Some(bad) = body.mq_set.iter().find(|q| !self.queue_exists(q)) {
            return reject(
                response::TOPIC_NOT_EXIST,
                format!(
                    "topic[{}] queue {} does not exist on this broker; nothing locked",
                    bad.topic, bad.queue_id
                ),
            );
        }
        let locked = self.locks.try_lock(
            &body.consumer_group,
            &body.client_id,
            &body.mq_set,
            self.config.rebalance_lock_max_live_time,
        );
        let body = serde_json::json!({ "lockOKMQSet": locked });
        reply(req.response(response::SUCCESS).with_body(body.to_string()))
    }

    pub(super) fn queue_exists(&self, q: &MessageQueue) -> bool {
        self.topics.get(&q.topic).is_some_and(|c| {
            q.queue_id >= 0 && (q.queue_id as u32) < c.read_queue_nums.max(c.write_queue_nums)
        })
    }

    /// UNLOCK_BATCH_MQ: releases the client's locks on the queues.
    pub(super) fn unlock_batch(&self, req: &RemotingCommand) -> Handled {
        let body: LockBatchBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => return reject(response::SYSTEM_ERROR, format!("unlock body: {e}")),
        };
        self.locks
            .unlock(&body.consumer_group, &body.client_id, &body.mq_set);
        reply(req.response(response::SUCCESS))
    }
}
