//! Delayed sends: a DELAY level moves a message to `SCHEDULE_TOPIC_XXXX` (the
//! `ScheduledDelivery` thread brings it back when due); GET_ALL_DELAY_OFFSET.

use mqstore::format::{keys, SCHEDULE_TOPIC};
use mqstore::Message;

use crate::broker::Broker;

/// Why a delay could not be applied.
fn bad_delay(raw: &str, max: usize) -> String {
    format!("DELAY `{raw}` is not a delay level (0 = none, 1..={max}; larger levels are capped)")
}

impl Broker {
    /// Applies `DELAY`: a message with a level > 0 (capped at the highest) waits in
    /// the schedule topic, queue `level - 1`, with its real topic and queue in properties.
    pub(super) fn apply_delay(&self, msg: Message) -> Result<Message, String> {
        let Some(raw) = msg.property(keys::DELAY).map(str::to_owned) else {
            return Ok(msg);
        };
        let max = self.schedule.levels().len();
        let level: i64 = raw.trim().parse().map_err(|_| bad_delay(&raw, max))?;
        if level < 0 {
            return Err(bad_delay(&raw, max));
        }
        if level == 0 || !msg.advances_queue() {
            return Ok(msg);
        }
        let level = (level as u64).min(max as u64);
        let topic = msg.topic.clone();
        let queue = msg.queue_id.to_string();
        let mut delayed = msg
            .with_property_replaced(keys::DELAY, &level.to_string())
            .with_property_replaced(keys::REAL_TOPIC, &topic)
            .with_property_replaced(keys::REAL_QID, &queue);
        SCHEDULE_TOPIC.clone_into(&mut delayed.topic);
        delayed.queue_id = (level - 1) as u32;
        Ok(delayed)
    }
}
