//! Topic configurations (`config/topics.json`) and auto-creation from the `TBW102` template.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::remoting::codes::perm;
use crate::state::metadata::{self, DataVersion, Document, JsonTable};

/// The auto-create template topic.
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Prefix of a group's retry topic.
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
/// Prefix of a group's dead-letter topic.
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";

/// Topics clients may not send to (RocketMQ's `TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`).
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
    /// RocketMQ 5's topic attributes (e.g. `+message.type=NORMAL`): kept and passed on,
    /// not interpreted. Always written, as RocketMQ 5 does: its name servers require it.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
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
            attributes: BTreeMap::new(),
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

    /// The topic as routes show it on a broker with `broker_permission`: a broker that
    /// lacks read or write (being drained) advertises every topic with its own perm, as
    /// RocketMQ's `registerBrokerAll` does, so that clients route around it.
    #[must_use]
    pub fn advertised(mut self, broker_permission: u32) -> Self {
        if broker_permission & (perm::READ | perm::WRITE) != perm::READ | perm::WRITE {
            self.perm = broker_permission;
        }
        self
    }
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

impl Document for TopicTable {
    const WHAT: &'static str = "topics";

    fn encode(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn data_version(&mut self) -> Option<&mut DataVersion> {
        Some(&mut self.data_version)
    }
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
pub struct Topics {
    table: JsonTable<TopicTable>,
    /// Bumped after every change, so that whoever announces the table (registration with
    /// name servers) learns of a change at once.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Topics {
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
    ) -> Result<Self, metadata::LoadError> {
        let table = JsonTable::<TopicTable>::load(path)?;
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
        table.change_later(|t| {
            for c in builtin {
                t.topic_config_table
                    .entry(c.topic_name.clone())
                    .or_insert(c);
            }
        });
        Ok(Topics {
            table,
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// A receiver that sees every later change of the table.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The table's version (changes so far and when the last one was made).
    pub fn data_version(&self) -> DataVersion {
        self.table.read(|t| t.data_version.clone())
    }

    /// Changes the table (persisted at once) and tells the watchers.
    fn change<R>(&self, f: impl FnOnce(&mut TopicTable) -> R) -> R {
        let out = self.table.change(f);
        self.changes.send_modify(|n| *n += 1);
        out
    }

    /// Advances the table's data version without changing a topic, so that name servers
    /// take the next registration (e.g. after the broker's permission changed).
    pub fn next_version(&self) {
        self.change(|_| ());
    }

    /// A topic's configuration.
    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.table
            .read(|t| t.topic_config_table.get(topic).cloned())
    }

    /// Whether a topic exists.
    pub fn contains(&self, topic: &str) -> bool {
        self.table
            .read(|t| t.topic_config_table.contains_key(topic))
    }

    /// Every topic.
    pub fn all(&self) -> Vec<TopicConfig> {
        self.table
            .read(|t| t.topic_config_table.values().cloned().collect())
    }

    /// Takes the topics of a master's GET_ALL_TOPIC_CONFIG answer (a slave's copy): new and
    /// changed ones replace this table's; returns how many changed.
    ///
    /// # Errors
    /// The answer does not parse.
    pub fn adopt(&self, master: &str) -> Result<usize, String> {
        let theirs: TopicTable = metadata::parse(master)?;
        let changed = self
            .table
            .read(|t| metadata::changed_entries(&t.topic_config_table, &theirs.topic_config_table));
        if !changed.is_empty() {
            self.change(|t| t.topic_config_table.extend(changed.iter().cloned()));
        }
        Ok(changed.len())
    }

    /// Removes a topic and persists the table; false if it did not exist.
    pub fn remove(&self, topic: &str) -> bool {
        self.change(|t| t.topic_config_table.remove(topic).is_some())
    }

    /// Creates or replaces a topic and persists the table.
    pub fn put(&self, config: TopicConfig) {
        self.change(|t| {
            t.topic_config_table
                .insert(config.topic_name.clone(), config);
        });
    }

    /// The topic, auto-created from `default_topic` (normally `TBW102`) when it does not
    /// exist, as RocketMQ's `TopicConfigManager.createTopicInSendMessageMethod`. `None`
    /// when it does not exist and cannot be created.
    pub fn get_or_auto_create(
        &self,
        topic: &str,
        default_topic: &str,
        client_queue_nums: u32,
    ) -> Option<TopicConfig> {
        if let Some(c) = self.get(topic) {
            return Some(c);
        }
        let template = self.get(default_topic)?;
        if template.perm & perm::INHERIT == 0 {
            return None;
        }
        let queues = client_queue_nums.min(template.write_queue_nums).max(1);
        let mut created = TopicConfig::new(topic, queues, template.perm & !perm::INHERIT);
        created
            .topic_filter_type
            .clone_from(&template.topic_filter_type);
        let created = self.create(created);
        tracing::info!(topic, queues, from = default_topic, "topic auto-created");
        Some(created)
    }

    /// The retry topic of a group, created (1 read-write queue) if missing.
    pub fn ensure_retry_topic(&self, group: &str) -> TopicConfig {
        self.ensure_topic(&format!("{RETRY_GROUP_TOPIC_PREFIX}{group}"), 1)
    }

    /// A broker-made topic (`%DLQ%group`), created with `queues` read-write queues if
    /// missing.
    pub fn ensure_topic(&self, name: &str, queues: u32) -> TopicConfig {
        match self.get(name) {
            Some(c) => c,
            None => self.create(TopicConfig::new(name, queues, rw())),
        }
    }

    /// Adds `config` unless its topic appeared meanwhile; the topic as it now is.
    fn create(&self, config: TopicConfig) -> TopicConfig {
        self.change(|t| {
            t.topic_config_table
                .entry(config.topic_name.clone())
                .or_insert(config)
                .clone()
        })
    }

    /// The table as JSON (GET_ALL_TOPIC_CONFIG body and topics.json).
    pub fn to_json(&self) -> String {
        self.table.text()
    }

    /// Writes topics.json if it has unsaved changes.
    pub fn persist(&self) {
        if let Err(e) = self.table.persist() {
            tracing::error!(error = %e, "could not save topics");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_creation_follows_the_template() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("topics.json");
        let m = Topics::load(path.clone(), "C", "b", true, 8).expect("load");
        let t = m
            .get_or_auto_create("T1", AUTO_CREATE_TOPIC, 4)
            .expect("created");
        assert_eq!((t.read_queue_nums, t.perm), (4, 6));
        let t = m
            .get_or_auto_create("T2", AUTO_CREATE_TOPIC, 64)
            .expect("created");
        assert_eq!(t.write_queue_nums, 8, "capped by TBW102");
        assert!(m.get_or_auto_create("T3", "NOPE", 4).is_none());
        let again = Topics::load(path, "C", "b", false, 8).expect("reload");
        assert_eq!(again.get("T1").map(|t| t.write_queue_nums), Some(4));
        assert!(
            again.get(AUTO_CREATE_TOPIC).is_some(),
            "persisted copy kept"
        );
    }
}
