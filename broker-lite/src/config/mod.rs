//! `broker.conf`: RocketMQ's broker keys for the broker, everything else handed to the
//! store's [`StoreConfig`] under the same names.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use mqstore::{FlushMode, StoreConfig};

use crate::remoting::codes::perm;
use crate::remoting::tls::TlsMode;

/// Broker settings (RocketMQ `BrokerConfig` / `NettyServerConfig` names).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// `brokerClusterName`. Default `DefaultCluster`.
    pub broker_cluster_name: String,
    /// `brokerName`. Default `broker-a`.
    pub broker_name: String,
    /// `brokerId` (0 = master). Default 0.
    pub broker_id: u64,
    /// `brokerIP1`: the address advertised to clients (and written into message ids).
    /// Default 127.0.0.1.
    pub broker_ip1: IpAddr,
    /// `listenPort`. Default 10911. 0 picks a free port.
    pub listen_port: u16,
    /// `listenAddr` (ours): the interface the sockets bind. Default 127.0.0.1.
    pub listen_addr: IpAddr,
    /// `namesrvListenPort` (ours): the built-in route service's port; default 9876 when
    /// `namesrvAddr` is empty and off when it names name servers (they serve the routes
    /// then); `-1` turns it off.
    pub namesrv_listen_port: Option<u16>,
    /// `namesrvAddr`: external name servers (`host:port;host:port`) to register with.
    pub namesrv_addr: Vec<String>,
    /// `autoCreateTopicEnable`. Default true.
    pub auto_create_topic_enable: bool,
    /// `defaultTopicQueueNums`: queues of `TBW102`. Default 8.
    pub default_topic_queue_nums: u32,
    /// `longPollingEnable`. Default true.
    pub long_polling_enable: bool,
    /// `shortPollingTimeMills`. Default 1000 ms.
    pub short_polling_time: Duration,
    /// `flushConsumerOffsetInterval`. Default 5000 ms.
    pub flush_consumer_offset_interval: Duration,
    /// `channelExpiredTimeout` (ours; RocketMQ fixes 120 s): a client not heard from for this
    /// long is dropped.
    pub channel_expired_timeout: Duration,
    /// `maxConnections` (ours). Default 10 000.
    pub max_connections: usize,
    /// `maxOutboundFrames` (ours): responses queued for one connection before it is closed
    /// as a stalled reader. Default 1024.
    pub max_outbound_frames: usize,
    /// `sendThreadPoolQueueCapacity`: sends waiting for the store before SYSTEM_BUSY.
    /// Default 10 000.
    pub send_thread_pool_queue_capacity: usize,
    /// `waitTimeMillsInSendQueue`: a send that waited longer is answered SYSTEM_BUSY.
    /// Default 200 ms.
    pub wait_time_in_send_queue: Duration,
    /// `traceOn`: the `TRACE_ON` value in send responses. Default true.
    pub trace_on: bool,
    /// `regionId`: the `MSG_REGION` in send responses. Default `DefaultRegion`.
    pub region_id: String,
    /// `registerNameServerPeriod`. Default 30 000 ms.
    pub register_name_server_period: Duration,
    /// `registerBrokerTimeoutMills`: how long one name server may take to answer a
    /// registration. Default 6000 ms.
    pub register_broker_timeout: Duration,
    /// `autoCreateSubscriptionGroup`: a send-back or heartbeat of an unknown consumer
    /// group creates its subscription group.
    pub auto_create_subscription_group: bool,
    /// `transactionTimeOut`: a half message younger than this is not checked back.
    pub transaction_timeout: Duration,
    /// `transactionCheckMax`: check-backs before a half message is discarded.
    pub transaction_check_max: u32,
    /// `transactionCheckInterval`: how often half messages are checked.
    pub transaction_check_interval: Duration,
    /// `rejectTransactionMessage`: refuse half messages (NO_PERMISSION).
    pub reject_transaction_message: bool,
    /// `rebalanceLockMaxLiveTime` (RocketMQ's JVM property
    /// `rocketmq.broker.rebalance.lockMaxLiveTime`): a queue lock not renewed for this
    /// long is free again.
    pub rebalance_lock_max_live_time: Duration,
    /// `haListenPort`: where a master serves its slaves. Default `listenPort + 1`.
    pub ha_listen_port: Option<u16>,
    /// `haMasterAddress`: the master's HA address (`host:port`) a slave follows. Default:
    /// the `haServerAddr` a name server answers the slave's registration with.
    pub ha_master_address: Option<String>,
    /// `haSendHeartbeatInterval`. Default 5000 ms.
    pub ha_send_heartbeat_interval: Duration,
    /// `haHousekeepingInterval`: an HA connection silent this long is closed. Default 20 000 ms.
    pub ha_housekeeping_interval: Duration,
    /// `haTransferBatchSize`: the largest frame a master sends. Default 32 768.
    pub ha_transfer_batch_size: usize,
    /// `haSlaveFallbehindMax`: SYNC_MASTER answers SLAVE_NOT_AVAILABLE when the best
    /// slave is further behind. Default 268 435 456.
    pub ha_slave_fallbehind_max: u64,
    /// `slaveTimeout`: how long a SYNC_MASTER send waits for a slave. Default 3000 ms.
    pub slave_timeout: Duration,
    /// `slaveReadEnable`: a slave serves pulls, and a master whose consumer falls far
    /// behind sends it to the slave. Default false.
    pub slave_read_enable: bool,
    /// `brokerPermission`: what clients may do on this broker (RocketMQ's perm bits: 2 write,
    /// 4 read; default 6). Without both, every topic is advertised with this perm and pulls
    /// are refused; changeable while running (UPDATE_BROKER_CONFIG) to drain a broker.
    pub broker_permission: u32,
    /// The `-c` file the configuration came from, where UPDATE_BROKER_CONFIG writes the
    /// keys it changes (not a RocketMQ key).
    pub config_file: Option<PathBuf>,
    /// `useServerSideResetOffset` (RocketMQ 5): INVOKE_BROKER_TO_RESET_OFFSET commits the
    /// new offsets itself (also for a group that is offline), instead of only asking the
    /// group's online consumers to reset (RocketMQ 4.9's way, the default).
    pub use_server_side_reset_offset: bool,
    /// `aclEnable`: every request must come from a white-listed address or be signed by an
    /// account of the ACL file that holds the permission it needs. Default false.
    pub acl_enable: bool,
    /// `aclFile` (ours; RocketMQ reads `conf/plain_acl.yml`): the accounts. Default:
    /// `plain_acl.yml` beside the broker.conf given with `-c`, else in `<storePathRootDir>/config`.
    pub acl_file: Option<PathBuf>,
    /// `tls.server.mode`: `disabled` (default here; RocketMQ's default `permissive` needs a
    /// certificate), `permissive` or `enforcing`, on the broker and route-service ports.
    pub tls_server_mode: TlsMode,
    /// `tls.server.certPath`: the PEM certificate chain.
    pub tls_server_cert_path: Option<PathBuf>,
    /// `tls.server.keyPath`: the PEM private key (unencrypted; `tls.server.keyPassword` is
    /// refused).
    pub tls_server_key_path: Option<PathBuf>,
    /// `metricsExporterType`: `PROM` serves Prometheus metrics; `DISABLE` (default) none.
    pub metrics_prom: bool,
    /// `metricsPromExporterHost`: the metrics port's interface. Default 127.0.0.1.
    pub metrics_prom_exporter_host: IpAddr,
    /// `metricsPromExporterPort`. Default 5557 (0: any free port).
    pub metrics_prom_exporter_port: u16,
    /// `consolePort` (ours): the web console's port; unset or negative (the default) serves
    /// no console, 0 any free port.
    pub console_port: Option<u16>,
    /// `consoleHost` (ours): the console's interface. Default 127.0.0.1.
    pub console_host: IpAddr,
    /// The store's settings (`storePathRootDir`, `flushDiskType`, `brokerRole`, …).
    pub store: StoreConfig,
}

/// A bad `broker.conf`.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// The key (or line) at fault.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let mut store = StoreConfig::new(PathBuf::from("store"));
        store.flush_disk_type = FlushMode::Async;
        BrokerConfig {
            broker_cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            broker_ip1: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen_port: 10911,
            listen_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            namesrv_listen_port: Some(9876),
            namesrv_addr: Vec::new(),
            auto_create_topic_enable: true,
            default_topic_queue_nums: 8,
            long_polling_enable: true,
            short_polling_time: Duration::from_secs(1),
            flush_consumer_offset_interval: Duration::from_secs(5),
            channel_expired_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            max_outbound_frames: 1024,
            send_thread_pool_queue_capacity: 10_000,
            wait_time_in_send_queue: Duration::from_millis(200),
            trace_on: true,
            region_id: "DefaultRegion".into(),
            register_name_server_period: Duration::from_secs(30),
            register_broker_timeout: Duration::from_secs(6),
            auto_create_subscription_group: true,
            transaction_timeout: Duration::from_secs(6),
            transaction_check_max: 15,
            transaction_check_interval: Duration::from_secs(60),
            reject_transaction_message: false,
            rebalance_lock_max_live_time: Duration::from_secs(60),
            ha_listen_port: None,
            ha_master_address: None,
            ha_send_heartbeat_interval: Duration::from_secs(5),
            ha_housekeeping_interval: Duration::from_secs(20),
            ha_transfer_batch_size: 32 * 1024,
            ha_slave_fallbehind_max: 256 * 1024 * 1024,
            slave_timeout: Duration::from_secs(3),
            slave_read_enable: false,
            acl_enable: false,
            use_server_side_reset_offset: false,
            broker_permission: 6,
            config_file: None,
            acl_file: None,
            tls_server_mode: TlsMode::Disabled,
            tls_server_cert_path: None,
            tls_server_key_path: None,
            metrics_prom: false,
            metrics_prom_exporter_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            metrics_prom_exporter_port: 5557,
            console_port: None,
            console_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            store,
        }
    }
}

fn parse<T: FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError {
        key: key.into(),
        reason: format!("`{value}` is not a valid value"),
    })
}

fn millis(key: &str, value: &str) -> Result<Duration, ConfigError> {
    parse::<u64>(key, value).map(Duration::from_millis)
}

/// The `key=value` (or `key: value`) pairs of properties text, in order; blank lines and
/// `#`/`!` comments skipped, as Java's `Properties` reads them (without line continuations).
///
/// # Errors
/// A [`ConfigError`] for a line that is not a pair.
pub fn conf_pairs(text: &str) -> Result<Vec<(&str, &str)>, ConfigError> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            return Err(ConfigError {
                key: line.into(),
                reason: "expected `key=value`".into(),
            });
        };
        pairs.push((line[..split].trim(), line[split + 1..].trim()));
    }
    Ok(pairs)
}

/// `text` (a broker.conf) with each of `pairs` set: the line of a key already there is
/// replaced in place, a new key is appended; comments and other lines stay as they were.
pub fn rewrite_conf(text: &str, pairs: &[(String, String)]) -> String {
    let mut written = vec![false; pairs.len()];
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let key = conf_pairs(line)
            .ok()
            .and_then(|p| p.first().map(|(k, _)| (*k).to_owned()));
        match key.and_then(|k| pairs.iter().position(|(pk, _)| *pk == k)) {
            Some(i) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "{}={}", pairs[i].0, pairs[i].1);
                written[i] = true;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (i, (k, v)) in pairs.iter().enumerate() {
        if !written[i] {
            let _ = writeln!(out, "{k}={v}");
        }
    }
    out
}

/// The keys UPDATE_BROKER_CONFIG may change while the broker runs. Each is read from
/// [`LiveSettings`] at every use, so a change holds from the next request on; every other
/// key is fixed from the start (its value is woven into files, threads or listeners).
pub const LIVE_KEYS: &[&str] = &[
    "brokerPermission",
    "slaveReadEnable",
    "rejectTransactionMessage",
    "autoCreateSubscriptionGroup",
];

/// The current values of the [`LIVE_KEYS`].
#[derive(Debug)]
pub struct LiveSettings {
    broker_permission: AtomicU32,
    slave_read_enable: AtomicBool,
    reject_transaction_message: AtomicBool,
    auto_create_subscription_group: AtomicBool,
    /// Serialises updates (each reads, changes and writes back all values); counts them.
    updating: Mutex<u64>,
}

impl LiveSettings {
    /// The values `config` starts with.
    pub fn new(config: &BrokerConfig) -> Self {
        let live = LiveSettings {
            broker_permission: AtomicU32::new(0),
            slave_read_enable: AtomicBool::new(false),
            reject_transaction_message: AtomicBool::new(false),
            auto_create_subscription_group: AtomicBool::new(false),
            updating: Mutex::new(0),
        };
        live.take(config);
        live
    }

    fn take(&self, c: &BrokerConfig) {
        self.broker_permission
            .store(c.broker_permission, Ordering::Relaxed);
        self.slave_read_enable
            .store(c.slave_read_enable, Ordering::Relaxed);
        self.reject_transaction_message
            .store(c.reject_transaction_message, Ordering::Relaxed);
        self.auto_create_subscription_group
            .store(c.auto_create_subscription_group, Ordering::Relaxed);
    }

    /// `config` with the live values in place of its own.
    pub fn overlay(&self, config: &BrokerConfig) -> BrokerConfig {
        let mut c = config.clone();
        c.broker_permission = self.broker_permission();
        c.slave_read_enable = self.slave_read_enable();
        c.reject_transaction_message = self.reject_transaction_message();
        c.auto_create_subscription_group = self.auto_create_subscription_group();
        c
    }

    /// Checks every pair (a live key, a value that parses) and only then applies them all
    /// to the values in force (over `config`); `apply` runs between the check and the
    /// change (e.g. writing the pairs to the config file) and can still call it off.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first pair refused, or what `apply` reported; nothing
    /// changed then.
    pub fn update(
        &self,
        config: &BrokerConfig,
        pairs: &[(String, String)],
        apply: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), ConfigError> {
        let mut updates = self.updating.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = self.overlay(config);
        for (key, value) in pairs {
            if !LIVE_KEYS.contains(&key.as_str()) {
                return Err(ConfigError {
                    key: key.clone(),
                    reason: format!(
                        "cannot be changed while the broker runs (keys that can: {})",
                        LIVE_KEYS.join(", ")
                    ),
                });
            }
            next.set(key, value)?;
        }
        apply().map_err(|reason| ConfigError {
            key: pairs.first().map(|(k, _)| k.clone()).unwrap_or_default(),
            reason,
        })?;
        self.take(&next);
        *updates += 1;
        Ok(())
    }

    /// How many updates were applied since the start.
    pub fn updates(&self) -> u64 {
        *self.updating.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `brokerPermission`.
    pub fn broker_permission(&self) -> u32 {
        self.broker_permission.load(Ordering::Relaxed)
    }

    /// Whether clients may send to this broker (`brokerPermission` has write).
    pub fn writable(&self) -> bool {
        self.broker_permission() & perm::WRITE != 0
    }

    /// Whether clients may pull from this broker (`brokerPermission` has read).
    pub fn readable(&self) -> bool {
        self.broker_permission() & perm::READ != 0
    }

    /// `slaveReadEnable`.
    pub fn slave_read_enable(&self) -> bool {
        self.slave_read_enable.load(Ordering::Relaxed)
    }

    /// `rejectTransactionMessage`.
    pub fn reject_transaction_message(&self) -> bool {
        self.reject_transaction_message.load(Ordering::Relaxed)
    }

    /// `autoCreateSubscriptionGroup`.
    pub fn auto_create_subscription_group(&self) -> bool {
        self.auto_create_subscription_group.load(Ordering::Relaxed)
    }
}

impl BrokerConfig {
    /// Applies `broker.conf` text. Returns the keys it did not know (reported, not fatal,
    /// as RocketMQ ignores them too).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first key whose value does not parse.
    pub fn apply(&mut self, text: &str) -> Result<Vec<String>, ConfigError> {
        let mut unknown = Vec::new();
        let mut route_port_given = false;
        for (key, value) in conf_pairs(text)? {
            route_port_given |= key == "namesrvListenPort";
            if !self.set(key, value)? {
                unknown.push(key.to_owned());
            }
        }
        if !route_port_given && !self.namesrv_addr.is_empty() {
            // Name servers serve the routes; the built-in service would only take their port.
            self.namesrv_listen_port = None;
        }
        self.sync_store_host();
        Ok(unknown)
    }

    /// Sets one key; `Ok(false)` if neither the broker nor the store knows it.
    ///
    /// # Errors
    /// A [`ConfigError`] if the value does not parse.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        match key {
            "brokerClusterName" => self.broker_cluster_name = value.into(),
            "brokerName" => self.broker_name = value.into(),
            "brokerId" => self.broker_id = parse(key, value)?,
            "brokerIP1" => self.broker_ip1 = parse(key, value)?,
            "listenPort" => self.listen_port = parse(key, value)?,
            "listenAddr" => self.listen_addr = parse(key, value)?,
            "namesrvListenPort" => {
                let port: i32 = parse(key, value)?;
                self.namesrv_listen_port = if port < 0 {
                    None
                } else {
                    Some(u16::try_from(port).map_err(|_| ConfigError {
                        key: key.into(),
                        reason: format!("port {port} out of range"),
                    })?)
                };
            }
            "namesrvAddr" => {
                self.namesrv_addr = value
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "autoCreateTopicEnable" => self.auto_create_topic_enable = parse(key, value)?,
            "defaultTopicQueueNums" => self.default_topic_queue_nums = parse(key, value)?,
            "longPollingEnable" => self.long_polling_enable = parse(key, value)?,
            "shortPollingTimeMills" => self.short_polling_time = millis(key, value)?,
            "flushConsumerOffsetInterval" => {
                self.flush_consumer_offset_interval = millis(key, value)?;
            }
            "channelExpiredTimeout" => self.channel_expired_timeout = millis(key, value)?,
            "maxConnections" => self.max_connections = parse(key, value)?,
            "maxOutboundFrames" => self.max_outbound_frames = parse(key, value)?,
            "sendThreadPoolQueueCapacity" => {
                self.send_thread_pool_queue_capacity = parse(key, value)?;
            }
            "waitTimeMillsInSendQueue" => self.wait_time_in_send_queue = millis(key, value)?,
            "traceOn" => self.trace_on = parse(key, value)?,
            "regionId" => self.region_id = value.into(),
            "registerNameServerPeriod" => self.register_name_server_period = millis(key, value)?,
            "registerBrokerTimeoutMills" => self.register_broker_timeout = millis(key, value)?,
            "autoCreateSubscriptionGroup" => {
                self.auto_create_subscription_group = parse(key, value)?;
            }
            "transactionTimeOut" => self.transaction_timeout = millis(key, value)?,
            "transactionCheckMax" => self.transaction_check_max = parse(key, value)?,
            "transactionCheckInterval" => self.transaction_check_interval = millis(key, value)?,
            "rejectTransactionMessage" => self.reject_transaction_message = parse(key, value)?,
            "rebalanceLockMaxLiveTime" => self.rebalance_lock_max_live_time = millis(key, value)?,
            "haListenPort" => self.ha_listen_port = Some(parse(key, value)?),
            "haMasterAddress" => {
                self.ha_master_address = Some(value.to_owned()).filter(|v| !v.is_empty());
            }
            "haSendHeartbeatInterval" => self.ha_send_heartbeat_interval = millis(key, value)?,
            "haHousekeepingInterval" => self.ha_housekeeping_interval = millis(key, value)?,
            "haTransferBatchSize" => self.ha_transfer_batch_size = parse(key, value)?,
            "haSlaveFallbehindMax" => self.ha_slave_fallbehind_max = parse(key, value)?,
            "slaveTimeout" => self.slave_timeout = millis(key, value)?,
            "slaveReadEnable" => self.slave_read_enable = parse(key, value)?,
            "aclEnable" => self.acl_enable = parse(key, value)?,
            "useServerSideResetOffset" => self.use_server_side_reset_offset = parse(key, value)?,
            "brokerPermission" => {
                let bits: u32 = parse(key, value)?;
                if bits & !(perm::READ | perm::WRITE | perm::INHERIT) != 0 {
                    return Err(ConfigError {
                        key: key.into(),
                        reason: format!("`{value}` is not a RocketMQ perm (bits 1, 2, 4)"),
                    });
                }
                self.broker_permission = bits;
            }
            "metricsExporterType" => {
                self.metrics_prom = match value {
                    "PROM" => true,
                    "DISABLE" | "" => false,
                    other => {
                        return Err(ConfigError {
                            key: key.into(),
                            reason: format!("`{other}`: broker-lite exports PROM or DISABLE"),
                        })
                    }
                };
            }
            "metricsPromExporterHost" => self.metrics_prom_exporter_host = parse(key, value)?,
            "metricsPromExporterPort" => self.metrics_prom_exporter_port = parse(key, value)?,
            "consolePort" => {
                // Negative (how GET_BROKER_CONFIG renders it) or empty: no console.
                let port: i32 = if value.is_empty() {
                    -1
                } else {
                    parse(key, value)?
                };
                self.console_port = if port < 0 {
                    None
                } else {
                    Some(u16::try_from(port).map_err(|_| ConfigError {
                        key: key.into(),
                        reason: format!("`{value}` is not a port"),
                    })?)
                };
            }
            "consoleHost" => self.console_host = parse(key, value)?,
            "tls.server.mode" => {
                self.tls_server_mode = value.parse().map_err(|reason| ConfigError {
                    key: key.into(),
                    reason,
                })?;
            }
            "tls.server.certPath" => {
                self.tls_server_cert_path = (!value.is_empty()).then(|| PathBuf::from(value));
            }
            "tls.server.keyPath" => {
                self.tls_server_key_path = (!value.is_empty()).then(|| PathBuf::from(value));
            }
            "tls.server.keyPassword" if !value.is_empty() => {
                return Err(ConfigError {
                    key: key.into(),
                    reason: "encrypted private keys are not supported: give an unencrypted PEM key"
                        .into(),
                });
            }
            "tls.server.keyPassword" => {}
            "aclFile" => self.acl_file = (!value.is_empty()).then(|| PathBuf::from(value)),
            _ => match self.store.set(key, value) {
                Ok(()) => {}
                Err(mqstore::Error::InvalidConfig { reason, .. })
                    if reason.starts_with("unknown") =>
                {
                    return Ok(false)
                }
                Err(e) => {
                    return Err(ConfigError {
                        key: key.into(),
                        reason: e.to_string(),
                    })
                }
            },
        }
        Ok(true)
    }

    /// Every key [`set`](Self::set) accepts (the store's included), with its value
    /// rendered so that `set` reads it back: GET_BROKER_CONFIG's body, sorted by key.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| d.as_millis().to_string();
        let opt = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let mut out = vec![
            ("brokerClusterName", self.broker_cluster_name.clone()),
            ("brokerName", self.broker_name.clone()),
            ("brokerId", self.broker_id.to_string()),
            ("brokerIP1", self.broker_ip1.to_string()),
            ("listenPort", self.listen_port.to_string()),
            ("listenAddr", self.listen_addr.to_string()),
            (
                "namesrvListenPort",
                self.namesrv_listen_port
                    .map_or_else(|| "-1".to_owned(), |p| p.to_string()),
            ),
            ("namesrvAddr", self.namesrv_addr.join(";")),
            (
                "autoCreateTopicEnable",
                self.auto_create_topic_enable.to_string(),
            ),
            (
                "defaultTopicQueueNums",
                self.default_topic_queue_nums.to_string(),
            ),
            ("longPollingEnable", self.long_polling_enable.to_string()),
            ("shortPollingTimeMills", ms(self.short_polling_time)),
            (
                "flushConsumerOffsetInterval",
                ms(self.flush_consumer_offset_interval),
            ),
            ("channelExpiredTimeout", ms(self.channel_expired_timeout)),
            ("maxConnections", self.max_connections.to_string()),
            ("maxOutboundFrames", self.max_outbound_frames.to_string()),
            (
                "sendThreadPoolQueueCapacity",
                self.send_thread_pool_queue_capacity.to_string(),
            ),
            ("waitTimeMillsInSendQueue", ms(self.wait_time_in_send_queue)),
            ("traceOn", self.trace_on.to_string()),
            ("regionId", self.region_id.clone()),
            (
                "registerNameServerPeriod",
                ms(self.register_name_server_period),
            ),
            (
                "registerBrokerTimeoutMills",
                ms(self.register_broker_timeout),
            ),
            (
                "autoCreateSubscriptionGroup",
                self.auto_create_subscription_group.to_string(),
            ),
            ("transactionTimeOut", ms(self.transaction_timeout)),
            (
                "transactionCheckMax",
                self.transaction_check_max.to_string(),
            ),
            (
                "transactionCheckInterval",
                ms(self.transaction_check_interval),
            ),
            (
                "rejectTransactionMessage",
                self.reject_transaction_message.to_string(),
            ),
            (
                "rebalanceLockMaxLiveTime",
                ms(self.rebalance_lock_max_live_time),
            ),
            ("haListenPort", self.ha_port().to_string()),
            (
                "haMasterAddress",
                self.ha_master_address.clone().unwrap_or_default(),
            ),
            (
                "haSendHeartbeatInterval",
                ms(self.ha_send_heartbeat_interval),
            ),
            ("haHousekeepingInterval", ms(self.ha_housekeeping_interval)),
            (
                "haTransferBatchSize",
                self.ha_transfer_batch_size.to_string(),
            ),
            (
                "haSlaveFallbehindMax",
                self.ha_slave_fallbehind_max.to_string(),
            ),
            ("slaveTimeout", ms(self.slave_timeout)),
            ("slaveReadEnable", self.slave_read_enable.to_string()),
            ("aclEnable", self.acl_enable.to_string()),
            ("brokerPermission", self.broker_permission.to_string()),
            (
                "useServerSideResetOffset",
                self.use_server_side_reset_offset.to_string(),
            ),
            ("aclFile", self.acl_path().display().to_string()),
            (
                "tls.server.mode",
                match self.tls_server_mode {
                    TlsMode::Disabled => "disabled",
                    TlsMode::Permissive => "permissive",
                    TlsMode::Enforcing => "enforcing",
                }
                .to_owned(),
            ),
            ("tls.server.certPath", opt(&self.tls_server_cert_path)),
            ("tls.server.keyPath", opt(&self.tls_server_key_path)),
            (
                "metricsExporterType",
                if self.metrics_prom { "PROM" } else { "DISABLE" }.to_owned(),
            ),
            (
                "metricsPromExporterHost",
                self.metrics_prom_exporter_host.to_string(),
            ),
            (
                "metricsPromExporterPort",
                self.metrics_prom_exporter_port.to_string(),
            ),
            (
                "consolePort",
                self.console_port
                    .map_or_else(|| "-1".to_owned(), |p| p.to_string()),
            ),
            ("consoleHost", self.console_host.to_string()),
        ];
        out.extend(self.store.properties());
        out.sort_by_key(|(k, _)| *k);
        out
    }

    /// [`properties`](Self::properties) as broker.conf text, one `key=value` per line.
    pub fn to_conf_text(&self) -> String {
        let mut text = String::new();
        for (k, v) in self.properties() {
            text.push_str(k);
            text.push('=');
            text.push_str(&v);
            text.push('\n');
        }
        text
    }

    /// The defaults with the broker.conf at `file` applied, if one is given; unknown keys
    /// are logged and ignored, as RocketMQ does. The file is remembered (UPDATE_BROKER_CONFIG
    /// writes to it) and `plain_acl.yml` is looked for beside it unless `aclFile` says where.
    ///
    /// # Errors
    /// The file cannot be read, or a value in it does not parse.
    pub fn from_file(file: Option<&std::path::Path>) -> Result<BrokerConfig, String> {
        let mut config = BrokerConfig::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let unknown = config
                .apply(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for key in unknown {
                tracing::warn!(key, file = %path.display(), "unknown configuration key ignored");
            }
            config.config_file = Some(path.to_owned());
            if config.acl_file.is_none() {
                // RocketMQ keeps plain_acl.yml in conf/, beside broker.conf.
                config.acl_file = path.parent().map(|dir| dir.join("plain_acl.yml"));
            }
        }
        Ok(config)
    }

    /// Makes the store's STOREHOST the advertised `brokerIP1:listenPort`.
    pub fn sync_store_host(&mut self) {
        self.store.store_host = SocketAddr::new(self.broker_ip1, self.listen_port);
    }

    /// The address clients dial (`brokerIP1:listenPort`).
    pub fn broker_addr(&self) -> SocketAddr {
        SocketAddr::new(self.broker_ip1, self.listen_port)
    }

    /// The HA port: `haListenPort`, else `listenPort + 1` (0 when the listen port is 0).
    pub fn ha_port(&self) -> u16 {
        self.ha_listen_port.unwrap_or(if self.listen_port == 0 {
            0
        } else {
            self.listen_port.saturating_add(1)
        })
    }

    /// Whether this broker takes writes (a master) rather than copying them (a slave).
    pub fn is_master(&self) -> bool {
        self.store.broker_role != mqstore::BrokerRole::Slave
    }

    /// The ACL file: `aclFile`, else `<storePathRootDir>/config/plain_acl.yml`.
    pub fn acl_path(&self) -> PathBuf {
        self.acl_file
            .clone()
            .unwrap_or_else(|| self.config_dir().join("plain_acl.yml"))
    }

    /// Where `config/*.json` live: `<storePathRootDir>/config`.
    pub fn config_dir(&self) -> PathBuf {
        self.store.store_path_root_dir.join("config")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriting_a_conf_replaces_keys_in_place_and_appends_new_ones() {
        let text =
            "# drained for maintenance\nbrokerName=b\nbrokerPermission : 6\n\nlistenPort=1\n";
        let out = rewrite_conf(
            text,
            &[
                ("brokerPermission".into(), "4".into()),
                ("slaveReadEnable".into(), "true".into()),
            ],
        );
        assert_eq!(
            out,
            "# drained for maintenance\nbrokerName=b\nbrokerPermission=4\n\nlistenPort=1\nslaveReadEnable=true\n"
        );
        let mut c = BrokerConfig::default();
        c.apply(&out).expect("reads back");
        assert_eq!((c.broker_permission, c.slave_read_enable), (4, true));
    }

    #[test]
    fn live_updates_are_all_or_nothing() {
        let base = BrokerConfig::default();
        let live = LiveSettings::new(&base);
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let err = live
            .update(
                &base,
                &pairs(&[("slaveReadEnable", "true"), ("listenPort", "1")]),
                || Ok(()),
            )
            .expect_err("a fixed key");
        assert_eq!(err.key, "listenPort");
        assert!(!live.slave_read_enable());
        // The persisting step can call it off too.
        live.update(&base, &pairs(&[("slaveReadEnable", "true")]), || {
            Err("disk".into())
        })
        .expect_err("not persisted");
        assert!(!live.slave_read_enable());
        assert_eq!(live.updates(), 0);
        live.update(
            &base,
            &pairs(&[("slaveReadEnable", "true"), ("brokerPermission", "4")]),
            || Ok(()),
        )
        .expect("live keys");
        assert!(live.slave_read_enable() && live.readable() && !live.writable());
        assert_eq!(live.overlay(&base).broker_permission, 4);
        assert_eq!(live.updates(), 1);
    }

    #[test]
    fn broker_and_store_keys_and_errors() {
        let mut c = BrokerConfig::default();
        let unknown = c
            .apply("brokerName=b1\nlistenPort=20911\nflushDiskType=SYNC_FLUSH\nfoo=bar\n# x\n")
            .expect("ok");
        assert_eq!(unknown, vec!["foo".to_owned()]);
        assert_eq!(c.broker_name, "b1");
        assert_eq!(c.store.flush_disk_type, FlushMode::Sync);
        assert_eq!(c.store.store_host.port(), 20911);
        let err = c.apply("listenPort=abc").expect_err("bad");
        assert_eq!(err.key, "listenPort");
        let err = c.apply("flushDiskType=SOMETIMES").expect_err("bad");
        assert_eq!(err.key, "flushDiskType");
    }

    /// GET_BROKER_CONFIG's body applied to a default configuration gives one that renders
    /// the same (effective values: a derived `haListenPort` or `aclFile` comes back set).
    #[test]
    fn properties_read_back_unchanged() {
        let mut c = BrokerConfig::default();
        c.apply(
            "brokerName=b7\nbrokerId=1\nlistenPort=20911\nnamesrvAddr=1.2.3.4:9876;5.6.7.8:9876\n\
             aclEnable=true\ntls.server.mode=permissive\ntls.server.certPath=/c.pem\n\
             metricsExporterType=PROM\nflushDiskType=SYNC_FLUSH\nhaMasterAddress=1.2.3.4:10912\n\
             consolePort=8080\nbrokerPermission=4\nuseServerSideResetOffset=true\n",
        )
        .expect("applies");
        let text = c.to_conf_text();
        let mut back = BrokerConfig::default();
        assert_eq!(back.apply(&text).expect("reads back"), Vec::<String>::new());
        assert_eq!(back.properties(), c.properties());
        assert_eq!(format!("{:?}", back.store), format!("{:?}", c.store));
        // The defaults too (no console renders as -1).
        let defaults = BrokerConfig::default();
        let mut again = BrokerConfig::default();
        again.apply(&defaults.to_conf_text()).expect("reads back");
        assert_eq!(again.properties(), defaults.properties());
        assert_eq!(again.console_port, None);
    }

    #[test]
    fn the_example_pair_parses_with_no_unknown_keys() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ha");
        let mut master = BrokerConfig::default();
        let text = std::fs::read_to_string(dir.join("master.conf")).expect("master.conf");
        assert_eq!(master.apply(&text).expect("parses"), Vec::<String>::new());
        assert_eq!(master.store.broker_role, mqstore::BrokerRole::SyncMaster);
        assert_eq!(master.ha_port(), 10912);
        let mut slave = BrokerConfig::default();
        let text = std::fs::read_to_string(dir.join("slave.conf")).expect("slave.conf");
        assert_eq!(slave.apply(&text).expect("parses"), Vec::<String>::new());
        assert!(!slave.is_master());
        assert_eq!(slave.broker_name, master.broker_name);
        assert_eq!(slave.namesrv_addr, vec!["127.0.0.1:9876".to_owned()]);
        assert_ne!(
            slave.store.store_path_root_dir,
            master.store.store_path_root_dir
        );
    }

    #[test]
    fn the_example_cluster_parses_with_distinct_ports_and_stores() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster");
        let mut ports = std::collections::BTreeSet::new();
        let mut stores = std::collections::BTreeSet::new();
        for name in ["broker-a-0", "broker-a-1", "broker-b-0", "broker-b-1"] {
            let mut c = BrokerConfig::default();
            let text = std::fs::read_to_string(dir.join(format!("{name}.conf"))).expect("conf");
            assert_eq!(
                c.apply(&text).expect("parses"),
                Vec::<String>::new(),
                "{name}"
            );
            assert_eq!(c.namesrv_addr, vec!["127.0.0.1:9876".to_owned()], "{name}");
            // The name server owns 9876: no built-in route service beside it.
            assert_eq!(c.namesrv_listen_port, None, "{name}");
            assert_eq!(c.is_master(), name.ends_with("-0"), "{name}");
            assert!(ports.insert(c.listen_port), "{name}: listenPort taken");
            if c.is_master() {
                assert!(ports.insert(c.ha_port()), "{name}: HA port taken");
            }
            assert!(stores.insert(c.store.store_path_root_dir.clone()), "{name}");
        }
    }
}
