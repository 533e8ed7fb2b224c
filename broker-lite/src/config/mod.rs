//! `broker.conf`: RocketMQ's broker keys for the broker, everything else handed to the
//! store's [`StoreConfig`] under the same names. Each key is declared once, in the
//! [`config_keys!`](mqstore::config_keys) block of [`BrokerConfig`].

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use mqstore::config::keys::{
    self, Codec, KeyError, List, Millis, Optional, OptionalPath, Plain, PortOrOff,
};
use mqstore::StoreConfig;

use crate::remoting::codes::perm;
use crate::remoting::tls::TlsMode;

mqstore::config_keys! {
    /// Broker settings (RocketMQ `BrokerConfig` / `NettyServerConfig` names); every key
    /// not declared here is handed to the store's [`StoreConfig`].
    #[derive(Debug, Clone)]
    #[non_exhaustive]
    pub struct BrokerConfig in broker_key {
        /// The cluster this broker group belongs to.
        "brokerClusterName" [] => broker_cluster_name: String = "DefaultCluster".into(), Plain<String>;
        /// The broker group's name, shared by its master and slaves.
        "brokerName" [] => broker_name: String = "broker-a".into(), Plain<String>;
        /// 0 for the master, above 0 for a slave.
        "brokerId" [] => broker_id: u64 = 0, Plain<u64>;
        /// The address advertised to clients (and written into message ids).
        "brokerIP1" [] => broker_ip1: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST), Plain<IpAddr>;
        /// The remoting port; 0 picks a free port.
        "listenPort" [] => listen_port: u16 = 10911, Plain<u16>;
        /// The interface the sockets bind.
        "listenAddr" [ours] => listen_addr: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST), Plain<IpAddr>;
        /// The built-in route service's port: 9876 when `namesrvAddr` is empty, off when it
        /// names name servers (they serve the routes then); `-1` turns it off.
        "namesrvListenPort" [ours] => namesrv_listen_port: Option<u16> = Some(9876), PortOrOff;
        /// External name servers (`host:port;host:port`) to register with.
        "namesrvAddr" [] => namesrv_addr: Vec<String> = Vec::new(), List;
        /// A send to an unknown topic creates it (from `TBW102`).
        "autoCreateTopicEnable" [] => auto_create_topic_enable: bool = true, Plain<bool>;
        /// Queues of `TBW102`, so of an auto-created topic.
        "defaultTopicQueueNums" [] => default_topic_queue_nums: u32 = 8, Plain<u32>;
        /// Hold a pull that finds nothing until data arrives.
        "longPollingEnable" [] => long_polling_enable: bool = true, Plain<bool>;
        /// How long a pull is held with long polling off.
        "shortPollingTimeMills" [] => short_polling_time: Duration = Duration::from_secs(1), Millis;
        /// How often consumer offsets are written to `config/consumerOffset.json`.
        "flushConsumerOffsetInterval" [] => flush_consumer_offset_interval: Duration = Duration::from_secs(5), Millis;
        /// A client not heard from for this long is dropped (RocketMQ fixes 120 s).
        "channelExpiredTimeout" [ours] => channel_expired_timeout: Duration = Duration::from_secs(120), Millis;
        /// Connections at most; more are closed at once.
        "maxConnections" [ours] => max_connections: usize = 10_000, Plain<usize>;
        /// Responses queued for one connection before it is closed as a stalled reader.
        "maxOutboundFrames" [ours] => max_outbound_frames: usize = 1024, Plain<usize>;
        /// Sends waiting for the store before SYSTEM_BUSY.
        "sendThreadPoolQueueCapacity" [] => send_thread_pool_queue_capacity: usize = 10_000, Plain<usize>;
        /// A send that waited longer for the store is answered SYSTEM_BUSY.
        "waitTimeMillsInSendQueue" [] => wait_time_in_send_queue: Duration = Duration::from_millis(200), Millis;
        /// The `TRACE_ON` value in send responses.
        "traceOn" [] => trace_on: bool = true, Plain<bool>;
        /// The `MSG_REGION` in send responses.
        "regionId" [] => region_id: String = "DefaultRegion".into(), Plain<String>;
        /// How often the broker registers with its name servers.
        "registerNameServerPeriod" [] => register_name_server_period: Duration = Duration::from_secs(30), Millis;
        /// How long one name server may take to answer a registration.
        "registerBrokerTimeoutMills" [] => register_broker_timeout: Duration = Duration::from_secs(6), Millis;
        /// A send-back or heartbeat of an unknown consumer group creates its subscription
        /// group.
        "autoCreateSubscriptionGroup" [live] => auto_create_subscription_group: bool = true, Plain<bool>;
        /// A half message younger than this is not checked back.
        "transactionTimeOut" [] => transaction_timeout: Duration = Duration::from_secs(6), Millis;
        /// Check-backs before a half message is discarded.
        "transactionCheckMax" [] => transaction_check_max: u32 = 15, Plain<u32>;
        /// How often half messages are checked.
        "transactionCheckInterval" [] => transaction_check_interval: Duration = Duration::from_secs(60), Millis;
        /// Refuse half messages (NO_PERMISSION).
        "rejectTransactionMessage" [live] => reject_transaction_message: bool = false, Plain<bool>;
        /// A queue lock not renewed for this long is free again (RocketMQ's JVM property
        /// `rocketmq.broker.rebalance.lockMaxLiveTime`).
        "rebalanceLockMaxLiveTime" [] => rebalance_lock_max_live_time: Duration = Duration::from_secs(60), Millis;
        /// Where a master serves its slaves; empty: `listenPort + 1`.
        "haListenPort" [] => ha_listen_port: Option<u16> = None, Optional<u16>, show |c| c.ha_port().to_string();
        /// The master's HA address (`host:port`) a slave follows; empty: the `haServerAddr`
        /// a name server answers the slave's registration with.
        "haMasterAddress" [] => ha_master_address: Option<String> = None, Optional<String>;
        /// How often an idle HA link sends a heartbeat.
        "haSendHeartbeatInterval" [] => ha_send_heartbeat_interval: Duration = Duration::from_secs(5), Millis;
        /// An HA connection silent this long is closed.
        "haHousekeepingInterval" [] => ha_housekeeping_interval: Duration = Duration::from_secs(20), Millis;
        /// The largest frame a master sends.
        "haTransferBatchSize" [] => ha_transfer_batch_size: usize = 32 * 1024, Plain<usize>;
        /// SYNC_MASTER answers SLAVE_NOT_AVAILABLE when the best slave is further behind.
        "haSlaveFallbehindMax" [] => ha_slave_fallbehind_max: u64 = 256 * 1024 * 1024, Plain<u64>;
        /// How long a SYNC_MASTER send waits for a slave.
        "slaveTimeout" [] => slave_timeout: Duration = Duration::from_secs(3), Millis;
        /// A slave serves pulls, and a master whose consumer falls far behind sends it to
        /// the slave.
        "slaveReadEnable" [live] => slave_read_enable: bool = false, Plain<bool>;
        /// What clients may do on this broker (RocketMQ's perm bits: 2 write, 4 read).
        /// Without both, every topic is advertised with this perm and pulls are refused;
        /// changed while running to drain a broker.
        "brokerPermission" [live] => broker_permission: u32 = perm::READ | perm::WRITE, Permission;
        /// INVOKE_BROKER_TO_RESET_OFFSET commits the new offsets itself (also for a group
        /// that is offline), instead of only asking the group's online consumers to reset
        /// (RocketMQ 4.9's way, the default; RocketMQ 5's key).
        "useServerSideResetOffset" [] => use_server_side_reset_offset: bool = false, Plain<bool>;
        /// Every request must come from a white-listed address or be signed by an account of
        /// the ACL file that holds the permission it needs.
        "aclEnable" [] => acl_enable: bool = false, Plain<bool>;
        /// The accounts (RocketMQ reads `conf/plain_acl.yml`); empty: `plain_acl.yml`
        /// beside the broker.conf given with `-c`, else in `<storePathRootDir>/config`.
        "aclFile" [ours] => acl_file: Option<PathBuf> = None, OptionalPath, show |c| c.acl_path().display().to_string();
        /// `disabled` (here; RocketMQ's default `permissive` needs a certificate),
        /// `permissive` or `enforcing`, on the broker and route-service ports.
        "tls.server.mode" [] => tls_server_mode: TlsMode = TlsMode::Disabled, Plain<TlsMode>;
        /// The PEM certificate chain.
        "tls.server.certPath" [] => tls_server_cert_path: Option<PathBuf> = None, OptionalPath;
        /// The PEM private key (unencrypted).
        "tls.server.keyPath" [] => tls_server_key_path: Option<PathBuf> = None, OptionalPath;
        /// Refused unless empty: give an unencrypted PEM key.
        "tls.server.keyPassword" [] => tls_server_key_password: Option<String> = None, NoKeyPassword;
        /// `PROM` serves Prometheus metrics; `DISABLE` none.
        "metricsExporterType" [] => metrics_prom: bool = false, ExporterType;
        /// The metrics port's interface.
        "metricsPromExporterHost" [] => metrics_prom_exporter_host: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST), Plain<IpAddr>;
        /// The metrics port (0: any free port).
        "metricsPromExporterPort" [] => metrics_prom_exporter_port: u16 = 5557, Plain<u16>;
        /// The web console's port; negative or empty: no console; 0: any free port.
        "consolePort" [ours] => console_port: Option<u16> = None, PortOrOff;
        /// The console's interface.
        "consoleHost" [ours] => console_host: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST), Plain<IpAddr>;
    }
    extra {
        /// The `-c` file the configuration came from, where UPDATE_BROKER_CONFIG writes the
        /// keys it changes (not a RocketMQ key).
        config_file: Option<PathBuf> = None;
        /// The store's settings (`storePathRootDir`, `flushDiskType`, `brokerRole`, …).
        store: StoreConfig = StoreConfig::default();
    }
}

/// `brokerPermission`: RocketMQ's perm bits, nothing else.
#[derive(Debug)]
pub struct Permission;

impl Codec<u32> for Permission {
    fn parse(text: &str) -> Result<u32, String> {
        let bits: u32 = Plain::parse(text)?;
        if bits & !(perm::READ | perm::WRITE | perm::INHERIT) != 0 {
            return Err(format!("`{text}` is not a RocketMQ perm (bits 1, 2, 4)"));
        }
        Ok(bits)
    }
    fn render(value: &u32) -> String {
        value.to_string()
    }
}

/// `metricsExporterType`: `PROM` or `DISABLE` (empty too).
#[derive(Debug)]
pub struct ExporterType;

impl Codec<bool> for ExporterType {
    fn parse(text: &str) -> Result<bool, String> {
        match text {
            "PROM" => Ok(true),
            "DISABLE" | "" => Ok(false),
            other => Err(format!("`{other}`: broker-lite exports PROM or DISABLE")),
        }
    }
    fn render(value: &bool) -> String {
        if *value { "PROM" } else { "DISABLE" }.to_owned()
    }
}

/// `tls.server.keyPassword`: encrypted keys are not supported, so only empty is taken.
#[derive(Debug)]
pub struct NoKeyPassword;

impl Codec<Option<String>> for NoKeyPassword {
    fn parse(text: &str) -> Result<Option<String>, String> {
        if text.is_empty() {
            Ok(None)
        } else {
            Err("encrypted private keys are not supported: give an unencrypted PEM key".into())
        }
    }
    fn render(_: &Option<String>) -> String {
        String::new()
    }
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

/// The `key=value` pairs of properties text, in order (mqstore's reader).
///
/// # Errors
/// A [`ConfigError`] for a line that is not a pair.
pub fn conf_pairs(text: &str) -> Result<Vec<(&str, &str)>, ConfigError> {
    keys::conf_pairs(text).map_err(|e| ConfigError {
        key: e.line,
        reason: "expected `key=value`".into(),
    })
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

/// The configuration in force, with the keys declared `live` changeable while the broker
/// runs (UPDATE_BROKER_CONFIG). Code that honours a live key reads it here at every use, so
/// a change holds from the next request on; every other key is fixed from the start (its
/// value is woven into files, threads or listeners).
#[derive(Debug)]
pub struct LiveSettings {
    current: RwLock<BrokerConfig>,
    /// Serialises updates (each reads, changes and writes back all values); counts them.
    updating: Mutex<u64>,
}

impl LiveSettings {
    /// Starts with `config`.
    pub fn new(config: &BrokerConfig) -> Self {
        LiveSettings {
            current: RwLock::new(config.clone()),
            updating: Mutex::new(0),
        }
    }

    /// The configuration in force. Read a field and let go: an update waits for readers.
    pub fn read(&self) -> RwLockReadGuard<'_, BrokerConfig> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys that may change while running.
    pub fn keys() -> impl Iterator<Item = &'static str> {
        BrokerConfig::KEYS.iter().filter(|k| k.live).map(|k| k.key)
    }

    /// Checks every pair (a live key, a value that parses) and only then applies them all
    /// to the configuration in force; `apply` runs between the check and the change (e.g.
    /// writing the pairs to the config file) and can still call it off.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first pair refused, or what `apply` reported; nothing
    /// changed then.
    pub fn update(
        &self,
        pairs: &[(String, String)],
        apply: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), ConfigError> {
        let mut updates = self.updating.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = self.read().clone();
        for (key, value) in pairs {
            if !Self::keys().any(|k| k == key) {
                return Err(ConfigError {
                    key: key.clone(),
                    reason: format!(
                        "cannot be changed while the broker runs (keys that can: {})",
                        Self::keys().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            next.set(key, value)?;
        }
        apply().map_err(|reason| ConfigError {
            key: pairs.first().map(|(k, _)| k.clone()).unwrap_or_default(),
            reason,
        })?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        *updates += 1;
        Ok(())
    }

    /// How many updates were applied since the start.
    pub fn updates(&self) -> u64 {
        *self.updating.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether clients may send to this broker (`brokerPermission` has write).
    pub fn writable(&self) -> bool {
        self.read().broker_permission & perm::WRITE != 0
    }

    /// Whether clients may pull from this broker (`brokerPermission` has read).
    pub fn readable(&self) -> bool {
        self.read().broker_permission & perm::READ != 0
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
            route_port_given |= key == broker_key::namesrv_listen_port;
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
        let invalid = |reason: String| ConfigError {
            key: key.into(),
            reason,
        };
        match self.set_key(key, value) {
            Ok(()) => Ok(true),
            Err(KeyError::Invalid(why)) => Err(invalid(why)),
            Err(KeyError::Unknown) => match self.store.set_key(key, value) {
                Ok(()) => Ok(true),
                Err(KeyError::Unknown) => Ok(false),
                Err(KeyError::Invalid(why)) => Err(invalid(why)),
            },
        }
    }

    /// Every key [`set`](Self::set) accepts (the store's included), with its value
    /// rendered so that `set` reads it back: GET_BROKER_CONFIG's body, sorted by key.
    /// Derived values are shown as in effect (`haListenPort`, `aclFile`).
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let mut out = self.key_values();
        out.extend(self.store.key_values());
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

    /// README's key tables are made from the declarations: a key added, renamed or
    /// re-documented fails here until README shows it (`MQSTORE_UPDATE_README=1` rewrites
    /// the tables).
    #[test]
    fn readme_lists_every_key_as_declared() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).expect("README");
        let header = "| Key | Default | What it does |\n|---|---|---|\n";
        let tables = [
            (
                "store",
                keys::markdown_rows(StoreConfig::KEYS, &StoreConfig::default().key_values()),
            ),
            (
                "broker",
                keys::markdown_rows(BrokerConfig::KEYS, &BrokerConfig::default().key_values()),
            ),
        ];
        let mut expected = readme.clone();
        for (name, rows) in tables {
            let begin = format!("<!-- {name} keys: made from the declarations -->\n");
            let end = format!("<!-- end of {name} keys -->");
            let from = expected.find(&begin).expect("begin marker") + begin.len();
            let to = expected[from..].find(&end).expect("end marker") + from;
            expected.replace_range(from..to, &format!("{header}{rows}"));
        }
        if expected != readme && std::env::var_os("MQSTORE_UPDATE_README").is_some() {
            std::fs::write(&path, &expected).expect("write README");
            return;
        }
        assert!(
            expected == readme,
            "README's key tables differ from the declarations; run with MQSTORE_UPDATE_README=1"
        );
    }

    /// Every declared key renders and reads back, and the rendered list is the declared one.
    #[test]
    fn every_declared_key_renders_and_parses_back() {
        let c = BrokerConfig::default();
        let values = c.key_values();
        assert_eq!(
            values.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            BrokerConfig::KEYS.iter().map(|k| k.key).collect::<Vec<_>>()
        );
        let mut back = BrokerConfig::default();
        for (k, v) in c.properties() {
            assert!(
                back.set(k, &v).unwrap_or_else(|e| panic!("{k}={v}: {e}")),
                "{k}"
            );
        }
        assert!(!back.set("noSuchKey", "1").expect("unknown is not an error"));
        assert!(LiveSettings::keys().eq([
            "autoCreateSubscriptionGroup",
            "rejectTransactionMessage",
            "slaveReadEnable",
            "brokerPermission"
        ]));
    }

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
                &pairs(&[("slaveReadEnable", "true"), ("listenPort", "1")]),
                || Ok(()),
            )
            .expect_err("a fixed key");
        assert_eq!(err.key, "listenPort");
        assert!(!live.read().slave_read_enable);
        // The persisting step can call it off too.
        live.update(
            &pairs(&[("slaveReadEnable", "true")]),
            || Err("disk".into()),
        )
        .expect_err("not persisted");
        assert!(!live.read().slave_read_enable);
        assert_eq!(live.updates(), 0);
        live.update(
            &pairs(&[("slaveReadEnable", "true"), ("brokerPermission", "4")]),
            || Ok(()),
        )
        .expect("live keys");
        assert!(live.read().slave_read_enable && live.readable() && !live.writable());
        assert_eq!(live.read().broker_permission, 4);
        assert_eq!(
            base.broker_permission, 6,
            "the start configuration stays as it was"
        );
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
        assert_eq!(c.store.flush_disk_type, mqstore::FlushMode::Sync);
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
