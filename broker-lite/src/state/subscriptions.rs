//! Subscription groups (`config/subscriptionGroup.json`): per consumer group
//! the retry settings a send-back follows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::state::metadata::{self, DataVersion, Document, JsonTable};

/// One group's settings, in RocketMQ's JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    /// The consumer group.
    pub group_name: String,
    /// Consumption allowed.
    #[serde(default = "yes")]
    pub consume_enable: bool,
    /// A new group may start from the queue's minimum.
    #[serde(default = "yes")]
    pub consume_from_min_enable: bool,
    /// Broadcast consumers allowed.
    #[serde(default = "yes")]
    pub consume_broadcast_enable: bool,
    /// Queues of the group's retry topic; 0 drops send-backs.
    #[serde(default = "one")]
    pub retry_queue_nums: u32,
    /// Deliveries before a message goes to the dead-letter queue.
    #[serde(default = "sixteen")]
    pub retry_max_times: i32,
    /// Broker to read from.
    #[serde(default)]
    pub broker_id: u64,
    /// Broker to read from when consuming slowly.
    #[serde(default = "one_u64")]
    pub which_broker_when_consume_slowly: u64,
    /// Tell consumers when the group's membership changes.
    #[serde(default = "yes")]
    pub notify_consumer_ids_changed_enable: bool,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn one_u64() -> u64 {
    1
}
fn sixteen() -> i32 {
    16
}

impl SubscriptionGroupConfig {
    /// RocketMQ's defaults for `group`.
    pub fn new(group: &str) -> Self {
        SubscriptionGroupConfig {
            group_name: group.to_owned(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupTable {
    #[serde(default)]
    subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    #[serde(default)]
    data_version: DataVersion,
}

impl Document for GroupTable {
    const WHAT: &'static str = "subscription groups";

    fn encode(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn data_version(&mut self) -> Option<&mut DataVersion> {
        Some(&mut self.data_version)
    }
}

/// The broker's subscription groups.
#[derive(Debug)]
pub struct SubscriptionGroups {
    table: JsonTable<GroupTable>,
}

impl SubscriptionGroups {
    /// Loads the file (or its backup).
    ///
    /// # Errors
    /// A corrupt file with no usable backup.
    pub fn load(path: PathBuf) -> Result<Self, metadata::LoadError> {
        Ok(SubscriptionGroups {
            table: JsonTable::load(path)?,
        })
    }

    /// A group's settings, created with the defaults when `auto_create`
    /// (`autoCreateSubscriptionGroup`); `None` when the group is unknown and it is off.
    pub fn find_or_create(
        &self,
        group: &str,
        auto_create: bool,
    ) -> Option<SubscriptionGroupConfig> {
        if let Some(c) = self
            .table
            .read(|t| t.subscription_group_table.get(group).cloned())
        {
            return Some(c);
        }
        if !auto_create {
            return None;
        }
        let created = self.table.change(|t| {
            t.subscription_group_table
                .entry(group.to_owned())
                .or_insert_with(|| SubscriptionGroupConfig::new(group))
                .clone()
        });
        tracing::info!(group, "subscription group created");
        Some(created)
    }

    /// Takes the groups of a master's GET_ALL_SUBSCRIPTIONGROUP_CONFIG answer (a slave's
    /// copy); returns how many changed.
    ///
    /// # Errors
    /// The answer does not parse.
    pub fn adopt(&self, master: &str) -> Result<usize, String> {
        let theirs: GroupTable = metadata::parse(master)?;
        let changed = self.table.read(|t| {
            metadata::changed_entries(
                &t.subscription_group_table,
                &theirs.subscription_group_table,
            )
        });
        if !changed.is_empty() {
            self.table
                .change(|t| t.subscription_group_table.extend(changed.iter().cloned()));
        }
        Ok(changed.len())
    }

    /// Creates or replaces a group (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).
    pub fn put(&self, config: SubscriptionGroupConfig) {
        self.table.change(|t| {
            t.subscription_group_table
                .insert(config.group_name.clone(), config);
        });
    }

    /// Deletes a group (DELETE_SUBSCRIPTIONGROUP); whether it existed.
    pub fn remove(&self, group: &str) -> bool {
        self.table
            .change(|t| t.subscription_group_table.remove(group).is_some())
    }

    /// The table as JSON (GET_ALL_SUBSCRIPTIONGROUP_CONFIG body and the file).
    pub fn to_json(&self) -> String {
        self.table.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_created_with_defaults_and_survive_a_reload() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("subscriptionGroup.json");
        let m = SubscriptionGroups::load(path.clone()).expect("load");
        let g = m.find_or_create("cg", true).expect("created");
        assert_eq!((g.retry_queue_nums, g.retry_max_times), (1, 16));
        let mut custom = SubscriptionGroupConfig::new("short");
        custom.retry_max_times = 2;
        m.put(custom);
        let again = SubscriptionGroups::load(path).expect("reload");
        assert!(again.find_or_create("cg", false).is_some());
        assert_eq!(
            again
                .find_or_create("short", false)
                .map(|g| g.retry_max_times),
            Some(2)
        );
        assert!(
            again.find_or_create("new", false).is_none(),
            "auto-creation off"
        );
    }
}
