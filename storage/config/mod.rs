//! Store configuration: every knob with RocketMQ's property name and default.
//!
//! [`StoreConfig::validate`] runs before a store opens; [`StoreConfig::apply_properties`]
//! reads RocketMQ-style `key=value` text (a `broker.conf`) using RocketMQ's key names.
//! Every key is declared once, in [`StoreConfig`]'s [`config_keys!`](crate::config_keys)
//! block; [`keys`] holds the mechanism.

pub mod keys;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use keys::{Codec, Hours, Millis, Plain};

use crate::error::{Error, Result};
use crate::format::{
    index_file_size, CQ_UNIT_SIZE, DEFAULT_CQ_FILE_SIZE, DEFAULT_INDEX_ITEMS, DEFAULT_INDEX_SLOTS,
    MAX_RECORD_OVERHEAD, OS_PAGE_SIZE,
};

/// When a put is acknowledged relative to the disk (RocketMQ `flushDiskType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// `ASYNC_FLUSH`: acknowledged once the bytes are in the mapping (survives a process
    /// crash, not a power loss); a background thread flushes periodically.
    Async,
    /// `SYNC_FLUSH`: acknowledged only after a flush covering the record's end succeeded
    /// (group commit: one flush serves every waiting writer).
    Sync,
}

/// The store's part in a broker group (RocketMQ `brokerRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerRole {
    /// `ASYNC_MASTER`: takes writes; slaves copy them without the writer waiting.
    #[default]
    AsyncMaster,
    /// `SYNC_MASTER`: takes writes; the broker acknowledges a waiting send only once a
    /// slave has it too.
    SyncMaster,
    /// `SLAVE`: refuses puts (`SERVICE_NOT_AVAILABLE`); its CommitLog grows only by
    /// [`append_replicated`](crate::MessageStore::append_replicated).
    Slave,
}

crate::config_keys! {
    /// Configuration of a store. Build it with [`StoreConfig::new`], adjust fields, or read
    /// RocketMQ properties with [`StoreConfig::apply_properties`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct StoreConfig in store_key {
        /// The store's root directory (holds `lock` and `commitlog/`).
        "storePathRootDir" [] => store_path_root_dir: PathBuf = PathBuf::from("store"), keys::Path;
        /// The CommitLog directory; empty: `<root>/commitlog`.
        "storePathCommitLog" [] => store_path_commit_log: Option<PathBuf> = None, keys::OptionalPath;
        /// Bytes per CommitLog file (1 GiB); a multiple of 4096.
        "mappedFileSizeCommitLog" [] => mapped_file_size_commit_log: u64 = DEFAULT_COMMIT_LOG_FILE_SIZE, Plain<u64>;
        /// The largest body accepted, 4 MiB (4.9.4+ semantics; the whole record must also
        /// stay within this plus 64 KiB, as 4.9.5+).
        "maxMessageSize" [] => max_message_size: u32 = DEFAULT_MAX_MESSAGE_SIZE, Plain<u32>;
        /// `ASYNC_FLUSH` or `SYNC_FLUSH`: when a put is acknowledged relative to the disk.
        "flushDiskType" [] => flush_disk_type: FlushMode = FlushMode::Async, Plain<FlushMode>;
        /// `ASYNC_MASTER`, `SYNC_MASTER` or `SLAVE` (puts refused, replicated appends only).
        "brokerRole" [] => broker_role: BrokerRole = BrokerRole::AsyncMaster, Plain<BrokerRole>;
        /// How long a SYNC_FLUSH put waits for its flush before it returns
        /// `FLUSH_DISK_TIMEOUT` (the message stays stored).
        "syncFlushTimeout" [] => sync_flush_timeout: Duration = Duration::from_secs(5), Millis;
        /// ASYNC_FLUSH flusher period.
        "flushIntervalCommitLog" [] => flush_interval_commit_log: Duration = Duration::from_millis(500), Millis;
        /// ASYNC_FLUSH flushes only once this many 4 KiB pages are dirty (or a file is full).
        "flushCommitLogLeastPages" [] => flush_commit_log_least_pages: u32 = 4, Plain<u32>;
        /// At least this often ASYNC_FLUSH flushes whatever is dirty, ignoring the page
        /// threshold.
        "flushCommitLogThoroughInterval" [] => flush_commit_log_thorough_interval: Duration = Duration::from_secs(10), Millis;
        /// `true` sleeps the full interval between flushes; `false` lets every put wake the
        /// flusher early.
        "flushCommitLogTimed" [] => flush_commit_log_timed: bool = true, Plain<bool>;
        /// Pre-fault every page of a new CommitLog file in the background allocator
        /// (`MADV_POPULATE_WRITE`, else touch each page), so appends never take a page fault.
        "warmMapedFileEnable" [] => warm_mapped_file_enable: bool = false, Plain<bool>;
        /// `mlock` each new CommitLog file (RocketMQ locks warmed files implicitly). Needs
        /// `RLIMIT_MEMLOCK` headroom.
        "mlockMappedFile" [ours] => mlock_mapped_file: bool = false, Plain<bool>;
        /// Append the whole-record `__CRC32#` property (RocketMQ 5.x format, readable by
        /// 4.x). On here; off in RocketMQ.
        "enabledAppendPropCRC" [] => enabled_append_prop_crc: bool = true, Plain<bool>;
        /// Verify BODYCRC and the whole-record CRC when scanning at open.
        "checkCRCOnRecover" [] => check_crc_on_recover: bool = true, Plain<bool>;
        /// After a clean shutdown, the newest CommitLog files (which every open re-checks
        /// record by record, as RocketMQ's normal recovery re-reads its last three) are
        /// checked by a background thread once the store is open, so a reopen costs
        /// milliseconds whatever the data size. Damage it finds stops writes and is reported
        /// by `MessageStore::tail_check`; reads never serve a bad record either way. `false`:
        /// check them before `open` returns and refuse to open on damage. After an abnormal
        /// exit the check always runs before open returns.
        "checkTailInBackground" [ours] => check_tail_in_background: bool = true, Plain<bool>;
        /// A put returns `OS_PAGECACHE_BUSY` when the put lock has been held longer than this.
        "osPageCacheBusyTimeOutMills" [] => os_page_cache_busy_timeout: Duration = Duration::from_secs(1), Millis;
        /// Bytes per ConsumeQueue file (300 000 units), rounded up to whole 20-byte units as
        /// RocketMQ does.
        "mappedFileSizeConsumeQueue" [] => mapped_file_size_consume_queue: u64 = DEFAULT_CQ_FILE_SIZE, ConsumeQueueFileSize;
        /// How often ConsumeQueues and the index are flushed and the checkpoints written.
        "flushIntervalConsumeQueue" [] => flush_interval_consume_queue: Duration = Duration::from_secs(1), Millis;
        /// Build the key index.
        "messageIndexEnable" [] => message_index_enable: bool = true, Plain<bool>;
        /// Hash slots per IndexFile.
        "maxHashSlotNum" [] => max_hash_slot_num: u32 = DEFAULT_INDEX_SLOTS, Plain<u32>;
        /// Items per IndexFile (item 0 unused).
        "maxIndexNum" [] => max_index_num: u32 = DEFAULT_INDEX_ITEMS, Plain<u32>;
        /// A message further than this percentage of physical RAM behind the CommitLog end
        /// counts as "in disk" for transfer limits.
        "accessMessageInMemoryMaxRatio" [] => access_message_in_memory_max_ratio: u32 = 40, Plain<u32>;
        /// Bytes one pull returns at most from memory.
        "maxTransferBytesOnMessageInMemory" [] => max_transfer_bytes_on_message_in_memory: u64 = 262_144, Plain<u64>;
        /// Messages one pull returns at most from memory.
        "maxTransferCountOnMessageInMemory" [] => max_transfer_count_on_message_in_memory: u32 = 32, Plain<u32>;
        /// Bytes one pull returns at most from disk.
        "maxTransferBytesOnMessageInDisk" [] => max_transfer_bytes_on_message_in_disk: u64 = 65_536, Plain<u64>;
        /// Messages one pull returns at most from disk.
        "maxTransferCountOnMessageInDisk" [] => max_transfer_count_on_message_in_disk: u32 = 8, Plain<u32>;
        /// What opening does with a bad CommitLog record: `TolerateTailCorruption`,
        /// `AbsoluteConsistency` or `TolerateAnyCorruption` ([`RecoveryMode`]).
        "recoveryMode" [ours] => recovery_mode: RecoveryMode = RecoveryMode::TolerateTailCorruption, Plain<RecoveryMode>;
        /// How long a CommitLog file is kept after the newest message in it was stored (the
        /// store time read from the data, never the file's mtime).
        "fileReservedTime" [] => file_reserved_time: Duration = Duration::from_secs(72 * 3600), Hours;
        /// Hours of the day (local time, `;`-separated, e.g. `01;04`) in which expired files
        /// are deleted without disk pressure.
        "deleteWhen" [] => delete_when: String = "04".to_owned(), Plain<String>;
        /// Above this percentage of the disk in use, expired files are deleted at any hour.
        "diskMaxUsedSpaceRatio" [] => disk_max_used_space_ratio: u32 = 75, Plain<u32>;
        /// Above this percentage, the oldest files go even before they expire (with
        /// `cleanFileForciblyEnable`).
        "diskSpaceCleanForciblyRatio" [] => disk_space_clean_forcibly_ratio: u32 = 85, Plain<u32>;
        /// Above this percentage the store is marked disk-full and refuses puts
        /// ([`PutStatus::DiskFull`](crate::PutStatus::DiskFull)) until usage drops below it.
        "diskSpaceWarningLevelRatio" [] => disk_space_warning_level_ratio: u32 = 90, Plain<u32>;
        /// Allow deleting unexpired files above `diskSpaceCleanForciblyRatio`.
        "cleanFileForciblyEnable" [] => clean_file_forcibly_enable: bool = true, Plain<bool>;
        /// Pause between two CommitLog file deletions of one pass.
        "deleteCommitLogFilesInterval" [] => delete_commit_log_files_interval: Duration = Duration::from_millis(100), Millis;
        /// Pause after each ConsumeQueue that lost files in a pass.
        "deleteConsumeQueueFilesInterval" [] => delete_consume_queue_files_interval: Duration = Duration::from_millis(100), Millis;
        /// CommitLog files deleted per pass at most.
        "deleteFileBatchMax" [] => delete_file_batch_max: u32 = 10, Plain<u32>;
        /// A deleted file still held by a reader after this long is reported (it is never
        /// unmapped under a reader; it goes when the last holder lets go).
        "destroyMapedFileIntervalForcibly" [] => destroy_mapped_file_interval_forcibly: Duration = Duration::from_secs(120), Millis;
        /// How often deleted files whose removal did not complete are checked and removed
        /// again.
        "redeleteHangedFileInterval" [] => redelete_hanged_file_interval: Duration = Duration::from_secs(120), Millis;
        /// Period of the cleanup thread (`rmq-clean`).
        "cleanResourceInterval" [] => clean_resource_interval: Duration = Duration::from_secs(10), Millis;
        /// The delay of each level (1-based), space separated, each a number with unit s, m,
        /// h or d.
        "messageDelayLevel" [] => message_delay_level: String = DEFAULT_MESSAGE_DELAY_LEVEL.to_owned(), DelayLevels;
    }
    extra {
        /// `brokerIP1` + `listenPort`: the address written into every record's STOREHOST and
        /// into offset message ids; clients dial it. Default: 127.0.0.1:10911.
        store_host: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10911);
    }
}

/// `mappedFileSizeConsumeQueue`: rounded up to whole units, as RocketMQ's getter does.
#[derive(Debug)]
pub struct ConsumeQueueFileSize;

impl Codec<u64> for ConsumeQueueFileSize {
    fn parse(text: &str) -> std::result::Result<u64, String> {
        let size: u64 = Plain::parse(text)?;
        Ok(size.div_ceil(CQ_UNIT_SIZE) * CQ_UNIT_SIZE)
    }
    fn render(value: &u64) -> String {
        value.to_string()
    }
}

/// `messageDelayLevel`: kept as written once every level reads as a duration.
#[derive(Debug)]
pub struct DelayLevels;

impl Codec<String> for DelayLevels {
    fn parse(text: &str) -> std::result::Result<String, String> {
        parse_delay_levels(text)?;
        Ok(text.to_owned())
    }
    fn render(value: &String) -> String {
        value.clone()
    }
}

/// The delay of each level of a `messageDelayLevel` text in milliseconds.
fn parse_delay_levels(text: &str) -> std::result::Result<Vec<i64>, String> {
    let levels = text
        .split_whitespace()
        .map(|entry| {
            let unit_at = entry.len().saturating_sub(1);
            let (n, unit) = entry.split_at(unit_at);
            let unit_ms: i64 = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("`{entry}` has no unit s, m, h or d")),
            };
            n.parse::<i64>()
                .ok()
                .filter(|&n| n >= 0)
                .and_then(|n| n.checked_mul(unit_ms))
                .ok_or_else(|| format!("`{entry}` is not a duration"))
        })
        .collect::<std::result::Result<Vec<i64>, String>>()?;
    if levels.is_empty() {
        return Err("no levels".into());
    }
    Ok(levels)
}

/// A RocketMQ enum spelled as RocketMQ spells it (`FlushMode`, `BrokerRole`, `RecoveryMode`).
macro_rules! spelled {
    ($ty:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            /// RocketMQ's spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($text => Ok($ty::$variant),)*
                    _ => Err(format!(
                        "`{s}` is not one of {}",
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

spelled!(FlushMode { Async = "ASYNC_FLUSH", Sync = "SYNC_FLUSH" });
spelled!(BrokerRole { AsyncMaster = "ASYNC_MASTER", SyncMaster = "SYNC_MASTER", Slave = "SLAVE" });
spelled!(RecoveryMode {
    TolerateTailCorruption = "TolerateTailCorruption",
    AbsoluteConsistency = "AbsoluteConsistency",
    TolerateAnyCorruption = "TolerateAnyCorruption",
});

/// What recovery does with an invalid CommitLog record (raft-engine's and RocksDB's modes).
/// I/O errors during recovery are never tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// A bad record beyond the last durable flush is a torn tail and is cut off; a bad record
    /// below it is corruption and opening fails naming file and offset.
    #[default]
    TolerateTailCorruption,
    /// Any bad record, torn tail included, fails opening (unwritten, zeroed space at the end
    /// is not a bad record).
    AbsoluteConsistency,
    /// Bad records are skipped and reported as gaps in the [`RecoveryReport`](crate::RecoveryReport);
    /// every valid record after them is kept. Lossy: opt in only to salvage a damaged store.
    TolerateAnyCorruption,
}

/// RocketMQ's default CommitLog file size: 1 GiB.
pub const DEFAULT_COMMIT_LOG_FILE_SIZE: u64 = 1024 * 1024 * 1024;
/// RocketMQ's default maximum message (body) size: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 4 * 1024 * 1024;

/// RocketMQ's default delay levels (`messageDelayLevel`).
pub const DEFAULT_MESSAGE_DELAY_LEVEL: &str =
    "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

impl StoreConfig {
    /// RocketMQ's defaults, rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreConfig {
            store_path_root_dir: root.into(),
            ..StoreConfig::default()
        }
    }

    /// The longest record a message of `maxMessageSize` can make (body plus the most its
    /// header, topic and properties can add).
    pub fn max_record_len(&self) -> u64 {
        u64::from(self.max_message_size) + MAX_RECORD_OVERHEAD
    }

    /// The delay of each level in milliseconds (index 0 = level 1).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when an entry is not `<number><s|m|h|d>` or the list is empty.
    pub fn delay_levels(&self) -> Result<Vec<i64>> {
        parse_delay_levels(&self.message_delay_level)
            .map_err(|why| Error::config(store_key::message_delay_level, why))
    }

    /// The CommitLog directory.
    pub fn commit_log_dir(&self) -> PathBuf {
        self.store_path_commit_log
            .clone()
            .unwrap_or_else(|| self.store_path_root_dir.join("commitlog"))
    }

    /// The ConsumeQueue root directory (`<root>/consumequeue`).
    pub fn consume_queue_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("consumequeue")
    }

    /// The IndexFile directory (`<root>/index`).
    pub fn index_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("index")
    }

    /// The hours of `deleteWhen`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `deleteWhen` if a part is not an hour (0..=23).
    pub fn delete_hours(&self) -> Result<Vec<u32>> {
        self.delete_when
            .split(';')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| match h.parse::<u32>() {
                Ok(hour) if hour < 24 => Ok(hour),
                _ => Err(Error::config(
                    store_key::delete_when,
                    format!("`{h}` is not an hour of the day (0..=23)"),
                )),
            })
            .collect()
    }

    /// Checks every field; the error names the field at fault.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for the first invalid field.
    pub fn validate(&self) -> Result<()> {
        self.delay_levels()?;
        let size = self.mapped_file_size_commit_log;
        if size < OS_PAGE_SIZE || !size.is_multiple_of(OS_PAGE_SIZE) {
            return Err(Error::config(
                store_key::mapped_file_size_commit_log,
                format!("{size} is not a positive multiple of {OS_PAGE_SIZE}"),
            ));
        }
        if size > i64::MAX as u64 / 2 {
            return Err(Error::config(
                store_key::mapped_file_size_commit_log,
                format!("{size} is too large"),
            ));
        }
        if usize::try_from(size).is_err() {
            return Err(Error::config(
                store_key::mapped_file_size_commit_log,
                "larger than the address space",
            ));
        }
        if self.max_message_size == 0 || self.max_record_len() > i32::MAX as u64 {
            return Err(Error::config(
                store_key::max_message_size,
                format!(
                    "{} is not in 1..={}",
                    self.max_message_size,
                    i32::MAX as u64 - MAX_RECORD_OVERHEAD
                ),
            ));
        }
        let cq = self.mapped_file_size_consume_queue;
        if cq < CQ_UNIT_SIZE || !cq.is_multiple_of(CQ_UNIT_SIZE) || cq > i32::MAX as u64 {
            return Err(Error::config(
                store_key::mapped_file_size_consume_queue,
                format!("{cq} is not a positive multiple of {CQ_UNIT_SIZE} below 2 GiB"),
            ));
        }
        if self.max_hash_slot_num == 0 || i32::try_from(self.max_hash_slot_num).is_err() {
            return Err(Error::config(
                store_key::max_hash_slot_num,
                "must be in 1..=2147483647",
            ));
        }
        if self.max_index_num < 2 || i32::try_from(self.max_index_num).is_err() {
            return Err(Error::config(
                store_key::max_index_num,
                "must be in 2..=2147483647",
            ));
        }
        if usize::try_from(index_file_size(self.max_hash_slot_num, self.max_index_num)).is_err() {
            return Err(Error::config(
                store_key::max_index_num,
                "index file larger than the address space",
            ));
        }
        if self.access_message_in_memory_max_ratio > 100 {
            return Err(Error::config(
                store_key::access_message_in_memory_max_ratio,
                "must be in 0..=100",
            ));
        }
        for (field, value) in [
            (
                store_key::flush_interval_consume_queue,
                self.flush_interval_consume_queue,
            ),
            (store_key::sync_flush_timeout, self.sync_flush_timeout),
            (
                store_key::clean_resource_interval,
                self.clean_resource_interval,
            ),
            (
                store_key::flush_interval_commit_log,
                self.flush_interval_commit_log,
            ),
            (
                store_key::flush_commit_log_thorough_interval,
                self.flush_commit_log_thorough_interval,
            ),
        ] {
            if value.is_zero() {
                return Err(Error::config(field, "must be greater than zero"));
            }
        }
        self.delete_hours()?;
        for (field, value) in [
            (
                store_key::disk_max_used_space_ratio,
                self.disk_max_used_space_ratio,
            ),
            (
                store_key::disk_space_clean_forcibly_ratio,
                self.disk_space_clean_forcibly_ratio,
            ),
            (
                store_key::disk_space_warning_level_ratio,
                self.disk_space_warning_level_ratio,
            ),
        ] {
            if value > 100 {
                return Err(Error::config(field, format!("{value} is not a percentage")));
            }
        }
        if self.delete_file_batch_max == 0 {
            return Err(Error::config(
                store_key::delete_file_batch_max,
                "must be at least 1",
            ));
        }
        if self.store_path_root_dir.as_os_str().is_empty() {
            return Err(Error::config(
                store_key::store_path_root_dir,
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// Applies RocketMQ-style properties text (`key=value` lines, `#`/`!` comments,
    /// `key: value` also accepted), using RocketMQ's key names; `brokerIP1` and `listenPort`
    /// make the STOREHOST.
    ///
    /// # Errors
    /// [`Error::UnknownConfigKey`] for a key the store does not have,
    /// [`Error::InvalidConfig`] naming the key for a value that does not parse.
    pub fn apply_properties(&mut self, text: &str) -> Result<()> {
        let mut ip: Option<IpAddr> = None;
        let mut port: Option<u16> = None;
        let pairs =
            keys::conf_pairs(text).map_err(|e| Error::config(e.line, "expected `key=value`"))?;
        for (key, value) in pairs {
            match key {
                STORE_HOST_IP => {
                    ip = Some(Plain::parse(value).map_err(|why| Error::config(key, why))?);
                }
                STORE_HOST_PORT => {
                    port = Some(Plain::parse(value).map_err(|why| Error::config(key, why))?);
                }
                _ => self.set(key, value)?,
            }
        }
        if ip.is_some() || port.is_some() {
            self.store_host = SocketAddr::new(
                ip.unwrap_or(self.store_host.ip()),
                port.unwrap_or(self.store_host.port()),
            );
        }
        Ok(())
    }

    /// Sets one field from a RocketMQ property.
    ///
    /// # Errors
    /// [`Error::UnknownConfigKey`] for a key the store does not have,
    /// [`Error::InvalidConfig`] naming the key for a value that does not parse.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_key(key, value).map_err(|e| match e {
            keys::KeyError::Unknown => Error::UnknownConfigKey {
                key: key.to_owned(),
            },
            keys::KeyError::Invalid(why) => Error::config(key, why),
        })
    }

    /// Every key [`set`](Self::set) accepts, with this configuration's value rendered so
    /// that `set` reads it back unchanged (durations in RocketMQ's units: milliseconds,
    /// `fileReservedTime` in hours). What GET_BROKER_CONFIG answers.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        self.key_values()
    }
}

/// The keys that make the STOREHOST (`brokerIP1:listenPort`); a broker declares them as its own.
const STORE_HOST_IP: &str = "brokerIP1";
const STORE_HOST_PORT: &str = "listenPort";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rendered key parses back to the same configuration (a key added to `set` but
    /// not to `properties`, or rendered in another unit, fails here).
    #[test]
    fn properties_read_back_unchanged() {
        let mut c = StoreConfig::new("/data/store");
        c.apply_properties(
            "flushDiskType=SYNC_FLUSH\nbrokerRole=SLAVE\nrecoveryMode=AbsoluteConsistency\n\
             fileReservedTime=48\nsyncFlushTimeout=250\nstorePathCommitLog=/data/log\n\
             mappedFileSizeConsumeQueue=6000\nmessageDelayLevel=1s 2s\n",
        )
        .expect("applies");
        let mut back = StoreConfig::new("/elsewhere");
        for (k, v) in c.properties() {
            back.set(k, &v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
        back.store_host = c.store_host;
        assert_eq!(format!("{back:?}"), format!("{c:?}"));
    }

    #[test]
    fn defaults_are_rocketmq_defaults_and_valid() {
        let c = StoreConfig::new("/tmp/x");
        assert_eq!(c.mapped_file_size_commit_log, 1_073_741_824);
        assert_eq!(c.max_message_size, 4_194_304);
        assert_eq!(c.flush_disk_type, FlushMode::Async);
        assert_eq!(c.flush_interval_commit_log, Duration::from_millis(500));
        assert_eq!(c.flush_commit_log_least_pages, 4);
        assert_eq!(
            c.flush_commit_log_thorough_interval,
            Duration::from_secs(10)
        );
        assert_eq!(c.sync_flush_timeout, Duration::from_secs(5));
        assert!(c.enabled_append_prop_crc);
        assert_eq!(c.file_reserved_time, Duration::from_secs(72 * 3600));
        assert_eq!(c.delete_hours().expect("hours"), vec![4]);
        assert_eq!(
            (
                c.disk_max_used_space_ratio,
                c.disk_space_clean_forcibly_ratio,
                c.disk_space_warning_level_ratio
            ),
            (75, 85, 90)
        );
        assert_eq!(c.clean_resource_interval, Duration::from_secs(10));
        assert_eq!(c.delete_file_batch_max, 10);
        c.validate().expect("defaults validate");
    }

    #[test]
    fn properties_use_rocketmq_keys() {
        let mut c = StoreConfig::new("/tmp/x");
        c.apply_properties(
            "# broker.conf\nmappedFileSizeCommitLog=65536\nflushDiskType = SYNC_FLUSH\n\
             syncFlushTimeout=250\n! comment\nbrokerIP1=10.0.0.7\nlistenPort=10912\n\
             storePathRootDir=/data/store\nwarmMapedFileEnable=true\n",
        )
        .expect("valid properties");
        assert_eq!(c.mapped_file_size_commit_log, 65536);
        assert_eq!(c.flush_disk_type, FlushMode::Sync);
        assert_eq!(c.sync_flush_timeout, Duration::from_millis(250));
        assert_eq!(c.store_host, "10.0.0.7:10912".parse().expect("addr"));
        assert_eq!(c.commit_log_dir(), PathBuf::from("/data/store/commitlog"));
        assert!(c.warm_mapped_file_enable);
    }

    #[test]
    fn unknown_or_bad_values_name_the_key() {
        let mut c = StoreConfig::new("/tmp/x");
        let e = c.apply_properties("noSuchKey=1").expect_err("unknown key");
        assert!(
            matches!(&e, Error::UnknownConfigKey { key } if key == "noSuchKey"),
            "{e}"
        );
        let e = c
            .apply_properties("flushDiskType=SOMETIMES")
            .expect_err("bad enum");
        assert!(matches!(&e, Error::InvalidConfig { field, .. } if field == "flushDiskType"));
        let e = c
            .apply_properties("maxMessageSize=lots")
            .expect_err("bad number");
        assert!(e.to_string().contains("maxMessageSize"), "{e}");
        let e = c.apply_properties("justtext").expect_err("no separator");
        assert!(matches!(e, Error::InvalidConfig { .. }));
    }

    #[test]
    fn delete_when_takes_several_hours_and_rejects_non_hours() {
        let mut c = StoreConfig::new("/tmp/x");
        c.apply_properties("deleteWhen=01;04; 23\nfileReservedTime=48")
            .expect("valid");
        assert_eq!(c.delete_hours().expect("hours"), vec![1, 4, 23]);
        assert_eq!(c.file_reserved_time, Duration::from_secs(48 * 3600));
        for bad in ["24", "4am", "-1"] {
            c.delete_when = bad.to_owned();
            let e = c.validate().expect_err(bad);
            assert!(e.to_string().contains("deleteWhen"), "{e}");
        }
        c.delete_when = "04".to_owned();
        c.disk_space_warning_level_ratio = 101;
        assert!(c
            .validate()
            .expect_err("not a percentage")
            .to_string()
            .contains("diskSpaceWarningLevelRatio"));
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = StoreConfig::new("/tmp/x");
        c.mapped_file_size_commit_log = 1000;
        let e = c.validate().expect_err("not page aligned");
        assert!(e.to_string().contains("mappedFileSizeCommitLog"), "{e}");
        let mut c = StoreConfig::new("/tmp/x");
        c.max_message_size = 0;
        assert!(c
            .validate()
            .expect_err("zero")
            .to_string()
            .contains("maxMessageSize"));
        let mut c = StoreConfig::new("/tmp/x");
        c.sync_flush_timeout = Duration::ZERO;
        assert!(c
            .validate()
            .expect_err("zero")
            .to_string()
            .contains("syncFlushTimeout"));
    }
}
