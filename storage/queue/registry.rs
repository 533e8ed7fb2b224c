//! The registry of every ConsumeQueue (by topic and queue id), and the rule that says
//! which unit a CommitLog record becomes: dispatch, recovery, cleanup and verify all ask
//! here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::Result;
use crate::fault::FaultInjector;
use crate::format::{self, CqUnit, RecordView};

use super::{ConsumeQueue, OwnedQueue};

/// Every ConsumeQueue of the store, by topic and queue id.
#[derive(Debug)]
pub(crate) struct ConsumeQueues {
    root: PathBuf,
    file_size: u64,
    map: RwLock<HashMap<String, HashMap<u32, Arc<ConsumeQueue>>>>,
    faults: FaultInjector,
}

impl ConsumeQueues {
    pub(crate) fn new(
        root: PathBuf,
        file_size: u64,
        queues: Vec<ConsumeQueue>,
        faults: FaultInjector,
    ) -> Self {
        let mut map: HashMap<String, HashMap<u32, Arc<ConsumeQueue>>> = HashMap::new();
        for q in queues {
            map.entry(q.topic().to_owned())
                .or_default()
                .insert(q.queue_id(), Arc::new(q));
        }
        ConsumeQueues {
            root,
            file_size,
            map: RwLock::new(map),
            faults,
        }
    }

    pub(crate) fn get(&self, topic: &str, queue_id: u32) -> Option<Arc<ConsumeQueue>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(topic)?.get(&queue_id).cloned()
    }

    pub(crate) fn get_or_create(&self, topic: &str, queue_id: u32) -> Result<Arc<ConsumeQueue>> {
        if let Some(q) = self.get(topic, queue_id) {
            return Ok(q);
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let by_id = map.entry(topic.to_owned()).or_default();
        if let Some(q) = by_id.get(&queue_id) {
            return Ok(Arc::clone(q));
        }
        let q = OwnedQueue::empty(&self.root, topic, queue_id, self.file_size, &self.faults);
        let q = Arc::new(q.into_shared()?);
        by_id.insert(queue_id, Arc::clone(&q));
        Ok(q)
    }

    /// Takes every queue of `topic` out of the registry: new reads find none from now on.
    pub(crate) fn remove_topic(&self, topic: &str) -> Vec<Arc<ConsumeQueue>> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(topic)
            .map(|by_id| by_id.into_values().collect())
            .unwrap_or_default()
    }

    /// Removes `dir` and then its parent if they are empty and no queue of a topic in the
    /// registry lives there (a queue created meanwhile keeps them: creation holds the same
    /// lock).
    pub(crate) fn prune_empty_dirs(&self, dir: &std::path::Path) {
        let _creation = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if !dir.starts_with(&self.root) {
            return;
        }
        // Fails, as wanted, on a directory that still holds anything.
        if std::fs::remove_dir(dir).is_ok() {
            if let Some(topic_dir) = dir.parent().filter(|p| *p != self.root) {
                let _ = std::fs::remove_dir(topic_dir);
            }
        }
    }

    /// Every queue.
    pub(crate) fn all(&self) -> Vec<Arc<ConsumeQueue>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.values().flat_map(|m| m.values().cloned()).collect()
    }

    /// Flushes every queue.
    pub(crate) fn flush(&self) -> Result<()> {
        for q in self.all() {
            q.flush()?;
        }
        Ok(())
    }
}

/// The ConsumeQueue unit of a record, if it enters one.
pub(crate) fn unit_of(
    phys: u64,
    v: &RecordView<'_>,
    delay_levels: &[i64],
) -> Option<(u64, CqUnit)> {
    format::enters_consume_queue(v.sys_flag).then(|| {
        (
            v.queue_offset as u64,
            CqUnit {
                physical_offset: phys as i64,
                size: v.total_size as i32,
                tags_code: format::queue_tags_code(
                    v.topic,
                    v.properties,
                    v.store_timestamp,
                    delay_levels,
                ),
            },
        )
    })
}
