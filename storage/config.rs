//! Store configuration: every knob with RocketMQ's property name and default.
//!
//! [`StoreConfig::validate`] runs before a store opens; [`StoreConfig::apply_properties`]
//! reads RocketMQ-style `key=value` text (a `broker.conf`) using RocketMQ's key names.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

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

impl BrokerRole {
    /// RocketMQ's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
    }
}

/// Configuration of a store. Build it with [`StoreConfig::new`], adjust fields, or read
/// RocketMQ properties with [`StoreConfig::apply_properties`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `storePathRootDir`: the store's root directory (holds `lock` and `commitlog/`).
    pub store_path_root_dir: PathBuf,
    /// `storePathCommitLog`: the CommitLog directory. Default: `<root>/commitlog`.
    pub store_path_commit_log: Option<PathBuf>,
    /// `mappedFileSizeCommitLog`: bytes per CommitLog file. Default: 1 GiB (1 073 741 824).
    /// Must be a multiple of 4096.
    pub mapped_file_size_commit_log: u64,
    /// `maxMessageSize`: the largest body accepted (4.9.4+ semantics; the whole record
    /// must also stay within this plus 64 KiB, as 4.9.5+). Default: 4 MiB (4 194 304).
    pub max_message_size: u32,
    /// `flushDiskType`: `ASYNC_FLUSH` or `SYNC_FLUSH`. Default: `ASYNC_FLUSH`.
    pub flush_disk_type: FlushMode,
    /// `brokerRole`: `ASYNC_MASTER`, `SYNC_MASTER` or `SLAVE`. Default: `ASYNC_MASTER`.
    pub broker_role: BrokerRole,
    /// `syncFlushTimeout`: how long a SYNC_FLUSH put waits for its flush before it
    /// returns `FLUSH_DISK_TIMEOUT` (the message stays stored). Default: 5 s.
    pub sync_flush_timeout: Duration,
    /// `flushIntervalCommitLog`: ASYNC_FLUSH flusher period. Default: 500 ms.
    pub flush_interval_commit_log: Duration,
    /// `flushCommitLogLeastPages`: ASYNC_FLUSH flushes only once this many 4 KiB pages
    /// are dirty (or a file is full). Default: 4.
    pub flush_commit_log_least_pages: u32,
    /// `flushCommitLogThoroughInterval`: at least this often ASYNC_FLUSH flushes
    /// whatever is dirty, ignoring the page threshold. Default: 10 s.
    pub flush_commit_log_thorough_interval: Duration,
    /// `flushCommitLogTimed`: `true` sleeps the full interval between flushes; `false`
    /// lets every put wake the flusher early. Default: true.
    pub flush_commit_log_timed: bool,
    /// `warmMapedFileEnable`: pre-fault every page of a new CommitLog file in the
    /// background allocator (`MADV_POPULATE_WRITE`, else touch each page), so appends never
    /// take a page fault. Default: false (RocketMQ's default).
    pub warm_mapped_file_enable: bool,
    /// `mlockMappedFile` (ours; RocketMQ locks warmed files implicitly): `mlock` each new
    /// CommitLog file. Needs `RLIMIT_MEMLOCK` headroom. Default: false.
    pub mlock_mapped_file: bool,
    /// `enabledAppendPropCRC`: append the whole-record `__CRC32#` property (RocketMQ 5.x
    /// format, readable by 4.x). Default: true here (false in RocketMQ).
    pub enabled_append_prop_crc: bool,
    /// `checkCRCOnRecover`: verify BODYCRC and the whole-record CRC when scanning at open.
    /// Default: true.
    pub check_crc_on_recover: bool,
    /// `checkTailInBackground` (ours): after a clean shutdown, the newest CommitLog files
    /// (which every open re-checks record by record, as RocketMQ's normal recovery re-reads
    /// its last three) are checked by a background thread once the store is open, so a
    /// reopen costs milliseconds whatever the data size. Damage it finds stops writes and
    /// is reported by `MessageStore::tail_check`; reads never serve a bad record either
    /// way. `false`: check them before `open` returns and refuse to open on damage. After
    /// an abnormal exit the check always runs before open returns. Default: true.
    pub check_tail_in_background: bool,
    /// `osPageCacheBusyTimeOutMills`: a put returns `OS_PAGECACHE_BUSY` when the put lock
    /// has been held longer than this. Default: 1000 ms.
    pub os_page_cache_busy_timeout: Duration,
    /// `brokerIP1` + `listenPort`: the address written into every record's STOREHOST and
    /// into offset message ids; clients dial it. Default: 127.0.0.1:10911.
    pub store_host: SocketAddr,
    /// `mappedFileSizeConsumeQueue`: bytes per ConsumeQueue file, rounded up to whole
    /// 20-byte units as RocketMQ does. Default: 6 000 000 (300 000 units).
    pub mapped_file_size_consume_queue: u64,
    /// `flushIntervalConsumeQueue`: how often ConsumeQueues and the index are flushed and
    /// the checkpoints written. Default: 1000 ms.
    pub flush_interval_consume_queue: Duration,
    /// `messageIndexEnable`: build the key index. Default: true.
    pub message_index_enable: bool,
    /// `maxHashSlotNum`: hash slots per IndexFile. Default: 5 000 000.
    pub max_hash_slot_num: u32,
    /// `maxIndexNum`: items per IndexFile (item 0 unused). Default: 20 000 000.
    pub max_index_num: u32,
    /// `accessMessageInMemoryMaxRatio`: a message further than this percentage of physical
    /// RAM behind the CommitLog end counts as "in disk" for transfer limits. Default: 40.
    pub access_message_in_memory_max_ratio: u32,
    /// `maxTransferBytesOnMessageInMemory`. Default: 262 144.
    pub max_transfer_bytes_on_message_in_memory: u64,
    /// `maxTransferCountOnMessageInMemory`. Default: 32.
    pub max_transfer_count_on_message_in_memory: u32,
    /// `maxTransferBytesOnMessageInDisk`. Default: 65 536.
    pub max_transfer_bytes_on_message_in_disk: u64,
    /// `maxTransferCountOnMessageInDisk`. Default: 8.
    pub max_transfer_count_on_message_in_disk: u32,
    /// `recoveryMode` (ours): what opening does with a bad CommitLog record. Default:
    /// [`RecoveryMode::TolerateTailCorruption`].
    pub recovery_mode: RecoveryMode,
    /// `fileReservedTime`: how long a CommitLog file is kept after the newest message in
    /// it was stored (the store time read from the data, never the file's mtime). The
    /// config file gives it in hours, as RocketMQ's. Default: 72 hours.
    pub file_reserved_time: Duration,
    /// `deleteWhen`: hours of the day (local time, `;`-separated, e.g. `"01;04"`) in which
    /// expired files are deleted without disk pressure. Default: `"04"`.
    pub delete_when: String,
    /// `diskMaxUsedSpaceRatio`: above this percentage of the disk in use, expired files
    /// are deleted at any hour. Default: 75.
    pub disk_max_used_space_ratio: u32,
    /// `diskSpaceCleanForciblyRatio`: above this percentage, the oldest files go even
    /// before they expire (with `cleanFileForciblyEnable`). Default: 85.
    pub disk_space_clean_forcibly_ratio: u32,
    /// `diskSpaceWarningLevelRatio`: above this percentage the store is marked disk-full
    /// and refuses puts ([`PutStatus::DiskFull`](crate::PutStatus::DiskFull)) until usage
    /// drops below it again. Default: 90.
    pub disk_space_warning_level_ratio: u32,
    /// `cleanFileForciblyEnable`: allow deleting unexpired files above
    /// `diskSpaceCleanForciblyRatio`. Default: true.
    pub clean_file_forcibly_enable: bool,
    /// `deleteCommitLogFilesInterval`: pause between two CommitLog file deletions of one
    /// pass. Default: 100 ms.
    pub delete_commit_log_files_interval: Duration,
    /// `deleteConsumeQueueFilesInterval`: pause after each ConsumeQueue that lost files in
    /// a pass. Default: 100 ms.
    pub delete_consume_queue_files_interval: Duration,
    /// `deleteFileBatchMax`: CommitLog files deleted per pass at most. Default: 10.
    pub delete_file_batch_max: u32,
    /// `destroyMapedFileIntervalForcibly`: a deleted file still held by a reader after this
    /// long is reported (it is never unmapped under a reader; it goes when the last holder
    /// lets go). Default: 120 s.
    pub destroy_mapped_file_interval_forcibly: Duration,
    /// `redeleteHangedFileInterval`: how often deleted files whose removal did not complete
    /// are checked and removed again. Default: 120 s.
    pub redelete_hanged_file_interval: Duration,
    /// `cleanResourceInterval`: period of the cleanup thread (`rmq-clean`). Default: 10 s.
    pub clean_resource_interval: Duration,
    /// `messageDelayLevel`: the delay of each level (1-based), space separated, each a
    /// number with unit s, m, h or d.
    pub message_delay_level: String,
}

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
            store_path_commit_log: None,
            mapped_file_size_commit_log: DEFAULT_COMMIT_LOG_FILE_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            flush_disk_type: FlushMode::Async,
            broker_role: BrokerRole::AsyncMaster,
            sync_flush_timeout: Duration::from_secs(5),
            flush_interval_commit_log: Duration::from_millis(500),
            flush_commit_log_least_pages: 4,
            flush_commit_log_thorough_interval: Duration::from_secs(10),
            flush_commit_log_timed: true,
            warm_mapped_file_enable: false,
            mlock_mapped_file: false,
            enabled_append_prop_crc: true,
            check_crc_on_recover: true,
            check_tail_in_background: true,
            os_page_cache_busy_timeout: Duration::from_secs(1),
            store_host: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10911),
            mapped_file_size_consume_queue: DEFAULT_CQ_FILE_SIZE,
            flush_interval_consume_queue: Duration::from_secs(1),
            message_index_enable: true,
            max_hash_slot_num: DEFAULT_INDEX_SLOTS,
            max_index_num: DEFAULT_INDEX_ITEMS,
            access_message_in_memory_max_ratio: 40,
            max_transfer_bytes_on_message_in_memory: 262_144,
            max_transfer_count_on_message_in_memory: 32,
            max_transfer_bytes_on_message_in_disk: 65_536,
            max_transfer_count_on_message_in_disk: 8,
            recovery_mode: RecoveryMode::TolerateTailCorruption,
            file_reserved_time: Duration::from_secs(72 * 3600),
            delete_when: "04".to_owned(),
            disk_max_used_space_ratio: 75,
            disk_space_clean_forcibly_ratio: 85,
            disk_space_warning_level_ratio: 90,
            clean_file_forcibly_enable: true,
            delete_commit_log_files_interval: Duration::from_millis(100),
            delete_consume_queue_files_interval: Duration::from_millis(100),
            delete_file_batch_max: 10,
            destroy_mapped_file_interval_forcibly: Duration::from_secs(120),
            redelete_hanged_file_interval: Duration::from_secs(120),
            clean_resource_interval: Duration::from_secs(10),
            message_delay_level: DEFAULT_MESSAGE_DELAY_LEVEL.to_owned(),
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
        let bad = |why: String| Error::config("messageDelayLevel", why);
        let levels = self
            .message_delay_level
            .split_whitespace()
            .map(|entry| {
                let unit_at = entry.len().saturating_sub(1);
                let (n, unit) = entry.split_at(unit_at);
                let unit_ms: i64 = match unit {
                    "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    "d" => 86_400_000,
                    _ => return Err(bad(format!("`{entry}` has no unit s, m, h or d"))),
                };
                n.parse::<i64>()
                    .ok()
                    .filter(|&n| n >= 0)
                    .and_then(|n| n.checked_mul(unit_ms))
                    .ok_or_else(|| bad(format!("`{entry}` is not a duration")))
            })
            .collect::<Result<Vec<i64>>>()?;
        if levels.is_empty() {
            return Err(bad("no levels".into()));
        }
        Ok(levels)
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
                    "deleteWhen",
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
                "mappedFileSizeCommitLog",
                format!("{size} is not a positive multiple of {OS_PAGE_SIZE}"),
            ));
        }
        if size > i64::MAX as u64 / 2 {
            return Err(Error::config(
                "mappedFileSizeCommitLog",
                format!("{size} is too large"),
            ));
        }
        if usize::try_from(size).is_err() {
            return Err(Error::config(
                "mappedFileSizeCommitLog",
                "larger than the address space",
            ));
        }
        if self.max_message_size == 0 || self.max_record_len() > i32::MAX as u64 {
            return Err(Error::config(
                "maxMessageSize",
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
                "mappedFileSizeConsumeQueue",
                format!("{cq} is not a positive multiple of {CQ_UNIT_SIZE} below 2 GiB"),
            ));
        }
        if self.max_hash_slot_num == 0 || i32::try_from(self.max_hash_slot_num).is_err() {
            return Err(Error::config("maxHashSlotNum", "must be in 1..=2147483647"));
        }
        if self.max_index_num < 2 || i32::try_from(self.max_index_num).is_err() {
            return Err(Error::config("maxIndexNum", "must be in 2..=2147483647"));
        }
        if usize::try_from(index_file_size(self.max_hash_slot_num, self.max_index_num)).is_err() {
            return Err(Error::config(
                "maxIndexNum",
                "index file larger than the address space",
            ));
        }
        if self.access_message_in_memory_max_ratio > 100 {
            return Err(Error::config(
                "accessMessageInMemoryMaxRatio",
                "must be in 0..=100",
            ));
        }
        for (field, value) in [
            (
                "flushIntervalConsumeQueue",
                self.flush_interval_consume_queue,
            ),
            ("syncFlushTimeout", self.sync_flush_timeout),
            ("cleanResourceInterval", self.clean_resource_interval),
            ("flushIntervalCommitLog", self.flush_interval_commit_log),
            (
                "flushCommitLogThoroughInterval",
                self.flush_commit_log_thorough_interval,
            ),
        ] {
            if value.is_zero() {
                return Err(Error::config(field, "must be greater than zero"));
            }
        }
        self.delete_hours()?;
        for (field, value) in [
            ("diskMaxUsedSpaceRatio", self.disk_max_used_space_ratio),
            (
                "diskSpaceCleanForciblyRatio",
                self.disk_space_clean_forcibly_ratio,
            ),
            (
                "diskSpaceWarningLevelRatio",
                self.disk_space_warning_level_ratio,
            ),
        ] {
            if value > 100 {
                return Err(Error::config(field, format!("{value} is not a percentage")));
            }
        }
        if self.delete_file_batch_max == 0 {
            return Err(Error::config("deleteFileBatchMax", "must be at least 1"));
        }
        if self.store_path_root_dir.as_os_str().is_empty() {
            return Err(Error::config("storePathRootDir", "must not be empty"));
        }
        Ok(())
    }

    /// Applies RocketMQ-style properties text (`key=value` lines, `#`/`!` comments,
    /// `key: value` also accepted), using RocketMQ's key names.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key for an unknown key or an unparsable value.
    pub fn apply_properties(&mut self, text: &str) -> Result<()> {
        let mut ip: Option<IpAddr> = None;
        let mut port: Option<u16> = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some(split) = line.find(['=', ':']) else {
                return Err(Error::config(line, "expected `key=value`"));
            };
            let key = line[..split].trim();
            let value = line[split + 1..].trim();
            match key {
                "brokerIP1" => ip = Some(parse(key, value)?),
                "listenPort" => port = Some(parse(key, value)?),
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
    /// [`Error::InvalidConfig`] naming the key for an unknown key or an unparsable value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "storePathRootDir" => self.store_path_root_dir = PathBuf::from(value),
            "storePathCommitLog" => self.store_path_commit_log = Some(PathBuf::from(value)),
            "mappedFileSizeCommitLog" => self.mapped_file_size_commit_log = parse(key, value)?,
            "maxMessageSize" => self.max_message_size = parse(key, value)?,
            "messageDelayLevel" => {
                let old = std::mem::replace(&mut self.message_delay_level, value.to_owned());
                if let Err(e) = self.delay_levels() {
                    self.message_delay_level = old;
                    return Err(e);
                }
            }
            "brokerRole" => {
                self.broker_role = match value {
                    "ASYNC_MASTER" => BrokerRole::AsyncMaster,
                    "SYNC_MASTER" => BrokerRole::SyncMaster,
                    "SLAVE" => BrokerRole::Slave,
                    _ => {
                        return Err(Error::config(
                            key,
                            format!("`{value}` is not ASYNC_MASTER, SYNC_MASTER or SLAVE"),
                        ))
                    }
                }
            }
            "flushDiskType" => {
                self.flush_disk_type = match value {
                    "ASYNC_FLUSH" => FlushMode::Async,
                    "SYNC_FLUSH" => FlushMode::Sync,
                    _ => {
                        return Err(Error::config(
                            key,
                            format!("`{value}` is neither ASYNC_FLUSH nor SYNC_FLUSH"),
                        ))
                    }
                }
            }
            "syncFlushTimeout" => self.sync_flush_timeout = millis(key, value)?,
            "flushIntervalCommitLog" => self.flush_interval_commit_log = millis(key, value)?,
            "flushCommitLogLeastPages" => self.flush_commit_log_least_pages = parse(key, value)?,
            "flushCommitLogThoroughInterval" => {
                self.flush_commit_log_thorough_interval = millis(key, value)?;
            }
            "flushCommitLogTimed" => self.flush_commit_log_timed = parse(key, value)?,
            "warmMapedFileEnable" => self.warm_mapped_file_enable = parse(key, value)?,
            "mlockMappedFile" => self.mlock_mapped_file = parse(key, value)?,
            "enabledAppendPropCRC" => self.enabled_append_prop_crc = parse(key, value)?,
            "checkCRCOnRecover" => self.check_crc_on_recover = parse(key, value)?,
            "checkTailInBackground" => self.check_tail_in_background = parse(key, value)?,
            "osPageCacheBusyTimeOutMills" => self.os_page_cache_busy_timeout = millis(key, value)?,
            "mappedFileSizeConsumeQueue" => {
                // RocketMQ's getter rounds up to whole units.
                let size: u64 = parse(key, value)?;
                self.mapped_file_size_consume_queue = size.div_ceil(CQ_UNIT_SIZE) * CQ_UNIT_SIZE;
            }
            "flushIntervalConsumeQueue" => self.flush_interval_consume_queue = millis(key, value)?,
            "messageIndexEnable" => self.message_index_enable = parse(key, value)?,
            "maxHashSlotNum" => self.max_hash_slot_num = parse(key, value)?,
            "maxIndexNum" => self.max_index_num = parse(key, value)?,
            "accessMessageInMemoryMaxRatio" => {
                self.access_message_in_memory_max_ratio = parse(key, value)?;
            }
            "maxTransferBytesOnMessageInMemory" => {
                self.max_transfer_bytes_on_message_in_memory = parse(key, value)?;
            }
            "maxTransferCountOnMessageInMemory" => {
                self.max_transfer_count_on_message_in_memory = parse(key, value)?;
            }
            "maxTransferBytesOnMessageInDisk" => {
                self.max_transfer_bytes_on_message_in_disk = parse(key, value)?;
            }
            "maxTransferCountOnMessageInDisk" => {
                self.max_transfer_count_on_message_in_disk = parse(key, value)?;
            }
            "recoveryMode" => {
                self.recovery_mode = match value {
                    "TolerateTailCorruption" => RecoveryMode::TolerateTailCorruption,
                    "AbsoluteConsistency" => RecoveryMode::AbsoluteConsistency,
                    "TolerateAnyCorruption" => RecoveryMode::TolerateAnyCorruption,
                    _ => {
                        return Err(Error::config(
                            key,
                            format!("`{value}` is not a recovery mode"),
                        ))
                    }
                }
            }
            "fileReservedTime" => {
                let hours: u64 = parse(key, value)?;
                self.file_reserved_time = Duration::from_secs(hours.saturating_mul(3600));
            }
            "deleteWhen" => value.clone_into(&mut self.delete_when),
            "diskMaxUsedSpaceRatio" => self.disk_max_used_space_ratio = parse(key, value)?,
            "diskSpaceCleanForciblyRatio" => {
                self.disk_space_clean_forcibly_ratio = parse(key, value)?;
            }
            "diskSpaceWarningLevelRatio" => {
                self.disk_space_warning_level_ratio = parse(key, value)?;
            }
            "cleanFileForciblyEnable" => self.clean_file_forcibly_enable = parse(key, value)?,
            "deleteCommitLogFilesInterval" => {
                self.delete_commit_log_files_interval = millis(key, value)?;
            }
            "deleteConsumeQueueFilesInterval" => {
                self.delete_consume_queue_files_interval = millis(key, value)?;
            }
            "deleteFileBatchMax" => self.delete_file_batch_max = parse(key, value)?,
            "destroyMapedFileIntervalForcibly" => {
                self.destroy_mapped_file_interval_forcibly = millis(key, value)?;
            }
            "redeleteHangedFileInterval" => {
                self.redelete_hanged_file_interval = millis(key, value)?;
            }
            "cleanResourceInterval" => self.clean_resource_interval = millis(key, value)?,
            _ => return Err(Error::config(key, "unknown store property")),
        }
        Ok(())
    }
}

impl StoreConfig {
    /// Every key [`set`](Self::set) accepts, with this configuration's value rendered so
    /// that `set` reads it back unchanged (durations in RocketMQ's units: milliseconds,
    /// `fileReservedTime` in hours). What GET_BROKER_CONFIG answers.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| d.as_millis().to_string();
        let mut out = vec![
            (
                "storePathRootDir",
                self.store_path_root_dir.display().to_string(),
            ),
            (
                "mappedFileSizeCommitLog",
                self.mapped_file_size_commit_log.to_string(),
            ),
            ("maxMessageSize", self.max_message_size.to_string()),
            ("messageDelayLevel", self.message_delay_level.clone()),
            ("brokerRole", self.broker_role.as_str().to_owned()),
            (
                "flushDiskType",
                match self.flush_disk_type {
                    FlushMode::Async => "ASYNC_FLUSH",
                    FlushMode::Sync => "SYNC_FLUSH",
                }
                .to_owned(),
            ),
            ("syncFlushTimeout", ms(self.sync_flush_timeout)),
            ("flushIntervalCommitLog", ms(self.flush_interval_commit_log)),
            (
                "flushCommitLogLeastPages",
                self.flush_commit_log_least_pages.to_string(),
            ),
            (
                "flushCommitLogThoroughInterval",
                ms(self.flush_commit_log_thorough_interval),
            ),
            (
                "flushCommitLogTimed",
                self.flush_commit_log_timed.to_string(),
            ),
            (
                "warmMapedFileEnable",
                self.warm_mapped_file_enable.to_string(),
            ),
            ("mlockMappedFile", self.mlock_mapped_file.to_string()),
            (
                "enabledAppendPropCRC",
                self.enabled_append_prop_crc.to_string(),
            ),
            ("checkCRCOnRecover", self.check_crc_on_recover.to_string()),
            (
                "checkTailInBackground",
                self.check_tail_in_background.to_string(),
            ),
            (
                "osPageCacheBusyTimeOutMills",
                ms(self.os_page_cache_busy_timeout),
            ),
            (
                "mappedFileSizeConsumeQueue",
                self.mapped_file_size_consume_queue.to_string(),
            ),
            (
                "flushIntervalConsumeQueue",
                ms(self.flush_interval_consume_queue),
            ),
            ("messageIndexEnable", self.message_index_enable.to_string()),
            ("maxHashSlotNum", self.max_hash_slot_num.to_string()),
            ("maxIndexNum", self.max_index_num.to_string()),
            (
                "accessMessageInMemoryMaxRatio",
                self.access_message_in_memory_max_ratio.to_string(),
            ),
            (
                "maxTransferBytesOnMessageInMemory",
                self.max_transfer_bytes_on_message_in_memory.to_string(),
            ),
            (
                "maxTransferCountOnMessageInMemory",
                self.max_transfer_count_on_message_in_memory.to_string(),
            ),
            (
                "maxTransferBytesOnMessageInDisk",
                self.max_transfer_bytes_on_message_in_disk.to_string(),
            ),
            (
                "maxTransferCountOnMessageInDisk",
                self.max_transfer_count_on_message_in_disk.to_string(),
            ),
            (
                "recoveryMode",
                match self.recovery_mode {
                    RecoveryMode::TolerateTailCorruption => "TolerateTailCorruption",
                    RecoveryMode::AbsoluteConsistency => "AbsoluteConsistency",
                    RecoveryMode::TolerateAnyCorruption => "TolerateAnyCorruption",
                }
                .to_owned(),
            ),
            (
                "fileReservedTime",
                (self.file_reserved_time.as_secs() / 3600).to_string(),
            ),
            ("deleteWhen", self.delete_when.clone()),
            (
                "diskMaxUsedSpaceRatio",
                self.disk_max_used_space_ratio.to_string(),
            ),
            (
                "diskSpaceCleanForciblyRatio",
                self.disk_space_clean_forcibly_ratio.to_string(),
            ),
            (
                "diskSpaceWarningLevelRatio",
                self.disk_space_warning_level_ratio.to_string(),
            ),
            (
                "cleanFileForciblyEnable",
                self.clean_file_forcibly_enable.to_string(),
            ),
            (
                "deleteCommitLogFilesInterval",
                ms(self.delete_commit_log_files_interval),
            ),
            (
                "deleteConsumeQueueFilesInterval",
                ms(self.delete_consume_queue_files_interval),
            ),
            ("deleteFileBatchMax", self.delete_file_batch_max.to_string()),
            (
                "destroyMapedFileIntervalForcibly",
                ms(self.destroy_mapped_file_interval_forcibly),
            ),
            (
                "redeleteHangedFileInterval",
                ms(self.redelete_hanged_file_interval),
            ),
            ("cleanResourceInterval", ms(self.clean_resource_interval)),
        ];
        if let Some(dir) = &self.store_path_commit_log {
            out.push(("storePathCommitLog", dir.display().to_string()));
        }
        out
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| Error::config(key, format!("cannot parse `{value}`: {e}")))
}

fn millis(key: &str, value: &str) -> Result<Duration> {
    parse::<u64>(key, value).map(Duration::from_millis)
}

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
            matches!(&e, Error::InvalidConfig { field, .. } if field == "noSuchKey"),
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
