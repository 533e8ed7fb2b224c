//! Lookups: QUERY_MESSAGE (by key through the index) and VIEW_MESSAGE_BY_ID (by offset).

use bytes::{BufMut, Bytes, BytesMut};
use mqstore::PhysicalOffset;

use crate::broker::Broker;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;

use super::{field, opt_field, reject, reply, Handled};

/// Most messages one QUERY_MESSAGE returns (`defaultQueryMaxNum`).
const DEFAULT_QUERY_MAX_NUM: usize = 32;

impl Broker {
    pub(super) fn query_message(&self, req: &RemotingCommand) -> Handled {
        let parsed = (|| -> Result<_, String> {
            Ok((
                field::<String>(req, "topic")?,
                field::<String>(req, "key")?,
                opt_field::<usize>(req, "maxNum")?.unwrap_or(DEFAULT_QUERY_MAX_NUM),
                opt_field::<i64>(req, "beginTimestamp")?.unwrap_or(0),
                opt_field::<i64>(req, "endTimestamp")?.unwrap_or(i64::MAX),
            ))
        })();
        let (topic, key, mut max, begin, end) = parsed?;
        if req.ext("_UNIQUE_KEY_QUERY") == Some("true") {
            max = DEFAULT_QUERY_MAX_NUM;
        }
        let found = self.store.query_message(&topic, &key, max, begin, end);
        if found.messages.is_empty() {
            return reject(
                response::QUERY_NOT_FOUND,
                "can not find message, maybe time range not correct",
            );
        }
        let mut body = BytesMut::new();
        let mut last_ts = 0;
        for rec in &found.messages {
            body.put_slice(rec.bytes());
            if let Ok(v) = rec.view() {
                last_ts = last_ts.max(v.store_timestamp);
            }
        }
        reply(
            req.response(response::SUCCESS)
                .with_ext("indexLastUpdateTimestamp", last_ts)
                .with_ext("indexLastUpdatePhyoffset", self.store.dispatched_offset().0)
                .with_body(body.freeze()),
        )
    }

    pub(super) fn view_message(&self, req: &RemotingCommand) -> Handled {
        let offset: u64 = field(req, "offset")?;
        match self.store.read(PhysicalOffset(offset)) {
            Ok(Some(rec)) => reply(
                req.response(response::SUCCESS)
                    .with_body(Bytes::copy_from_slice(rec.bytes())),
            ),
            _ => reject(
                response::SYSTEM_ERROR,
                format!("can not find message by the offset, {offset}"),
            ),
        }
    }
}
