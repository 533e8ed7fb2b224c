//! Offsets: consumer offset query and commit, queue min/max, search by time, earliest
//! store time.

use mqstore::MessageStore;

use crate::broker::Broker;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;

use super::{field, reject, reply, Handled};

impl Broker {
    pub(super) fn query_offset(&self, req: &RemotingCommand) -> Handled {
        let (group, topic, queue_id) = match (|| -> Result<_, String> {
            Ok((
                field::<String>(req, "consumerGroup")?,
                field::<String>(req, "topic")?,
                field::<u32>(req, "queueId")?,
            ))
        })() {
            Ok(p) => p,
            Err(e) => return reject(response::SYSTEM_ERROR, e),
        };
        if let Some(o) = self
            .offsets
            .query(&group, &topic, queue_id)
            .filter(|&o| o >= 0)
        {
            return reply(req.response(response::SUCCESS).with_ext("offset", o));
        }
        // No stored offset: a queue that still holds its first message starts at 0
        // (RocketMQ 4.x answers 0 while that message is "in memory"; we answer 0 whenever
        // the queue still starts at 0).
        if self.store.min_offset_in_queue(&topic, queue_id).0 == 0 {
            return reply(req.response(response::SUCCESS).with_ext("offset", 0));
        }
        reject(
            response::QUERY_NOT_FOUND,
            "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
        )
    }

    pub(super) fn update_offset(&self, req: &RemotingCommand) -> Handled {
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
                reply(req.response(response::SUCCESS))
            }
            Err(e) => reject(response::SYSTEM_ERROR, e),
        }
    }

    fn topic_queue(req: &RemotingCommand) -> Result<(String, u32), String> {
        Ok((field(req, "topic")?, field(req, "queueId")?))
    }

    pub(super) fn queue_offset(
        &self,
        req: &RemotingCommand,
        f: impl Fn(&MessageStore, &str, u32) -> i64,
    ) -> Handled {
        match Self::topic_queue(req) {
            Ok((t, q)) => reply(
                req.response(response::SUCCESS)
                    .with_ext("offset", f(&self.store, &t, q)),
            ),
            Err(e) => reject(response::SYSTEM_ERROR, e),
        }
    }

    pub(super) fn search_offset(&self, req: &RemotingCommand) -> Handled {
        match Self::topic_queue(req).and_then(|tq| Ok((tq, field::<i64>(req, "timestamp")?))) {
            Ok(((t, q), ts)) => reply(
                req.response(response::SUCCESS)
                    .with_ext("offset", self.store.offset_in_queue_by_time(&t, q, ts).0),
            ),
            Err(e) => reject(response::SYSTEM_ERROR, e),
        }
    }

    pub(super) fn earliest_time(&self, req: &RemotingCommand) -> Handled {
        match Self::topic_queue(req) {
            Ok((t, q)) => reply(req.response(response::SUCCESS).with_ext(
                "timestamp",
                self.store.earliest_message_time_in_queue(&t, q),
            )),
            Err(e) => reject(response::SYSTEM_ERROR, e),
        }
    }
}
