//! The broker's state: the store, the metadata tables, connected clients, held pulls,
//! delayed delivery, transactions and locks; opening and closing them together. What
//! each request does with them is in `requests`.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use mqstore::MessageStore;

use crate::acl::Acl;
use crate::clients::ConnectedClients;
use crate::config::{BrokerConfig, LiveSettings};
use crate::delivery::half_messages::{Transactions, CHECK_GROUP, OP_TOPIC};
use crate::delivery::long_poll::PullWaiters;
use crate::delivery::queue_locks::QueueLocks;
use crate::delivery::scheduled::ScheduledDelivery;
use crate::ha::Replication;
use crate::state::consumer_offsets::ConsumerOffsets;
use crate::state::metrics::BrokerMetrics;
use crate::state::progress::ProgressHistory;
use crate::state::subscriptions::SubscriptionGroups;
use crate::state::topics::Topics;

/// Counters an operator (and the tests) can read.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Oneway sends that could not be stored (each is also logged).
    pub oneway_send_failures: AtomicU64,
    /// Sends answered SYSTEM_BUSY.
    pub busy_rejections: AtomicU64,
    /// Sends waiting for or inside the store right now.
    pub sends_in_flight: AtomicUsize,
    /// Messages stored.
    pub messages_stored: AtomicU64,
    /// Requests refused by the ACL.
    pub acl_refusals: AtomicU64,
}

/// The broker: the store plus topics, offsets and clients.
#[derive(Debug)]
pub struct Broker {
    /// Configuration.
    pub config: BrokerConfig,
    /// The message store.
    pub store: Arc<MessageStore>,
    /// Topic configurations.
    pub topics: Topics,
    /// Consumer offsets.
    pub offsets: ConsumerOffsets,
    /// Connected producers and consumers.
    pub clients: ConnectedClients,
    /// Held pulls.
    pub waiters: Arc<PullWaiters>,
    /// Counters.
    pub stats: BrokerStats,
    /// Subscription groups (retry settings).
    pub subscriptions: SubscriptionGroups,
    /// Delayed delivery.
    pub schedule: ScheduledDelivery,
    /// Resolved transactions.
    pub transactions: Transactions,
    /// Orderly consumers' queue locks.
    pub locks: QueueLocks,
    /// Replication: acks from slaves (master) or the link to the master (slave).
    pub ha: Arc<Replication>,
    /// Accounts and permissions, when `aclEnable=true`.
    pub acl: Option<Arc<Acl>>,
    /// Counters and histograms for the metrics exporter.
    pub metrics: BrokerMetrics,
    /// When the broker opened (ms since the epoch).
    pub started_at_ms: i64,
    /// Samples of queue and consumer progress (rates, lag over time).
    pub progress: ProgressHistory,
    /// The settings UPDATE_BROKER_CONFIG may change while running (read these, not
    /// `config`'s copies).
    pub live: LiveSettings,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store did not open.
    #[error("store: {0}")]
    Store(#[from] mqstore::Error),
    /// A metadata file is corrupt.
    #[error("metadata: {0}")]
    Metadata(#[from] crate::state::metadata::LoadError),
    /// `aclEnable=true` and the ACL file is missing or malformed.
    #[error("ACL: {0}")]
    Acl(#[from] crate::acl::AclError),
}

impl Broker {
    /// Opens the store and the metadata files.
    ///
    /// # Errors
    /// The store's error, or a corrupt metadata file without a usable backup.
    pub fn open(mut config: BrokerConfig) -> Result<Arc<Broker>, StartError> {
        config.sync_store_host();
        // Before the store opens: a bad ACL file stops the start with nothing touched.
        let acl = if config.acl_enable {
            Some(Arc::new(Acl::load(&config.acl_path())?))
        } else {
            None
        };
        let waiters = Arc::new(PullWaiters::default());
        let store = MessageStore::builder(config.store.store_path_root_dir.clone())
            .config(config.store.clone())
            .arrival_listener(Arc::clone(&waiters) as Arc<dyn mqstore::ArrivalListener>)
            .open()?;
        let dir = config.config_dir();
        let topics = Topics::load(
            dir.join("topics.json"),
            &config.broker_cluster_name,
            &config.broker_name,
            config.auto_create_topic_enable,
            config.default_topic_queue_nums,
        )?;
        let offsets = ConsumerOffsets::load(dir.join("consumerOffset.json"))?;
        let subscriptions = SubscriptionGroups::load(dir.join("subscriptionGroup.json"))?;
        topics.persist();
        let store = Arc::new(store);
        let op_from = offsets
            .query(CHECK_GROUP, OP_TOPIC, 0)
            .and_then(|o| u64::try_from(o).ok())
            .unwrap_or(0);
        let transactions = Transactions::load(&store, op_from);
        // A slave copies the master's deliveries instead of making its own.
        let schedule = ScheduledDelivery::start(
            Arc::clone(&store),
            store.config().delay_levels()?,
            dir.join("delayOffset.json"),
            config.is_master(),
        )?;
        let ha = Arc::new(Replication::new(&config));
        let metrics = BrokerMetrics::new(config.metrics_prom);
        let live = LiveSettings::new(&config);
        Ok(Arc::new(Broker {
            config,
            store,
            topics,
            offsets,
            clients: ConnectedClients::default(),
            waiters,
            stats: BrokerStats::default(),
            subscriptions,
            schedule,
            transactions,
            locks: QueueLocks::default(),
            ha,
            acl,
            metrics,
            started_at_ms: crate::state::metadata::now_millis(),
            progress: ProgressHistory::default(),
            live,
        }))
    }

    /// Persists offsets and topics, then shuts the store down cleanly (the next start is
    /// a normal recovery).
    ///
    /// # Errors
    /// The store's shutdown error.
    pub fn close(&self) -> Result<(), mqstore::Error> {
        self.schedule.stop();
        self.persist_offsets();
        self.topics.persist();
        let out = self.store.close();
        tracing::info!(ok = out.is_ok(), "store closed");
        out
    }

    /// Percent of the store's filesystem in use (RocketMQ's used / (used + available));
    /// `None` when it cannot be measured.
    pub fn disk_used_percent(&self) -> Option<u32> {
        mqstore::DiskUsage::used_percent(
            &mqstore::FsDiskUsage,
            &self.config.store.store_path_root_dir,
        )
    }

    /// Writes consumer offsets (periodically and at shutdown).
    pub fn persist_offsets(&self) {
        self.schedule.persist();
        if let Err(e) = self.offsets.persist() {
            tracing::error!(error = %e, "could not persist consumer offsets; will retry");
        }
    }

    /// Time since a send was received, for the send-queue fast failure.
    pub fn send_waited_too_long(&self, received: Instant) -> bool {
        received.elapsed() > self.config.wait_time_in_send_queue
    }

    /// Applies the broker's role to a put: wakes the replication stream and, on a
    /// SYNC_MASTER for a send that waits for the store (`WAIT` not false), waits for a
    /// slave to hold the record; the status then says whether one did (RocketMQ's
    /// `handleHA`). The message is stored either way.
    pub(crate) fn replicated(
        &self,
        result: mqstore::Result<mqstore::PutResult>,
        waits: bool,
    ) -> mqstore::Result<mqstore::PutResult> {
        let mut result = result?;
        let Some(appended) = &result.appended else {
            return Ok(result);
        };
        self.ha.data_arrived();
        let syncs = self.config.store.broker_role == mqstore::BrokerRole::SyncMaster;
        if syncs && waits && result.status == mqstore::PutStatus::PutOk {
            result.status = self.ha.wait_for_slave(appended.end_offset().0);
        }
        Ok(result)
    }

    /// Counts stored messages.
    pub(crate) fn note_stored(&self, n: u64) {
        self.ha.data_arrived();
        self.stats
            .messages_stored
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}
