//! Consumer offsets (`config/consumerOffset.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::state::metadata::{self, Document, JsonTable};

/// consumerOffset.json: `{"offsetTable":{"topic@group":{queueId:offset}}}`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetFile {
    #[serde(default)]
    offset_table: BTreeMap<String, BTreeMap<u32, i64>>,
}

impl Document for OffsetFile {
    const WHAT: &'static str = "consumer offsets";

    fn encode(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Committed offsets per (topic, group, queue), persisted periodically and at shutdown.
#[derive(Debug)]
pub struct ConsumerOffsets {
    table: JsonTable<OffsetFile>,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsets {
    /// Loads the file (or its backup).
    ///
    /// # Errors
    /// A corrupt file with no usable backup: never start with offsets silently reset.
    pub fn load(path: PathBuf) -> Result<Self, metadata::LoadError> {
        Ok(ConsumerOffsets {
            table: JsonTable::load(path)?,
        })
    }

    /// The committed offset, if any.
    pub fn query(&self, group: &str, topic: &str, queue_id: u32) -> Option<i64> {
        self.table.read(|t| {
            t.offset_table
                .get(&key(topic, group))
                .and_then(|m| m.get(&queue_id).copied())
        })
    }

    /// The whole table as JSON (GET_ALL_CONSUMER_OFFSET).
    pub fn to_json(&self) -> String {
        self.table.text()
    }

    /// Takes a master's offsets (a slave's copy, from GET_ALL_CONSUMER_OFFSET). An offset
    /// only moves forward: one a consumer committed to this slave while the master was
    /// down is kept until the master has caught up with it. Returns how many moved.
    ///
    /// # Errors
    /// The answer does not parse.
    pub fn adopt(&self, master: &str) -> Result<usize, String> {
        let theirs: OffsetFile = metadata::parse(master)?;
        Ok(self.table.change_later(|t| {
            let mut moved = 0;
            for (key, queues) in theirs.offset_table {
                let mine = t.offset_table.entry(key).or_default();
                for (queue, offset) in queues {
                    let slot = mine.entry(queue).or_insert(-1);
                    if offset > *slot {
                        *slot = offset;
                        moved += 1;
                    }
                }
            }
            moved
        }))
    }

    /// Records a commit.
    pub fn commit(&self, group: &str, topic: &str, queue_id: u32, offset: i64) {
        self.table.change_later(|t| {
            t.offset_table
                .entry(key(topic, group))
                .or_default()
                .insert(queue_id, offset);
        });
    }

    /// Every committed offset: (group, topic, queue, offset).
    pub fn all(&self) -> Vec<(String, String, u32, i64)> {
        let mut out = Vec::new();
        self.table.read(|t| {
            for (k, m) in &t.offset_table {
                if let Some((topic, group)) = k.rsplit_once('@') {
                    out.extend(
                        m.iter()
                            .map(|(&q, &o)| (group.to_owned(), topic.to_owned(), q, o)),
                    );
                }
            }
        });
        out
    }

    /// The groups that committed an offset of `topic`.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic}@");
        self.table.read(|t| {
            t.offset_table
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        })
    }

    /// Forgets every offset of `group` (DELETE_SUBSCRIPTIONGROUP with `removeOffset`);
    /// returns how many topics it had.
    pub fn remove_group(&self, group: &str) -> usize {
        let suffix = format!("@{group}");
        self.table.change(|t| {
            let before = t.offset_table.len();
            t.offset_table.retain(|k, _| !k.ends_with(&suffix));
            before - t.offset_table.len()
        })
    }

    /// Forgets every group's offsets of `topic` (its queues were deleted and start again
    /// at 0); returns how many groups had some.
    pub fn remove_topic(&self, topic: &str) -> usize {
        let prefix = format!("{topic}@");
        self.table.change(|t| {
            let before = t.offset_table.len();
            t.offset_table.retain(|k, _| !k.starts_with(&prefix));
            before - t.offset_table.len()
        })
    }

    /// Every (topic, queue, offset) committed by `group`.
    pub fn of_group(&self, group: &str) -> Vec<(String, u32, i64)> {
        let suffix = format!("@{group}");
        let mut out = Vec::new();
        self.table.read(|t| {
            for (k, m) in &t.offset_table {
                if let Some(topic) = k.strip_suffix(&suffix) {
                    out.extend(m.iter().map(|(&q, &o)| (topic.to_owned(), q, o)));
                }
            }
        });
        out.sort();
        out
    }

    /// Writes the file if anything changed since the last write.
    ///
    /// # Errors
    /// The write's I/O error (the change stays pending and is retried next time).
    pub fn persist(&self) -> std::io::Result<()> {
        self.table.persist()
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
        let m = ConsumerOffsets::load(path.clone()).expect("load");
        assert_eq!(m.query("g", "T", 1), Some(7));
        m.commit("g", "T", 3, 99);
        m.persist().expect("persist");
        let again = ConsumerOffsets::load(path).expect("reload");
        assert_eq!(again.query("g", "T", 3), Some(99));
        assert_eq!(again.query("g", "T", 0), Some(12));
        assert_eq!(again.of_group("g").len(), 4);
    }
}
