//! Offline check and repair of a store directory (no store running on it).
//!
//! [`verify_store`] reads every file with plain reads (nothing is mapped or written): each
//! CommitLog record's structure and CRCs, every ConsumeQueue unit against the record it
//! points at, every index item against its record's keys, and the offset checkpoint against
//! the end of the valid log. It reports problems with file and offset, classed by what a
//! repair would do about them.
//!
//! [`repair_store`] truncates a torn CommitLog tail, and rebuilds the derived files (queues,
//! index, checkpoints) by moving them aside and letting recovery rebuild them from the
//! CommitLog. Damage below the durable point, or valid records after damage, means losing
//! acknowledged data: only with [`RepairOptions::discard_after_corruption`]. Every byte a
//! repair removes is first saved under `<root>/repair-<unix ms>/`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::borrow::Cow;

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::format::{
    self, index_key, index_key_hash, CqUnit, IndexHeader, IndexItem, OffsetCheckpoint,
    CQ_UNIT_SIZE, INDEX_ITEM_SIZE, INDEX_SLOT_SIZE, OFFSET_CHECKPOINT_FILE,
};
use crate::index::indexed_keys;
use crate::log::scan::{scan_log, LogFiles, ScanRules};
pub use crate::log::scan::{CorruptReason, LogEnd};

/// What a problem means for the data, and what a repair does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Derived data (ConsumeQueue, index) that disagrees with the CommitLog: rebuilt by a
    /// repair, nothing is lost.
    Derived,
    /// Bytes after the last valid record that were never made durable (a torn or unsynced
    /// tail): a repair cuts them, as recovery would.
    TornTail,
    /// Damage to data the store had made durable, or valid records after damage: cutting
    /// it loses records, so a repair needs an explicit flag.
    Corrupt,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file holding it.
    pub path: PathBuf,
    /// Byte position in that file.
    pub offset: u64,
    /// What it means.
    pub severity: Severity,
    /// What is wrong, for people.
    pub what: String,
}

/// The result of [`verify_store`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// CommitLog files checked.
    pub commit_log_files: usize,
    /// Valid message records.
    pub messages: u64,
    /// First CommitLog offset on disk.
    pub min_offset: u64,
    /// End of the valid CommitLog data.
    pub valid_end: u64,
    /// How the CommitLog ends: the verdict opening the store acts on.
    pub log_end: LogEnd,
    /// ConsumeQueue files and units (fillers included) checked.
    pub queue_files: usize,
    /// ConsumeQueue units checked.
    pub queue_units: u64,
    /// Index files and items checked.
    pub index_files: usize,
    /// Index items checked.
    pub index_items: u64,
    /// The newest valid offset checkpoint, if any.
    pub checkpoint: Option<OffsetCheckpoint>,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// The worst problem's severity; `None` when the store is clean.
    pub fn worst(&self) -> Option<Severity> {
        self.problems.iter().map(|p| p.severity).max()
    }

    /// Bytes of valid CommitLog data.
    pub fn bytes(&self) -> u64 {
        self.valid_end.saturating_sub(self.min_offset)
    }
}

/// How far a repair may go.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairOptions {
    /// Also cut the CommitLog at damage below the durable point or followed by valid
    /// records (the cut bytes are saved first). Without it such a store is left alone.
    pub discard_after_corruption: bool,
    /// Also cut the CommitLog at this offset (a record boundary at or below the end of
    /// valid data), whatever the check finds: how an operator makes a slave whose log
    /// diverged from its master's end where the master's does. The cut bytes are saved.
    pub truncate_at: Option<u64>,
}

/// What [`repair_store`] did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// The check before the repair.
    pub before: VerifyReport,
    /// The check after it.
    pub after: VerifyReport,
    /// Where the CommitLog was cut, if it was.
    pub cut_at: Option<u64>,
    /// Where removed bytes and derived files were saved (none if nothing needed it).
    pub backup_dir: Option<PathBuf>,
}

/// Progress: bytes read so far and the total to read.
pub type ProgressFn<'a> = dyn FnMut(u64, u64) + 'a;

/// A valid record, as the derived files must describe it.
struct Known {
    topic: u32,
    queue_id: i32,
    queue_offset: i64,
    size: u32,
    tags_code: i64,
    in_queue: bool,
    key_hashes: Vec<i32>,
    store_timestamp: i64,
}

/// Checks a stopped store's files. Takes the directory's lock for the duration, so a
/// running store is refused ([`Error::Locked`]).
///
/// # Errors
/// [`Error::Locked`] if a store has the directory open; I/O errors reading it.
pub fn verify_store(config: &StoreConfig, progress: &mut ProgressFn<'_>) -> Result<VerifyReport> {
    let _lock = lock(&config.store_path_root_dir)?;
    verify_unlocked(config, progress)
}

fn lock(root: &Path) -> Result<File> {
    if !root.is_dir() {
        return Err(Error::io(
            "open store directory",
            root,
            io::ErrorKind::NotFound.into(),
        ));
    }
    crate::store::lock_dir(root)
}

/// The files of a directory named by offset (sorted), and the other entries.
type Listing = (Vec<(u64, PathBuf)>, Vec<PathBuf>);

fn files_of(dir: &Path) -> Result<Listing> {
    list(dir, format::parse_file_name)
}

/// Index files (named by creation time, so by name is oldest first).
fn index_files_of(dir: &Path) -> Result<Listing> {
    list(dir, |name| format::is_index_file_name(name).then_some(0))
}

/// The entries of `dir` that `key` accepts, sorted by (key, path), and the others.
fn list(dir: &Path, key: impl Fn(&str) -> Option<u64>) -> Result<Listing> {
    let mut named = Vec::new();
    let mut other = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((named, other)),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        match key(&entry.file_name().to_string_lossy()) {
            Some(k) => named.push((k, entry.path())),
            None => other.push(entry.path()),
        }
    }
    named.sort();
    other.sort();
    Ok((named, other))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io("read", path, e))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

fn verify_unlocked(config: &StoreConfig, progress: &mut ProgressFn<'_>) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let log_dir = config.commit_log_dir();
    let (log_files, log_other) = files_of(&log_dir)?;
    let (queue_files, queue_other) = list_queue_files(&config.consume_queue_dir())?;
    let (index_files, index_other) = index_files_of(&config.index_dir())?;
    let total: u64 = log_files
        .iter()
        .map(|(_, p)| p)
        .chain(queue_files.iter().map(|q| &q.path))
        .chain(index_files.iter().map(|(_, p)| p))
        .map(|p| file_len(p))
        .sum();
    let mut done = 0u64;
    progress(done, total);
    for path in log_other.iter().chain(&queue_other).chain(&index_other) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let leftover = name
            .as_deref()
            .is_some_and(|n| n.ends_with(".tmp") || n.ends_with(".deleted"));
        if !leftover {
            report.problems.push(Problem {
                path: path.clone(),
                offset: 0,
                severity: Severity::Corrupt,
                what: "a file that is not part of the store (the store refuses to open)".into(),
            });
        }
    }
    report.checkpoint = fs::read(config.store_path_root_dir.join(OFFSET_CHECKPOINT_FILE))
        .ok()
        .and_then(|b| OffsetCheckpoint::newest(&b));
    let mut topics: HashMap<String, u32> = HashMap::new();
    let mut known: HashMap<u64, Known> = HashMap::new();
    check_log(
        config,
        &log_files,
        &mut report,
        &mut topics,
        &mut known,
        &mut |n| {
            done += n;
            progress(done, total);
        },
    )?;
    let topic_names: HashMap<u32, &str> = topics.iter().map(|(k, v)| (*v, k.as_str())).collect();
    let mut seen_units: HashSet<u64> = HashSet::new();
    for q in &queue_files {
        check_queue_file(config, q, &topics, &known, &mut report, &mut seen_units)?;
        done += file_len(&q.path);
        progress(done, total);
    }
    report.queue_files = queue_files.len();
    // Units dispatched durably must exist (recovery re-dispatches only above the checkpoint).
    let dispatched = report.checkpoint.map_or(0, |c| c.dispatched_durable);
    let mut missing: Vec<u64> = known
        .iter()
        .filter(|(at, k)| k.in_queue && **at < dispatched && !seen_units.contains(at))
        .map(|(at, _)| *at)
        .collect();
    missing.sort_unstable();
    if let Some(&first) = missing.first() {
        let k = &known[&first];
        report.problems.push(Problem {
            path: config.consume_queue_dir().join(topic_names.get(&k.topic).copied().unwrap_or("?")),
            offset: 0,
            severity: Severity::Derived,
            what: format!(
                "{} records below the dispatched checkpoint {dispatched} have no ConsumeQueue unit (first at CommitLog offset {first})",
                missing.len()
            ),
        });
    }
    for (_, path) in &index_files {
        check_index_file(
            config,
            path,
            &known,
            report.min_offset,
            report.valid_end,
            &mut report,
        )?;
        done += file_len(path);
        progress(done, total);
    }
    report.index_files = index_files.len();
    progress(total, total);
    Ok(report)
}

/// The CommitLog files as the offline check reads them: plain reads, one file at a time.
struct PlainFiles<'a> {
    files: &'a [(u64, PathBuf)],
    size: u64,
    /// Reports each file read in the scan's order (progress).
    advance: std::cell::RefCell<&'a mut dyn FnMut(u64)>,
}

impl LogFiles for PlainFiles<'_> {
    fn count(&self) -> usize {
        self.files.len()
    }

    fn start(&self, i: usize) -> u64 {
        self.files[i].0
    }

    fn size(&self, _: usize) -> u64 {
        self.size
    }

    fn bytes(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        let bytes = read(&self.files[i].1)?;
        (self.advance.borrow_mut())(bytes.len() as u64);
        Ok(Cow::Owned(bytes))
    }
}

/// File names and sizes of the CommitLog: what recovery would refuse before scanning.
fn check_log_files(size: u64, files: &[(u64, PathBuf)], report: &mut VerifyReport) {
    let mut expected = files.first().map(|(s, _)| *s);
    for (start, path) in files {
        if start % size != 0 || expected != Some(*start) {
            report.problems.push(Problem {
                path: path.clone(),
                offset: 0,
                severity: Severity::Corrupt,
                what: format!(
                    "misplaced file name: expected a file starting at {}",
                    expected.unwrap_or(0)
                ),
            });
        }
        expected = Some(start.saturating_add(size));
        let len = file_len(path);
        if len != size {
            report.problems.push(Problem {
                path: path.clone(),
                offset: 0,
                severity: Severity::Corrupt,
                what: format!("{len} bytes, expected {size}"),
            });
        }
    }
}

/// Scans the whole CommitLog with the rule recovery uses ([`scan_log`]), collects every
/// valid record, and reports how the log ends.
fn check_log(
    config: &StoreConfig,
    files: &[(u64, PathBuf)],
    report: &mut VerifyReport,
    topics: &mut HashMap<String, u32>,
    known: &mut HashMap<u64, Known>,
    advance: &mut dyn FnMut(u64),
) -> Result<()> {
    let size = config.mapped_file_size_commit_log;
    let delay_levels = config.delay_levels()?;
    let tombstones = crate::queue::load_tombstones(&config.consume_queue_dir())?;
    report.commit_log_files = files.len();
    report.min_offset = files.first().map_or(0, |(s, _)| *s);
    report.valid_end = report.min_offset;
    check_log_files(size, files, report);
    let plain = PlainFiles {
        files,
        size,
        advance: std::cell::RefCell::new(advance),
    };
    let rules = ScanRules {
        from: report.min_offset,
        durable: report.checkpoint.map(|c| c.commit_log_durable),
        mode: config.recovery_mode,
        check_crc: true,
    };
    let mut messages = 0u64;
    let scan = scan_log(&plain, &rules, &mut |at, v| {
        let next = topics.len() as u32;
        let topic = *topics.entry(v.topic.to_owned()).or_insert(next);
        let key_hashes = indexed_keys(v)
            .map(|k| index_key_hash(&index_key(v.topic, k)))
            .collect();
        known.insert(
            at,
            Known {
                topic,
                queue_id: v.queue_id,
                queue_offset: v.queue_offset,
                size: v.total_size,
                tags_code: format::queue_tags_code(
                    v.topic,
                    v.properties,
                    v.store_timestamp,
                    &delay_levels,
                ),
                in_queue: format::enters_consume_queue(v.sys_flag)
                    && !crate::queue::is_deleted(&tombstones, v.topic, at),
                key_hashes,
                store_timestamp: v.store_timestamp,
            },
        );
        messages += 1;
        Ok(())
    })?;
    report.messages = messages;
    let Some(scan) = scan else {
        return Ok(());
    };
    let (end_index, end_pos) = scan.end;
    let (end_start, end_path) = &files[end_index];
    report.valid_end = scan.gaps.first().map_or(end_start + end_pos, |g| g.0);
    report.log_end = scan.log_end;
    for &(from, to) in &scan.gaps {
        let (start, path) = files
            .iter()
            .rev()
            .find(|(s, _)| *s <= from)
            .unwrap_or(&files[0]);
        report.problems.push(Problem {
            path: path.clone(),
            offset: from - start,
            severity: Severity::Corrupt,
            what: format!(
                "a corrupt stretch up to {to}, which opening skips (TolerateAnyCorruption)"
            ),
        });
    }
    let why = scan
        .found
        .as_ref()
        .map(|f| f.kind().to_string())
        .unwrap_or_default();
    match scan.log_end {
        LogEnd::TornTail { .. } => report.problems.push(Problem {
            path: end_path.clone(),
            offset: end_pos,
            severity: Severity::TornTail,
            what: format!("invalid record: {why}; after the last durable record (a torn tail)"),
        }),
        LogEnd::Corrupt { reason, .. } => {
            let durable = match (reason, rules.durable) {
                (CorruptReason::BelowDurable, Some(d)) => {
                    format!(" (the checkpoint says the log was durable up to {d})")
                }
                _ => String::new(),
            };
            report.problems.push(Problem {
                path: end_path.clone(),
                offset: end_pos,
                severity: Severity::Corrupt,
                what: format!("invalid record: {why}; {reason}{durable}"),
            });
        }
        LogEnd::Clean => {
            // Recovery zeroes what follows a clean end after a crash and removes later
            // files; say so when any of it is not zero.
            let rest = files
                .iter()
                .enumerate()
                .skip(end_index)
                .find_map(|(i, (_, path))| {
                    let bytes = read(path).ok()?;
                    let from = if i == end_index { end_pos as usize } else { 0 };
                    let p = bytes.get(from..)?.iter().position(|&b| b != 0)?;
                    Some((path.clone(), (from + p) as u64))
                });
            if let Some((path, offset)) = rest {
                report.problems.push(Problem {
                    path,
                    offset,
                    severity: Severity::TornTail,
                    what: "non-zero bytes after the end of the log".into(),
                });
            }
        }
    }
    Ok(())
}

struct QueueFile {
    topic: String,
    queue_id: i32,
    start: u64,
    path: PathBuf,
}

/// Every ConsumeQueue file, by topic, queue and start; the queue directories are the ones
/// the store itself loads (other entries there are ignored by it, and here).
fn list_queue_files(root: &Path) -> Result<(Vec<QueueFile>, Vec<PathBuf>)> {
    let mut out = Vec::new();
    let mut other = Vec::new();
    for (topic, queue_id) in crate::queue::list_queues(root)? {
        let (files, rest) = files_of(&crate::queue::queue_dir(root, &topic, queue_id))?;
        other.extend(rest);
        out.extend(files.into_iter().map(|(start, path)| QueueFile {
            topic: topic.clone(),
            queue_id: queue_id as i32,
            start,
            path,
        }));
    }
    Ok((out, other))
}

fn check_queue_file(
    config: &StoreConfig,
    q: &QueueFile,
    topics: &HashMap<String, u32>,
    known: &HashMap<u64, Known>,
    report: &mut VerifyReport,
    seen: &mut HashSet<u64>,
) -> Result<()> {
    let bytes = read(&q.path)?;
    let derived = |offset: u64, what: String| Problem {
        path: q.path.clone(),
        offset,
        severity: Severity::Derived,
        what,
    };
    if bytes.len() as u64 != config.mapped_file_size_consume_queue {
        report.problems.push(derived(
            0,
            format!(
                "{} bytes, expected {}",
                bytes.len(),
                config.mapped_file_size_consume_queue
            ),
        ));
        return Ok(());
    }
    let topic = topics.get(&q.topic).copied();
    let mut problems = 0u32;
    for (i, chunk) in bytes.chunks_exact(CQ_UNIT_SIZE as usize).enumerate() {
        let Some(unit) = CqUnit::decode(chunk) else {
            break;
        };
        if unit.is_zero() {
            break;
        }
        report.queue_units += 1;
        if unit.is_filler() {
            continue;
        }
        let pos = i as u64 * CQ_UNIT_SIZE;
        let queue_offset = (q.start + pos) / CQ_UNIT_SIZE;
        let at = unit.physical_offset;
        let Ok(at) = u64::try_from(at) else {
            report
                .problems
                .push(derived(pos, format!("negative CommitLog offset {at}")));
            problems += 1;
            continue;
        };
        if at < report.min_offset {
            continue; // deleted by cleanup: fine
        }
        let wrong = match known.get(&at) {
            None if at >= report.valid_end => Some(format!(
                "points at {at}, past the end of the log ({})",
                report.valid_end
            )),
            None => Some(format!("points at {at}, where no record starts")),
            Some(k) => {
                let mismatch = Some(k.topic) != topic
                    || k.queue_id != q.queue_id
                    || k.queue_offset != queue_offset as i64
                    || i64::from(k.size) != i64::from(unit.size)
                    || k.tags_code != unit.tags_code;
                if !mismatch {
                    seen.insert(at);
                }
                mismatch.then(|| format!("does not match the record at {at} (topic, queue, offset {queue_offset}, size or tags)"))
            }
        };
        if let Some(what) = wrong {
            problems += 1;
            if problems <= 3 {
                report
                    .problems
                    .push(derived(pos, format!("unit {queue_offset} {what}")));
            }
        }
    }
    if problems > 3 {
        report.problems.push(derived(
            0,
            format!("{} more bad units in this file", problems - 3),
        ));
    }
    Ok(())
}

fn check_index_file(
    config: &StoreConfig,
    path: &Path,
    known: &HashMap<u64, Known>,
    log_min: u64,
    log_end: u64,
    report: &mut VerifyReport,
) -> Result<()> {
    let bytes = read(path)?;
    let slots = config.max_hash_slot_num;
    let items = config.max_index_num;
    let derived = |offset: u64, what: String| Problem {
        path: path.to_owned(),
        offset,
        severity: Severity::Derived,
        what,
    };
    if bytes.len() as u64 != format::index_file_size(slots, items) {
        report.problems.push(derived(
            0,
            format!(
                "{} bytes, expected {}",
                bytes.len(),
                format::index_file_size(slots, items)
            ),
        ));
        return Ok(());
    }
    let Some(header) = IndexHeader::decode(&bytes) else {
        report.problems.push(derived(0, "unreadable header".into()));
        return Ok(());
    };
    let count = match u32::try_from(header.index_count) {
        Ok(c) if c <= items.saturating_add(1) => c,
        _ => {
            report.problems.push(derived(
                0,
                format!("header says {} items", header.index_count),
            ));
            return Ok(());
        }
    };
    let mut problems = 0u32;
    let mut note = |report: &mut VerifyReport, pos: u64, what: String| {
        problems += 1;
        if problems <= 3 {
            report.problems.push(derived(pos, what));
        }
    };
    let slot_of = |hash: i32| hash.cast_unsigned() % slots.max(1);
    let item_at = |n: u32| {
        let pos = format::index_item_pos(slots, n) as usize;
        bytes
            .get(pos..pos + INDEX_ITEM_SIZE as usize)
            .and_then(IndexItem::decode)
    };
    for slot in 0..slots {
        let pos = format::index_slot_pos(slot);
        let Some(raw) = bytes.get(pos as usize..(pos + INDEX_SLOT_SIZE) as usize) else {
            break;
        };
        let v = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let head_ok = match u32::try_from(v) {
            Ok(0) => true,
            Ok(n) if n < count => item_at(n).is_some_and(|i| slot_of(i.key_hash) == slot),
            _ => false,
        };
        if !head_ok {
            note(
                report,
                pos,
                format!("slot {slot} points at item {v} of {count}, not one of its keys"),
            );
        }
    }
    for item_no in 1..count {
        let pos = format::index_item_pos(slots, item_no);
        let Some(item) = bytes
            .get(pos as usize..(pos + INDEX_ITEM_SIZE) as usize)
            .and_then(IndexItem::decode)
        else {
            break;
        };
        report.index_items += 1;
        let prev_ok = match u32::try_from(item.prev_index) {
            Ok(0) => true,
            Ok(p) if p < item_no => {
                item_at(p).is_some_and(|prev| slot_of(prev.key_hash) == slot_of(item.key_hash))
            }
            _ => false,
        };
        if !prev_ok {
            note(
                report,
                pos,
                format!(
                    "item {item_no} chains to item {}, not one of its slot",
                    item.prev_index
                ),
            );
        }
        let Ok(at) = u64::try_from(item.phy_offset) else {
            note(report, pos, format!("item {item_no}: negative offset"));
            continue;
        };
        if at < log_min {
            continue;
        }
        match known.get(&at) {
            None if at >= log_end => note(
                report,
                pos,
                format!("item {item_no} points past the end of the log ({at})"),
            ),
            None => note(
                report,
                pos,
                format!("item {item_no} points at {at}, where no record starts"),
            ),
            Some(k) if !k.key_hashes.contains(&item.key_hash) => {
                note(
                    report,
                    pos,
                    format!("item {item_no}: the record at {at} has no key with this hash"),
                );
            }
            Some(k)
                if item.time_diff
                    != format::index_time_diff(header.begin_timestamp, k.store_timestamp) =>
            {
                note(
                    report,
                    pos,
                    format!(
                        "item {item_no}: time offset {} does not match the record at {at}",
                        item.time_diff
                    ),
                );
            }
            Some(_) => {}
        }
    }
    if problems > 3 {
        report.problems.push(derived(
            0,
            format!("{} more bad index entries in this file", problems - 3),
        ));
    }
    Ok(())
}

/// Repairs a stopped store: cuts a torn CommitLog tail (or, with
/// [`RepairOptions::discard_after_corruption`], damage anywhere), then rebuilds the
/// ConsumeQueues, index and checkpoints from the CommitLog by opening the store once.
/// Removed bytes and the old derived files are saved under `<root>/repair-<unix ms>/`.
///
/// # Errors
/// [`Error::Corrupted`] when the damage needs `discard_after_corruption` and it is off
/// (nothing is changed then); [`Error::Locked`]; I/O errors.
pub fn repair_store(
    config: &StoreConfig,
    options: RepairOptions,
    progress: &mut ProgressFn<'_>,
) -> Result<RepairReport> {
    let lock_file = lock(&config.store_path_root_dir)?;
    let before = verify_unlocked(config, progress)?;
    let mut out = RepairReport {
        before: before.clone(),
        ..RepairReport::default()
    };
    let cut_to = match options.truncate_at {
        Some(at) => Some(truncation_point(config, &before, at)?),
        None => None,
    };
    if before.problems.is_empty() && cut_to.is_none() {
        out.after = before;
        return Ok(out);
    }
    if let Some(p) = before
        .problems
        .iter()
        .find(|p| p.severity == Severity::Corrupt)
    {
        if !options.discard_after_corruption {
            return Err(Error::Corrupted {
                path: p.path.clone(),
                offset: p.offset,
                kind: crate::error::CorruptionKind::NeedsDiscard(p.what.clone()),
            });
        }
    }
    let root = &config.store_path_root_dir;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let backup = root.join(format!("repair-{millis}"));
    fs::create_dir_all(&backup).map_err(|e| Error::io("create directory", &backup, e))?;
    out.backup_dir = Some(backup.clone());
    // The CommitLog: cut at the end of the valid data when anything follows it.
    let log_trouble = before
        .problems
        .iter()
        .any(|p| p.severity != Severity::Derived && p.path.starts_with(config.commit_log_dir()));
    if let Some(at) = cut_to {
        cut_log(config, at, &backup.join("commitlog"))?;
        out.cut_at = Some(at);
    } else if log_trouble {
        cut_log(config, before.valid_end, &backup.join("commitlog"))?;
        out.cut_at = Some(before.valid_end);
    }
    // Derived files and checkpoints: moved aside, rebuilt by recovery from the CommitLog.
    for (from, name) in [
        (config.consume_queue_dir(), "consumequeue"),
        (config.index_dir(), "index"),
        (root.join(OFFSET_CHECKPOINT_FILE), OFFSET_CHECKPOINT_FILE),
        (root.join("checkpoint"), "checkpoint"),
    ] {
        if from.exists() {
            let to = backup.join(name);
            fs::rename(&from, &to).map_err(|e| Error::io("move aside", &from, e))?;
        }
    }
    crate::file::mmap::sync_dir(root, &crate::fault::FaultInjector::default())?;
    drop(lock_file);
    let store = crate::MessageStore::open(config.clone())?;
    store.shutdown()?;
    out.after = verify_store(config, progress)?;
    Ok(out)
}

/// Checks that `at` is where a record (or a file) starts, at or below the end of valid data.
fn truncation_point(config: &StoreConfig, report: &VerifyReport, at: u64) -> Result<u64> {
    let refuse = |why: String| Err(Error::config("truncate_at", why));
    if at > report.valid_end {
        return refuse(format!(
            "offset {at} is past the end of valid data ({})",
            report.valid_end
        ));
    }
    if at < report.min_offset {
        return refuse(format!(
            "offset {at} is below the first offset on disk ({})",
            report.min_offset
        ));
    }
    let size = config.mapped_file_size_commit_log;
    let start = at - at % size;
    if at == start || at == report.valid_end {
        return Ok(at);
    }
    let path = config.commit_log_dir().join(format!("{start:020}"));
    let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let target = (at - start) as usize;
    let mut pos = 0usize;
    while pos < target {
        match crate::format::decode_record(&bytes[pos..], false) {
            Ok(crate::format::Decoded::Message(v)) => pos += v.total_size as usize,
            _ => break,
        }
    }
    if pos == target {
        Ok(at)
    } else {
        refuse(format!("offset {at} is not where a record starts"))
    }
}

/// Saves `[end, …)` of the CommitLog under `backup`, zeroes it in the file holding `end`
/// and removes the later files.
fn cut_log(config: &StoreConfig, end: u64, backup: &Path) -> Result<()> {
    let size = config.mapped_file_size_commit_log;
    let dir = config.commit_log_dir();
    fs::create_dir_all(backup).map_err(|e| Error::io("create directory", backup, e))?;
    let (files, _) = files_of(&dir)?;
    for (start, path) in files {
        if start + size <= end {
            continue;
        }
        let name = path.file_name().map(ToOwned::to_owned).unwrap_or_default();
        fs::copy(&path, backup.join(&name)).map_err(|e| Error::io("copy", &path, e))?;
        if start <= end && end < start + size {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            let from = end - start;
            let zeros = vec![0u8; (size - from) as usize];
            file.write_all_at(&zeros, from)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("zero", &path, e))?;
        } else {
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
    }
    crate::file::mmap::sync_dir(&dir, &crate::fault::FaultInjector::default())
}
