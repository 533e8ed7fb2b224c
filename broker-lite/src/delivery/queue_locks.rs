//! Queue locks for orderly consumers (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ): within a
//! consumer group each queue is held by at most one client id; a lock not renewed within
//! `rebalanceLockMaxLiveTime` (60 s) is free for another client.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A queue as the lock bodies name it (`MessageQueue`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    /// Topic.
    pub topic: String,
    /// Broker name.
    #[serde(default)]
    pub broker_name: String,
    /// Queue.
    pub queue_id: i32,
}

/// LOCK_BATCH_MQ / UNLOCK_BATCH_MQ body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchBody {
    /// The consumer group.
    pub consumer_group: String,
    /// The client asking.
    pub client_id: String,
    /// The queues.
    pub mq_set: Vec<MessageQueue>,
}

#[derive(Debug)]
struct Holder {
    client_id: String,
    renewed: Instant,
}

/// Lock table: (group, queue) → holder.
#[derive(Debug, Default)]
pub struct QueueLocks {
    table: Mutex<HashMap<(String, String, i32), Holder>>,
}

impl QueueLocks {
    /// Locks (or renews) each queue for `client`; returns those it now holds. A queue
    /// held by another client whose lock has not expired is left out.
    pub fn try_lock(
        &self,
        group: &str,
        client: &str,
        queues: &[MessageQueue],
        max_live: Duration,
    ) -> Vec<MessageQueue> {
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut locked = Vec::new();
        for q in queues {
            let key = (group.to_owned(), q.topic.clone(), q.queue_id);
            let free = t
                .get(&key)
                .is_none_or(|h| h.client_id == client || now.duration_since(h.renewed) > max_live);
            if free {
                t.insert(
                    key,
                    Holder {
                        client_id: client.to_owned(),
                        renewed: now,
                    },
                );
                locked.push(q.clone());
            }
        }
        locked
    }

    /// Releases the queues `client` holds; others' locks are untouched.
    pub fn unlock(&self, group: &str, client: &str, queues: &[MessageQueue]) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        for q in queues {
            let key = (group.to_owned(), q.topic.clone(), q.queue_id);
            if t.get(&key).is_some_and(|h| h.client_id == client) {
                t.remove(&key);
            }
        }
    }

    /// The client holding a queue's live lock.
    pub fn holder(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        max_live: Duration,
    ) -> Option<String> {
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.get(&(group.to_owned(), topic.to_owned(), queue_id))
            .filter(|h| h.renewed.elapsed() <= max_live)
            .map(|h| h.client_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: q,
        }
    }

    #[test]
    fn one_holder_per_queue_until_released_or_expired() {
        let l = QueueLocks::default();
        let live = Duration::from_millis(100);
        assert_eq!(l.try_lock("g", "a", &[mq(0), mq(1)], live).len(), 2);
        assert_eq!(l.try_lock("g", "b", &[mq(1), mq(2)], live), vec![mq(2)]);
        assert_eq!(
            l.try_lock("other", "b", &[mq(1)], live).len(),
            1,
            "per group"
        );
        l.unlock("g", "b", &[mq(0)]);
        assert_eq!(
            l.holder("g", "T", 0, live).as_deref(),
            Some("a"),
            "not b's to release"
        );
        l.unlock("g", "a", &[mq(0)]);
        assert_eq!(l.try_lock("g", "b", &[mq(0)], live), vec![mq(0)]);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(
            l.try_lock("g", "b", &[mq(1)], live),
            vec![mq(1)],
            "a's lock expired"
        );
    }
}
