//! Consumer offsets (`config/consumerOffset.json`, §14.6, §15).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::json_file;

/// consumerOffset.json: `{"offsetTable":{"topic@group":{queueId:offset}}}`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    #[serde(default)]
    offset_table: BTreeMap<String, BTreeMap<u32, i64>>,
}

/// Committed offsets per (topic, group, queue), persisted periodically and at shutdown.
#[derive(Debug)]
pub struct OffsetManager {
    table: Mutex<HashMap<String, BTreeMap<u32, i64>>>,
    dirty: Mutex<bool>,
    path: PathBuf,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl OffsetManager {
    /// Loads the file (or its backup).
    ///
    /// # Errors
    /// A corrupt file with no usable backup: never start with offsets silently reset.
    pub fn load(path: PathBuf) -> Result<Self, json_file::LoadError> {
        let file: OffsetFile = json_file::load(&path)?.unwrap_or_default();
        Ok(OffsetManager {
            table: Mutex::new(file.offset_table.into_iter().collect()),
            dirty: Mutex::new(false),
            path,
        })
    }

    /// The committed offset, if any.
    pub fn query(&self, group: &str, topic: &str, queue_id: u32) -> Option<i64> {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key(topic, group))
            .and_then(|m| m.get(&queue_id).copied())
    }

    /// Records a commit.
    pub fn commit(&self, group: &str, topic: &str, queue_id: u32, offset: i64) {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key(topic, group))
            .or_default()
            .insert(queue_id, offset);
        *self.dirty.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }

    /// Every (topic, queue, offset) committed by `group`.
    pub fn of_group(&self, group: &str) -> Vec<(String, u32, i64)> {
        let suffix = format!("@{group}");
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (k, m) in t.iter() {
            if let Some(topic) = k.strip_suffix(&suffix) {
                out.extend(m.iter().map(|(&q, &o)| (topic.to_owned(), q, o)));
            }
        }
        out.sort();
        out
    }

    /// Writes the file if anything changed since the last write.
    ///
    /// # Errors
    /// The write's I/O error (the change stays pending and is retried next time).
    pub fn persist(&self) -> std::io::Result<()> {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        if !*dirty {
            return Ok(());
        }
        let file = OffsetFile {
            offset_table: self
                .table
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).unwrap_or_default();
        json_file::store(&self.path, &text)?;
        *dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_java_broker_file_and_round_trips() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("consumerOffset.json");
        std::fs::write(
            &path,
            "{\n\t\"offsetTable\":{\n\t\t\"T@g\":{0:12,1:7},\"%RETRY%g@g\":{0:0}\n\t}\n}",
        )
        .expect("write");
        let m = OffsetManager::load(path.clone()).expect("load");
        assert_eq!(m.query("g", "T", 1), Some(7));
        m.commit("g", "T", 3, 99);
        m.persist().expect("persist");
        let again = OffsetManager::load(path).expect("reload");
        assert_eq!(again.query("g", "T", 3), Some(99));
        assert_eq!(again.query("g", "T", 0), Some(12));
        assert_eq!(again.of_group("g").len(), 4);
    }
}
