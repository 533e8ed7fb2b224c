//! Held pulls (RocketMQ's PullRequestHoldService): a pull that found nothing waits
//! for the store's dispatcher to announce a matching message in its queue, or for its
//! timeout, and is then processed again without suspension.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mqstore::{Arrival, ArrivalListener, MessageFilter};
use tokio::sync::oneshot;

struct Waiter {
    /// Wake when a message at or after this queue offset arrives.
    offset: u64,
    filter: Option<Arc<dyn MessageFilter>>,
    wake: oneshot::Sender<()>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("offset", &self.offset)
            .field("filtered", &self.filter.is_some())
            .finish_non_exhaustive()
    }
}

/// Pulls waiting for messages, by topic and queue. Registered with the store as its
/// [`ArrivalListener`].
#[derive(Debug, Default)]
pub struct PullWaiters {
    by_topic: Mutex<HashMap<String, HashMap<u32, Vec<Waiter>>>>,
    /// Waiters registered; lets the dispatcher skip the lock when nobody waits.
    count: AtomicUsize,
}

impl PullWaiters {
    /// Registers a waiter for a message at queue offset `offset` or later that passes
    /// `filter`. The receiver completes on arrival; dropping it cancels the wait (it is
    /// pruned at the next registration or arrival on that queue).
    pub fn wait(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
        filter: Option<Arc<dyn MessageFilter>>,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.by_topic.lock().unwrap_or_else(PoisonError::into_inner);
        let list = map
            .entry(topic.to_owned())
            .or_default()
            .entry(queue_id)
            .or_default();
        let before = list.len();
        list.retain(|w| !w.wake.is_closed());
        let pruned = before - list.len();
        list.push(Waiter {
            offset,
            filter,
            wake: tx,
        });
        self.count.fetch_add(1, Ordering::Relaxed);
        self.count.fetch_sub(pruned, Ordering::Relaxed);
        rx
    }

    /// Wakes every waiter (shutdown: held pulls are answered at once).
    pub fn wake_all(&self) {
        let mut map = self.by_topic.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, queues) in map.drain() {
            for (_, list) in queues {
                for w in list {
                    let _ = w.wake.send(());
                }
            }
        }
        self.count.store(0, Ordering::Relaxed);
    }

    /// Waiters currently registered (some may be cancelled but not yet pruned).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ArrivalListener for PullWaiters {
    fn arrived(&self, arrival: &Arrival<'_>) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = self.by_topic.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queues) = map.get_mut(arrival.topic) else {
            return;
        };
        let Some(list) = queues.get_mut(&arrival.queue_id) else {
            return;
        };
        let before = list.len();
        let mut kept = Vec::with_capacity(list.len());
        for w in list.drain(..) {
            if w.wake.is_closed() {
                continue;
            }
            let due = arrival.queue_offset.0 >= w.offset
                && w.filter
                    .as_ref()
                    .is_none_or(|f| f.matches_tags_code(arrival.tags_code));
            if due {
                let _ = w.wake.send(());
            } else {
                kept.push(w);
            }
        }
        let removed = before - kept.len();
        *list = kept;
        if list.is_empty() {
            queues.remove(&arrival.queue_id);
            if queues.is_empty() {
                map.remove(arrival.topic);
            }
        }
        self.count.fetch_sub(removed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqstore::{QueueOffset, TagFilter};

    fn arrival(topic: &str, queue_offset: u64, tags_code: i64) -> Arrival<'_> {
        Arrival {
            topic,
            queue_id: 0,
            queue_offset: QueueOffset(queue_offset),
            tags_code,
            store_timestamp: 0,
        }
    }

    #[test]
    fn wakes_only_matching_arrivals_at_or_after_the_offset() {
        let w = PullWaiters::default();
        let filter: Arc<dyn MessageFilter> = Arc::new(TagFilter::parse("A"));
        let mut rx = w.wait("T", 0, 5, Some(filter));
        w.arrived(&arrival(
            "T",
            4,
            i64::from(mqstore::format::java_string_hash("A")),
        ));
        assert!(rx.try_recv().is_err(), "before the offset");
        w.arrived(&arrival(
            "T",
            5,
            i64::from(mqstore::format::java_string_hash("B")),
        ));
        assert!(rx.try_recv().is_err(), "tag does not match");
        w.arrived(&arrival("U", 9, 0));
        assert!(rx.try_recv().is_err(), "other topic");
        w.arrived(&arrival(
            "T",
            6,
            i64::from(mqstore::format::java_string_hash("A")),
        ));
        assert!(rx.try_recv().is_ok());
        assert!(w.is_empty());
    }
}
