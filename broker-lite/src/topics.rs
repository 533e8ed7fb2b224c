//! Topic configurations (`config/topics.json`, §14.2 auto-creation, §15).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::codes::perm;
use crate::json_file;

/// The auto-create template topic.
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Prefix of a group's retry topic.
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
/// Prefix of a group's dead-letter topic.
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";

/// Topics clients may not send to (§14.2 step 3).
const NOT_ALLOWED_SEND: [&str; 6] = [
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// One topic's configuration, in RocketMQ's JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// The topic.
    pub topic_name: String,
    /// Readable queues.
    #[serde(default = "sixteen")]
    pub read_queue_nums: u32,
    /// Writable queues.
    #[serde(default = "sixteen")]
    pub write_queue_nums: u32,
    /// Permission bits.
    #[serde(default = "rw")]
    pub perm: u32,
    /// `SINGLE_TAG` or `MULTI_TAG`.
    #[serde(default = "single_tag")]
    pub topic_filter_type: String,
    /// Topic system flag.
    #[serde(default)]
    pub topic_sys_flag: u32,
    /// Ordered topic.
    #[serde(default)]
    pub order: bool,
}

fn sixteen() -> u32 {
    16
}
fn rw() -> u32 {
    perm::READ | perm::WRITE
}
fn single_tag() -> String {
    "SINGLE_TAG".into()
}

impl TopicConfig {
    /// A read-write topic with `queues` queues.
    pub fn new(name: &str, queues: u32, perm_bits: u32) -> Self {
        TopicConfig {
            topic_name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: perm_bits,
            topic_filter_type: single_tag(),
            topic_sys_flag: 0,
            order: false,
        }
    }

    /// Whether clients may write.
    pub fn writable(&self) -> bool {
        self.perm & perm::WRITE != 0
    }

    /// Whether clients may read.
    pub fn readable(&self) -> bool {
        self.perm & perm::READ != 0
    }
}

/// `DataVersion`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataVersion {
    /// Last change (ms).
    #[serde(default)]
    pub timestamp: i64,
    /// Changes so far.
    #[serde(default)]
    pub counter: i64,
}

/// topics.json (`TopicConfigSerializeWrapper`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicTable {
    /// Topic name → configuration.
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Version of the table.
    #[serde(default)]
    pub data_version: DataVersion,
}

/// Checks a topic name.
///
/// # Errors
/// Why the name is refused.
pub fn validate_topic(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the topic is blank".into());
    }
    if !mqstore::format::is_valid_topic(name) {
        return Err(format!(
            "the topic [{name}] is longer than 127 characters or uses characters outside [%|a-zA-Z0-9_-]"
        ));
    }
    Ok(())
}

/// Whether clients may not send to `topic` themselves.
pub fn is_not_allowed_send(topic: &str) -> bool {
    NOT_ALLOWED_SEND.contains(&topic)
}

/// The broker's topics.
#[derive(Debug)]
pub struct TopicManager {
    table: Mutex<TopicTable>,
    path: PathBuf,
}

impl TopicManager {
    /// Loads `topics.json` and adds the built-in topics.
    ///
    /// # Errors
    /// A corrupt file with no usable backup.
    pub fn load(
        path: PathBuf,
        cluster: &str,
        broker_name: &str,
        auto_create: bool,
        default_queues: u32,
    ) -> Result<Self, json_file::LoadError> {
        let mut table: TopicTable = json_file::load(&path)?.unwrap_or_default();
        let rwx = perm::READ | perm::WRITE | perm::INHERIT;
        let mut builtin = vec![
            TopicConfig::new("SELF_TEST_TOPIC", 1, rw()),
            TopicConfig::new("OFFSET_MOVED_EVENT", 1, rw()),
            TopicConfig::new(cluster, 16, rwx),
            TopicConfig::new(broker_name, 1, rwx),
        ];
        if auto_create {
            builtin.push(TopicConfig::new(AUTO_CREATE_TOPIC, default_queues, rwx));
        }
        for t in builtin {
            table
                .topic_config_table
                .entry(t.topic_name.clone())
                .or_insert(t);
        }
        Ok(TopicManager {
            table: Mutex::new(table),
            path,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TopicTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A topic's configuration.
    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.lock().topic_config_table.get(topic).cloned()
    }

    /// Whether a topic exists.
    pub fn contains(&self, topic: &str) -> bool {
        self.lock().topic_config_table.contains_key(topic)
    }

    /// Every topic.
    pub fn all(&self) -> Vec<TopicConfig> {
        self.lock().topic_config_table.values().cloned().collect()
    }

    /// Creates or replaces a topic and persists the table.
    pub fn put(&self, config: TopicConfig) {
        let mut t = self.lock();
        t.topic_config_table
            .insert(config.topic_name.clone(), config);
        t.data_version.counter += 1;
        t.data_version.timestamp = now_millis();
        self.persist_locked(&t);
    }

    /// The topic, auto-created from `default_topic` (normally `TBW102`) as §14.2 step 4
    /// when it does not exist. `None` when it does not exist and cannot be created.
    pub fn get_or_auto_create(
        &self,
        topic: &str,
        default_topic: &str,
        client_queue_nums: u32,
    ) -> Option<TopicConfig> {
        let mut t = self.lock();
        if let Some(c) = t.topic_config_table.get(topic) {
            return Some(c.clone());
        }
        let template = t.topic_config_table.get(default_topic)?;
        if template.perm & perm::INHERIT == 0 {
            return None;
        }
        let queues = client_queue_nums.min(template.write_queue_nums).max(1);
        let mut created = TopicConfig::new(topic, queues, template.perm & !perm::INHERIT);
        created
            .topic_filter_type
            .clone_from(&template.topic_filter_type);
        t.topic_config_table
            .insert(topic.to_owned(), created.clone());
        t.data_version.counter += 1;
        t.data_version.timestamp = now_millis();
        self.persist_locked(&t);
        tracing::info!(topic, queues, from = default_topic, "topic auto-created");
        Some(created)
    }

    /// The retry topic of a group, created (1 read-write queue) if missing.
    pub fn ensure_retry_topic(&self, group: &str) -> TopicConfig {
        let name = format!("{RETRY_GROUP_TOPIC_PREFIX}{group}");
        let mut t = self.lock();
        if let Some(c) = t.topic_config_table.get(&name) {
            return c.clone();
        }
        let created = TopicConfig::new(&name, 1, rw());
        t.topic_config_table.insert(name, created.clone());
        t.data_version.counter += 1;
        self.persist_locked(&t);
        created
    }

    /// A broker-made topic (`%DLQ%group`), created with `queues` read-write queues if
    /// missing.
    pub fn ensure_topic(&self, name: &str, queues: u32) -> TopicConfig {
        let mut t = self.lock();
        if let Some(c) = t.topic_config_table.get(name) {
            return c.clone();
        }
        let created = TopicConfig::new(name, queues, rw());
        t.topic_config_table
            .insert(name.to_owned(), created.clone());
        t.data_version.counter += 1;
        t.data_version.timestamp = now_millis();
        self.persist_locked(&t);
        created
    }

    /// The table as JSON (GET_ALL_TOPIC_CONFIG body and topics.json).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&*self.lock()).unwrap_or_default()
    }

    fn persist_locked(&self, table: &TopicTable) {
        let text = serde_json::to_string_pretty(table).unwrap_or_default();
        if let Err(e) = json_file::store(&self.path, &text) {
            tracing::error!(file = %self.path.display(), error = %e, "could not persist topics");
        }
    }

    /// Writes topics.json.
    pub fn persist(&self) {
        let t = self.lock();
        self.persist_locked(&t);
    }
}

/// Wall-clock milliseconds (the store's clock).
pub fn now_millis() -> i64 {
    mqstore::Clock::now_millis(&mqstore::SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_creation_follows_the_template() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("topics.json");
        let m = TopicManager::load(path.clone(), "C", "b", true, 8).expect("load");
        let t = m
            .get_or_auto_create("T1", AUTO_CREATE_TOPIC, 4)
            .expect("created");
        assert_eq!((t.read_queue_nums, t.perm), (4, 6));
        let t = m
            .get_or_auto_create("T2", AUTO_CREATE_TOPIC, 64)
            .expect("created");
        assert_eq!(t.write_queue_nums, 8, "capped by TBW102");
        assert!(m.get_or_auto_create("T3", "NOPE", 4).is_none());
        let again = TopicManager::load(path, "C", "b", false, 8).expect("reload");
        assert_eq!(again.get("T1").map(|t| t.write_queue_nums), Some(4));
        assert!(
            again.get(AUTO_CREATE_TOPIC).is_some(),
            "persisted copy kept"
        );
    }
}
