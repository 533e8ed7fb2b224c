//! Where each queue stands — its offsets in the store — and how far each consumer group has
//! come through it. One computation behind the admin answers (topic and consume stats), the
//! lag gauges and anything else that shows lag; [`ProgressHistory`] keeps periodic samples
//! of it, from which rates (messages in per topic, consumed per group) are derived without
//! counting anything on the message path.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use mqstore::{MessageStore, QueueOffset};

use crate::state::consumer_offsets::ConsumerOffsets;
use crate::state::topics::TopicConfig;

/// One queue's stored range (RocketMQ's `TopicOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRange {
    /// Queue id.
    pub queue_id: u32,
    /// First queue offset still stored.
    pub min: u64,
    /// Queue offset the next message gets.
    pub max: u64,
    /// Store time (ms) of the newest message; 0 for an empty queue.
    pub last_stored_ms: i64,
}

/// The stored range of each of the topic's write queues, as RocketMQ 4.9's
/// `GET_TOPIC_STATS_INFO` reports them.
pub fn topic_ranges(store: &MessageStore, config: &TopicConfig) -> Vec<QueueRange> {
    (0..config.write_queue_nums)
        .map(|queue_id| {
            let topic = config.topic_name.as_str();
            let min = store.min_offset_in_queue(topic, queue_id).0;
            let max = store.max_offset_in_queue(topic, queue_id).0;
            let last_stored_ms = if max > 0 {
                store.message_store_timestamp(topic, queue_id, QueueOffset(max - 1))
            } else {
                0
            };
            QueueRange {
                queue_id,
                min,
                max,
                last_stored_ms,
            }
        })
        .collect()
}

/// A group's position in one queue (RocketMQ's `OffsetWrapper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueProgress {
    /// Queue id.
    pub queue_id: u32,
    /// Queue offset the next message gets.
    pub broker_offset: u64,
    /// The group's committed offset (0 when it has none).
    pub consumer_offset: u64,
    /// Store time (ms) of the last message consumed; 0 when none was.
    pub last_consumed_ms: i64,
    /// Store time (ms) of the oldest message not consumed; 0 when there is none.
    pub oldest_unconsumed_ms: i64,
}

impl QueueProgress {
    /// Messages stored but not yet consumed.
    pub fn lag(&self) -> u64 {
        self.broker_offset.saturating_sub(self.consumer_offset)
    }
}

/// Where `group` stands in one queue of `topic`, given its committed offset (negative or
/// absent counts as 0, as RocketMQ's broker reports it).
pub fn queue_progress(
    store: &MessageStore,
    topic: &str,
    queue_id: u32,
    committed: Option<i64>,
) -> QueueProgress {
    let broker_offset = store.max_offset_in_queue(topic, queue_id).0;
    let consumer_offset = committed.map_or(0, |c| u64::try_from(c).unwrap_or(0));
    let stored_at =
        |offset: u64| store.message_store_timestamp(topic, queue_id, QueueOffset(offset));
    let last_consumed_ms = match consumer_offset.checked_sub(1) {
        Some(last) => stored_at(last).max(0),
        None => 0,
    };
    let oldest_unconsumed_ms = if consumer_offset < broker_offset {
        stored_at(consumer_offset).max(0)
    } else {
        0
    };
    QueueProgress {
        queue_id,
        broker_offset,
        consumer_offset,
        last_consumed_ms,
        oldest_unconsumed_ms,
    }
}

/// Where `group` stands in each read queue of the topic.
pub fn group_progress(
    store: &MessageStore,
    offsets: &ConsumerOffsets,
    config: &TopicConfig,
    group: &str,
) -> Vec<QueueProgress> {
    let topic = config.topic_name.as_str();
    (0..config.read_queue_nums)
        .map(|q| queue_progress(store, topic, q, offsets.query(group, topic, q)))
        .collect()
}

/// How often the broker samples progress (RocketMQ's stats sample every 10 s too).
pub const SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// How many samples [`ProgressHistory`] keeps: an hour at [`SAMPLE_INTERVAL`].
pub const HISTORY_SAMPLES: usize = 360;
/// Rates are taken over the samples of the last minute, as RocketMQ's per-minute TPS.
const RATE_WINDOW_MS: i64 = 60_000;

/// One moment: each topic's total of max offsets, each (group, topic)'s total of committed
/// offsets and its lag.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Topic → sum over its queues of the max offset.
    pub stored: BTreeMap<String, u64>,
    /// (group, topic) → (sum of committed offsets, lag in messages).
    pub consumed: BTreeMap<(String, String), (u64, u64)>,
}

/// Samples of [`Sample`] over time, newest last, at most [`HISTORY_SAMPLES`].
#[derive(Debug, Default)]
pub struct ProgressHistory {
    samples: Mutex<VecDeque<Sample>>,
}

impl ProgressHistory {
    /// Takes a sample of every topic and every group's committed offsets now.
    pub fn sample(
        &self,
        store: &MessageStore,
        topics: &[TopicConfig],
        offsets: &ConsumerOffsets,
        now_ms: i64,
    ) {
        let mut sample = Sample {
            at_ms: now_ms,
            ..Sample::default()
        };
        for config in topics {
            let total = topic_ranges(store, config).iter().map(|r| r.max).sum();
            sample.stored.insert(config.topic_name.clone(), total);
        }
        for (group, topic, queue_id, committed) in offsets.all() {
            let p = queue_progress(store, &topic, queue_id, Some(committed));
            let entry = sample.consumed.entry((group, topic)).or_default();
            entry.0 += p.consumer_offset;
            entry.1 += p.lag();
        }
        self.push(sample);
    }

    /// Adds a sample (oldest dropped beyond [`HISTORY_SAMPLES`]).
    pub fn push(&self, sample: Sample) {
        let mut samples = self.lock();
        if samples.len() == HISTORY_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Sample>> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Per second over the last minute of samples, of the quantity `of` picks from each
    /// sample (from the oldest sample in the window that has it to the newest); 0 until
    /// two samples a moment apart have it.
    fn rate(&self, of: impl Fn(&Sample) -> Option<u64>) -> f64 {
        let samples = self.lock();
        let Some(newest_at) = samples.back().map(|s| s.at_ms) else {
            return 0.0;
        };
        let mut with = samples
            .iter()
            .filter(|s| newest_at - s.at_ms <= RATE_WINDOW_MS)
            .filter_map(|s| of(s).map(|v| (s.at_ms, v)));
        let Some((from_at, from)) = with.next() else {
            return 0.0;
        };
        match with.last() {
            Some((to_at, to)) if to_at > from_at => {
                to.saturating_sub(from) as f64 / ((to_at - from_at) as f64 / 1000.0)
            }
            _ => 0.0,
        }
    }

    /// Messages stored in `topic` per second over the last minute.
    pub fn put_tps(&self, topic: &str) -> f64 {
        self.rate(|s| s.stored.get(topic).copied())
    }

    /// Messages of `topic` that `group` consumed (committed) per second over the last minute.
    pub fn consume_tps(&self, group: &str, topic: &str) -> f64 {
        let key = (group.to_owned(), topic.to_owned());
        self.rate(|s| s.consumed.get(&key).map(|&(committed, _)| committed))
    }

    /// Messages stored in every topic per second over the last minute.
    pub fn total_put_tps(&self) -> f64 {
        self.rate(|s| Some(s.stored.values().sum()))
    }

    /// Messages every group consumed (committed) per second over the last minute.
    pub fn total_consume_tps(&self) -> f64 {
        self.rate(|s| Some(s.consumed.values().map(|&(committed, _)| committed).sum()))
    }

    /// `group`'s lag in `topic` at each sample: (time ms, messages).
    pub fn lag_series(&self, group: &str, topic: &str) -> Vec<(i64, u64)> {
        let key = (group.to_owned(), topic.to_owned());
        self.lock()
            .iter()
            .filter_map(|s| s.consumed.get(&key).map(|&(_, lag)| (s.at_ms, lag)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, stored: u64, committed: u64, lag: u64) -> Sample {
        Sample {
            at_ms,
            stored: [("t".to_owned(), stored)].into(),
            consumed: [(("g".to_owned(), "t".to_owned()), (committed, lag))].into(),
        }
    }

    #[test]
    fn rates_come_from_the_last_minute_of_samples() {
        let h = ProgressHistory::default();
        assert!(h.put_tps("t").abs() < f64::EPSILON, "no samples, no rate");
        h.push(sample(0, 0, 0, 0));
        assert!(h.put_tps("t").abs() < f64::EPSILON, "one sample, no rate");
        // 1 000 stored and 500 consumed over 10 s.
        h.push(sample(10_000, 1_000, 500, 500));
        assert!((h.put_tps("t") - 100.0).abs() < 1e-9);
        assert!((h.consume_tps("g", "t") - 50.0).abs() < 1e-9);
        assert!((h.total_put_tps() - 100.0).abs() < 1e-9);
        assert!((h.total_consume_tps() - 50.0).abs() < 1e-9);
        // A minute later the first sample is outside the window: 70 s - 10 s.
        h.push(sample(70_000, 7_000, 500, 6_500));
        assert!((h.put_tps("t") - 100.0).abs() < 1e-9);
        assert!(h.consume_tps("g", "t").abs() < 1e-9);
        assert!(h.put_tps("other").abs() < f64::EPSILON, "unknown topic");
        // A group that appears after the first sample: its rate starts where it appears.
        h.push(Sample {
            at_ms: 80_000,
            consumed: [(("late".to_owned(), "t".to_owned()), (100, 0))].into(),
            ..Sample::default()
        });
        h.push(Sample {
            at_ms: 90_000,
            consumed: [(("late".to_owned(), "t".to_owned()), (300, 0))].into(),
            ..Sample::default()
        });
        assert!((h.consume_tps("late", "t") - 20.0).abs() < 1e-9);
        assert_eq!(
            h.lag_series("g", "t"),
            vec![(0, 0), (10_000, 500), (70_000, 6_500)]
        );
    }

    #[test]
    fn history_is_bounded() {
        let h = ProgressHistory::default();
        for i in 0..HISTORY_SAMPLES as i64 + 10 {
            h.push(sample(i * 10_000, 0, 0, 0));
        }
        let series = h.lag_series("g", "t");
        assert_eq!(series.len(), HISTORY_SAMPLES);
        assert_eq!(series[0].0, 10 * 10_000, "the oldest were dropped");
    }
}
