//! ConsumeQueues: per topic and queue id, fixed-size files of 20-byte units under
//! `consumequeue/{topic}/{queueId}/`, unit `n` at logical byte `n * 20`.
//!
//! A ConsumeQueue is derived from the CommitLog. While the store runs only the dispatcher
//! appends ([`ConsumeQueue::append`]); readers see units below the published position.
//! At open, [`OwnedQueue`] holds the files exclusively: it finds the structurally valid
//! prefix, and recovery then compares every unit it can against the CommitLog, rewriting or
//! appending what differs, before the queue is shared.

mod registry;
pub(crate) use registry::{unit_of, ConsumeQueues};

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{CorruptionKind, Error, Result};
use crate::fault::FaultInjector;
use crate::file::mapped_file_queue::{self, MappedFileQueue};
use crate::file::mmap::{self, CreateOptions, MappedFile, SegmentWriter};
use crate::format::{CqUnit, CQ_UNIT_SIZE, MIN_RECORD_LEN};

/// Where a queue's files live.
pub(crate) fn queue_dir(root: &Path, topic: &str, queue_id: u32) -> PathBuf {
    root.join(topic).join(queue_id.to_string())
}

fn create_file(dir: &Path, start: u64, size: u64, faults: &FaultInjector) -> Result<MappedFile> {
    mmap::create_dir_durable(dir, faults)?;
    let never = AtomicBool::new(false);
    MappedFile::create(dir, start, size, CreateOptions::default(), faults, &never)
}

/// A shared ConsumeQueue.
#[derive(Debug)]
pub(crate) struct ConsumeQueue {
    topic: String,
    queue_id: u32,
    dir: PathBuf,
    file_size: u64,
    files: MappedFileQueue,
    /// The one appender (the dispatcher); `None` until the first file exists or while the
    /// last file is full.
    writer: Mutex<Option<SegmentWriter>>,
    /// First valid queue offset (units below it are fillers or point below the CommitLog
    /// minimum).
    min_offset: AtomicU64,
    /// CommitLog end of the last unit (RocketMQ `maxPhysicOffset`), for idempotent writes.
    max_physical_end: AtomicU64,
}

impl ConsumeQueue {
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// One past the last unit.
    pub(crate) fn max_offset(&self) -> u64 {
        self.files.max_offset() / CQ_UNIT_SIZE
    }

    /// First readable queue offset.
    pub(crate) fn min_offset(&self) -> u64 {
        self.min_offset.load(Ordering::Acquire)
    }

    pub(crate) fn max_physical_end(&self) -> u64 {
        self.max_physical_end.load(Ordering::Acquire)
    }

    /// Units per file.
    pub(crate) fn units_per_file(&self) -> u64 {
        self.file_size / CQ_UNIT_SIZE
    }

    /// The unit at `offset`, if published.
    pub(crate) fn unit(&self, offset: u64) -> Option<CqUnit> {
        let byte = offset.checked_mul(CQ_UNIT_SIZE)?;
        let file = self.files.find(byte)?;
        CqUnit::decode(file.readable_from(byte - file.start_offset()))
    }

    /// The file holding `offset` and the position of its unit in it; read the published
    /// units with `file.readable_from(pos)`. A pull never crosses a file.
    pub(crate) fn units_from(&self, offset: u64) -> Option<(Arc<MappedFile>, u64)> {
        let byte = offset.checked_mul(CQ_UNIT_SIZE)?;
        let file = self.files.find(byte)?;
        let pos = byte - file.start_offset();
        Some((file, pos))
    }

    /// The file path holding `offset` (for error messages).
    pub(crate) fn path_of(&self, offset: u64) -> PathBuf {
        self.units_from(offset)
            .map_or_else(|| self.dir.clone(), |(f, _)| f.path().to_owned())
    }

    /// Writes the unit of queue offset `offset` (dispatcher only). A unit already present
    /// (offset below the end, or a record already covered) is skipped; a missing range before
    /// it is filled with filler units so that offsets and positions stay equal.
    pub(crate) fn append(&self, offset: u64, unit: CqUnit, faults: &FaultInjector) -> Result<()> {
        if unit.end() <= self.max_physical_end() {
            return Ok(());
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut end = self.max_offset();
        if offset < end {
            return Ok(());
        }
        if end == 0 && self.files.file_count() == 0 && offset > 0 {
            // First unit of a queue whose earlier offsets no longer exist: start at
            // the file holding it and pre-fill up to it.
            end = offset - offset % self.units_per_file();
            self.min_offset.store(offset, Ordering::Release);
        } else if offset > end {
            tracing::warn!(topic = %self.topic, queue_id = self.queue_id, expected = end, got = offset, "consume queue hole filled");
        }
        while end <= offset {
            let value = if end == offset { unit } else { CqUnit::FILLER };
            let w = self.writable(&mut writer, end, faults)?;
            w.append(CQ_UNIT_SIZE as usize, |buf| {
                buf.copy_from_slice(&value.encode());
            });
            if w.remaining() == 0 {
                *writer = None;
            }
            end += 1;
        }
        self.max_physical_end
            .fetch_max(unit.end(), Ordering::AcqRel);
        Ok(())
    }

    /// The writer positioned at unit `at`, rolling to a new file when needed.
    fn writable<'w>(
        &self,
        writer: &'w mut Option<SegmentWriter>,
        at: u64,
        faults: &FaultInjector,
    ) -> Result<&'w mut SegmentWriter> {
        if writer.is_none() {
            let byte = at * CQ_UNIT_SIZE;
            debug_assert_eq!(
                byte % self.file_size,
                0,
                "a new file starts at a file boundary"
            );
            let file = create_file(&self.dir, byte, self.file_size, faults)?;
            let (file, w) = file.into_shared();
            self.files.push(file);
            *writer = Some(w);
        }
        writer
            .as_mut()
            .ok_or_else(|| Error::io("append", &self.dir, std::io::ErrorKind::Other.into()))
    }

    /// Raises the min offset past units that point below the CommitLog minimum (and
    /// fillers), as RocketMQ's `correctMinOffset` does after cleanup. Returns the new
    /// minimum. Units are in CommitLog order, so the walk stops at the first kept unit.
    pub(crate) fn correct_min_offset(&self, log_min: u64) -> u64 {
        let min = first_kept(self.min_offset(), self.max_offset(), log_min, |o| {
            self.unit(o)
        });
        self.min_offset.fetch_max(min, Ordering::AcqRel).max(min)
    }

    /// Every file, oldest first.
    pub(crate) fn files(&self) -> Vec<Arc<MappedFile>> {
        self.files.all()
    }

    /// The queue's files, for cleanup to take the oldest.
    pub(crate) fn file_queue(&self) -> &MappedFileQueue {
        &self.files
    }

    /// Walks every published unit by the open's rule (the background check after a clean
    /// reopen, which left the middle files unread): the queue offset and problem of the
    /// first unit that breaks it.
    pub(crate) fn check_units(&self, max_record: u64) -> Option<(u64, UnitProblem)> {
        let files = self.files();
        let first = files.first()?;
        let mut walk = UnitWalk::new(first.start_offset() / CQ_UNIT_SIZE, max_record);
        for (i, file) in files.iter().enumerate() {
            match walk.file(file.readable_from(0)) {
                FileEnd::Full => {}
                // Files before the last were full when the next one was created.
                FileEnd::Stopped if i + 1 < files.len() => {
                    return Some((walk.at, UnitProblem::DataAfterHole));
                }
                FileEnd::Stopped => return None,
                FileEnd::Problem(p) => return Some((walk.at, p)),
            }
        }
        None
    }

    /// The last unit of a full file (`None` while the file is still being written).
    pub(crate) fn last_unit(file: &MappedFile) -> Option<CqUnit> {
        if !file.is_full() {
            return None;
        }
        let bytes = file.readable_from(file.size().checked_sub(CQ_UNIT_SIZE)?);
        CqUnit::decode(bytes)
    }

    /// Flushes every file with unflushed units.
    pub(crate) fn flush(&self) -> Result<()> {
        for file in self.files.files_from(0) {
            if file.flushed() < file.wrote() {
                file.flush(0)?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn file_count(&self) -> usize {
        self.files.file_count()
    }
}

/// Why the structural scan of a queue stopped before its zero tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnitProblem {
    /// A unit that cannot be right: negative offset, impossible size, or not after the
    /// previous unit.
    Invalid(CqUnit),
    /// Units after a zero (unwritten) unit: a lost page in the middle.
    DataAfterHole,
}

/// The rule for a queue's units, walked file by file from its first unit: fillers
/// anywhere (before the first real unit they stand for removed offsets), real units in
/// increasing, non-overlapping CommitLog order with a possible size, up to the first zero
/// unit. Opening and the background check of a clean reopen both walk by it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnitWalk {
    /// Position of the next unit.
    pub at: u64,
    /// First position after the leading fillers.
    pub min: u64,
    /// CommitLog end of the last real unit.
    pub prev_end: Option<u64>,
    max_record: u64,
}

/// How a file's units ended.
#[derive(Debug)]
pub(crate) enum FileEnd {
    /// Every unit of the file was walked (or it was trusted): go on with the next file.
    Full,
    /// A zero (or short) unit: the queue ends here.
    Stopped,
    /// A unit that breaks the rule.
    Problem(UnitProblem),
}

impl UnitWalk {
    pub(crate) fn new(first: u64, max_record: u64) -> Self {
        UnitWalk {
            at: first,
            min: first,
            prev_end: None,
            max_record,
        }
    }

    fn possible(&self, u: &CqUnit) -> bool {
        u.physical_offset >= 0
            && u.size >= MIN_RECORD_LEN as i32
            && (u.size as u64) <= self.max_record
            && self.prev_end.is_none_or(|e| u.physical_offset as u64 >= e)
    }

    /// Walks one file's units (`bytes`: the file from its start).
    pub(crate) fn file(&mut self, bytes: &[u8]) -> FileEnd {
        let mut walked = 0usize;
        for chunk in bytes.chunks_exact(CQ_UNIT_SIZE as usize) {
            let Some(u) = CqUnit::decode(chunk) else {
                return FileEnd::Stopped;
            };
            if u.is_zero() {
                return FileEnd::Stopped;
            }
            walked += 1;
            if u.is_filler() {
                self.at += 1;
                if self.prev_end.is_none() {
                    self.min = self.at;
                }
                continue;
            }
            if !self.possible(&u) {
                return FileEnd::Problem(UnitProblem::Invalid(u));
            }
            self.prev_end = Some(u.end());
            self.at += 1;
        }
        if walked * (CQ_UNIT_SIZE as usize) < bytes.len() || bytes.is_empty() {
            return FileEnd::Stopped;
        }
        FileEnd::Full
    }

    /// Steps over a full file of `per_file` units, reading only its last one.
    pub(crate) fn skip_to_last_unit(&mut self, bytes: &[u8], per_file: u64) -> FileEnd {
        let last = (per_file as usize)
            .checked_sub(1)
            .map(|i| i * CQ_UNIT_SIZE as usize)
            .and_then(|at| bytes.get(at..))
            .and_then(CqUnit::decode);
        // Not full after all, or still before the first real unit (leading fillers set
        // the queue's minimum): walk it unit by unit.
        let Some(u) = last.filter(|u| !u.is_zero() && self.prev_end.is_some()) else {
            return self.file(bytes);
        };
        if !u.is_filler() {
            if !self.possible(&u) {
                return FileEnd::Problem(UnitProblem::Invalid(u));
            }
            self.prev_end = Some(u.end());
        }
        self.at += per_file;
        FileEnd::Full
    }
}

/// A queue's files held exclusively during recovery.
#[derive(Debug)]
pub(crate) struct OwnedQueue {
    pub(crate) topic: String,
    pub(crate) queue_id: u32,
    dir: PathBuf,
    file_size: u64,
    files: Vec<MappedFile>,
    /// Units in the queue (logical end), as positions: includes fillers.
    end: u64,
    /// First queue offset (first unit of the first file, or after fillers).
    min_offset: u64,
    /// CommitLog end of the last real unit.
    max_physical_end: u64,
    /// Files whose bytes changed since they were opened.
    dirty: Vec<bool>,
    faults: FaultInjector,
}

impl OwnedQueue {
    /// CommitLog end of the queue's last unit (after `scan`).
    pub(crate) fn last_unit_end(&self) -> u64 {
        self.max_physical_end
    }

    /// An empty queue (no files yet).
    pub(crate) fn empty(
        root: &Path,
        topic: &str,
        queue_id: u32,
        file_size: u64,
        faults: &FaultInjector,
    ) -> OwnedQueue {
        OwnedQueue {
            topic: topic.to_owned(),
            queue_id,
            dir: queue_dir(root, topic, queue_id),
            file_size,
            files: Vec::new(),
            end: 0,
            min_offset: 0,
            max_physical_end: 0,
            dirty: Vec::new(),
            faults: faults.clone(),
        }
    }

    /// Opens the files of one queue directory. A broken file set (wrong size, gap in the
    /// names) is derived data gone bad: the files are removed and the queue starts empty,
    /// to be rebuilt from the CommitLog; the second value says so.
    pub(crate) fn load(
        root: &Path,
        topic: &str,
        queue_id: u32,
        file_size: u64,
        faults: &FaultInjector,
    ) -> Result<(OwnedQueue, Option<CorruptionKind>)> {
        let mut q = Self::empty(root, topic, queue_id, file_size, faults);
        match mapped_file_queue::load_dir(&q.dir, file_size, faults) {
            Ok(files) => {
                q.dirty = vec![false; files.len()];
                q.files = files;
                Ok((q, None))
            }
            Err(Error::Corrupted { kind, .. }) if kind != CorruptionKind::ForeignFile => {
                tracing::warn!(dir = %q.dir.display(), problem = %kind, "consume queue files unusable; rebuilding the queue");
                remove_queue_files(&q.dir, faults)?;
                Ok((q, Some(kind)))
            }
            Err(e) => Err(e),
        }
    }

    /// Finds the valid prefix: units up to the first zero unit, each structurally possible
    /// (fillers anywhere, real units in increasing, non-overlapping CommitLog order with a
    /// possible size). Cuts everything after it. Returns the problem
    /// that ended the prefix early, if any. `thorough` (after an abnormal exit) also looks
    /// for units left past a hole by lost writes and zeroes them.
    pub(crate) fn scan(
        &mut self,
        max_record: u64,
        thorough: bool,
        trust_middle_files: bool,
    ) -> Result<Option<UnitProblem>> {
        let Some(first) = self.files.first() else {
            return Ok(None);
        };
        let mut walk = UnitWalk::new(first.start_offset() / CQ_UNIT_SIZE, max_record);
        let per_file = self.file_size / CQ_UNIT_SIZE;
        let count = self.files.len();
        let mut problem = None;
        for (i, file) in self.files.iter().enumerate() {
            let bytes = file.readable_from(0);
            // A clean reopen trusts what lies between a queue's first and last file (a
            // background pass checks it by the same rule): only the last unit is read,
            // so opening does not cost O(units).
            let trusted = trust_middle_files && i > 0 && i + 1 < count;
            let ended = if trusted {
                walk.skip_to_last_unit(bytes, per_file)
            } else {
                walk.file(bytes)
            };
            match ended {
                FileEnd::Full => {}
                FileEnd::Stopped => break,
                FileEnd::Problem(p) => {
                    problem = Some(p);
                    break;
                }
            }
        }
        let UnitWalk {
            at, min, prev_end, ..
        } = walk;
        let stale = thorough && self.has_data_from(at);
        if problem.is_none() && stale {
            problem = Some(UnitProblem::DataAfterHole);
        }
        self.min_offset = min;
        self.max_physical_end = prev_end.unwrap_or(0);
        self.end = self.files.first().map_or(0, |_| at);
        if problem.is_some() {
            self.truncate(at)?;
        } else {
            self.set_end(at)?;
        }
        Ok(problem)
    }

    /// Makes `offset` the end without zeroing (the bytes after it are known to be zero):
    /// publishes the holding file up to it and removes (empty) files after it.
    fn set_end(&mut self, offset: u64) -> Result<()> {
        let byte = offset * CQ_UNIT_SIZE;
        let keep = match self.file_index(byte) {
            Some(i) => i + 1,
            None => self.files.len(),
        };
        if keep < self.files.len() {
            for file in self.files.drain(keep..) {
                file.remove()?;
            }
            self.dirty.truncate(keep);
            mmap::sync_dir(&self.dir, &self.faults)?;
        }
        if let Some(i) = self.file_index(byte) {
            let file = &mut self.files[i];
            let pos = byte - file.start_offset();
            file.set_wrote(pos);
        }
        Ok(())
    }

    fn has_data_from(&self, at: u64) -> bool {
        let byte = at * CQ_UNIT_SIZE;
        self.files.iter().any(|f| {
            let start = f.start_offset();
            let from = byte.saturating_sub(start);
            f.start_offset() + f.size() > byte && f.readable_from(from).iter().any(|&b| b != 0)
        })
    }

    /// One past the last unit.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// CommitLog end of the last real unit.
    #[cfg(test)]
    pub(crate) fn max_physical_end(&self) -> u64 {
        self.max_physical_end
    }

    /// The unit at `offset`, if below the end.
    pub(crate) fn unit(&self, offset: u64) -> Option<CqUnit> {
        if offset >= self.end {
            return None;
        }
        let byte = offset * CQ_UNIT_SIZE;
        let file = self.file_index(byte).map(|i| &self.files[i])?;
        CqUnit::decode(file.readable_from(byte - file.start_offset()))
    }

    fn file_index(&self, byte: u64) -> Option<usize> {
        let first = self.files.first()?.start_offset();
        let i = usize::try_from(byte.checked_sub(first)? / self.file_size).ok()?;
        (i < self.files.len()).then_some(i)
    }

    /// Cuts the queue so that `offset` is its end: zeroes the rest of the file holding it
    /// and removes later files.
    pub(crate) fn truncate(&mut self, offset: u64) -> Result<()> {
        let byte = offset * CQ_UNIT_SIZE;
        let keep = match self.file_index(byte) {
            Some(i) => i + 1,
            None if self.files.first().is_some_and(|f| byte < f.start_offset()) => 0,
            None => self.files.len(),
        };
        let mut removed = false;
        for file in self.files.drain(keep..) {
            file.remove()?;
            removed = true;
        }
        self.dirty.truncate(keep);
        if removed {
            mmap::sync_dir(&self.dir, &self.faults)?;
        }
        if let Some(i) = self.file_index(byte) {
            let file = &mut self.files[i];
            let pos = byte - file.start_offset();
            file.zero_from(pos)?;
            file.set_wrote(pos);
        }
        self.end = offset.min(self.end);
        if self.files.is_empty() {
            self.end = 0;
            self.min_offset = 0;
            self.max_physical_end = 0;
        }
        Ok(())
    }

    /// Writes the unit of `offset` during recovery: rewrites a differing unit below the end
    /// (cutting everything after it), appends at the end, and pre-fills a missing range
    /// with fillers. Returns whether anything changed.
    pub(crate) fn put(
        &mut self,
        offset: u64,
        unit: CqUnit,
        faults: &FaultInjector,
    ) -> Result<bool> {
        if offset < self.end {
            if self.unit(offset) == Some(unit) {
                return Ok(false);
            }
            self.truncate(offset)?;
        }
        if self.files.is_empty() && offset > 0 {
            let per_file = self.file_size / CQ_UNIT_SIZE;
            self.end = offset - offset % per_file;
            self.min_offset = offset;
        }
        while self.end <= offset {
            let value = if self.end == offset {
                unit
            } else {
                CqUnit::FILLER
            };
            let byte = self.end * CQ_UNIT_SIZE;
            let i = if let Some(i) = self.file_index(byte) {
                i
            } else {
                let start = byte - byte % self.file_size;
                self.files
                    .push(create_file(&self.dir, start, self.file_size, faults)?);
                self.dirty.push(true);
                self.files.len() - 1
            };
            let file = &mut self.files[i];
            let pos = (byte - file.start_offset()) as usize;
            file.bytes_mut()[pos..pos + CQ_UNIT_SIZE as usize].copy_from_slice(&value.encode());
            file.set_wrote(pos as u64 + CQ_UNIT_SIZE);
            self.dirty[i] = true;
            self.end += 1;
        }
        self.max_physical_end = self.max_physical_end.max(unit.end());
        Ok(true)
    }

    /// Cuts units pointing at or past `log_end` (records that no longer exist).
    pub(crate) fn cut_beyond(&mut self, log_end: u64) -> Result<bool> {
        let mut keep = self.end;
        while keep > self.min_offset {
            match self.unit(keep - 1) {
                Some(u) if !u.is_filler() && u.end() > log_end => keep -= 1,
                _ => break,
            }
        }
        if keep == self.end {
            return Ok(false);
        }
        self.truncate(keep)?;
        self.max_physical_end = self
            .unit(keep.saturating_sub(1))
            .filter(|u| !u.is_filler())
            .map_or(0, |u| u.end());
        Ok(true)
    }

    /// Replaces units pointing into `[from, to)` (a corrupt stretch skipped by
    /// `TolerateAnyCorruption`) with fillers, so their offsets read as removed. Returns how
    /// many were replaced.
    pub(crate) fn fill_gap(&mut self, from: u64, to: u64) -> u64 {
        let mut replaced = 0;
        for offset in self.min_offset..self.end {
            let Some(u) = self.unit(offset) else { break };
            let phys = u.physical_offset as u64;
            if u.is_filler() || phys < from || phys >= to {
                continue;
            }
            let byte = offset * CQ_UNIT_SIZE;
            if let Some(i) = self.file_index(byte) {
                let file = &mut self.files[i];
                let pos = (byte - file.start_offset()) as usize;
                file.bytes_mut()[pos..pos + CQ_UNIT_SIZE as usize]
                    .copy_from_slice(&CqUnit::FILLER.encode());
                self.dirty[i] = true;
                replaced += 1;
            }
        }
        replaced
    }

    /// Raises the min offset past units that point below the CommitLog minimum
    /// (RocketMQ `correctMinOffset`).
    pub(crate) fn correct_min_offset(&mut self, log_min: u64) {
        self.min_offset = first_kept(self.min_offset, self.end, log_min, |o| self.unit(o));
    }

    /// Flushes what recovery changed and shares the queue.
    pub(crate) fn into_shared(self) -> Result<ConsumeQueue> {
        let mut shared = Vec::with_capacity(self.files.len());
        let mut writer = None;
        let count = self.files.len();
        for (i, file) in self.files.into_iter().enumerate() {
            if self.dirty.get(i).copied().unwrap_or(false) {
                file.flush_all()?;
            }
            let (file, w) = file.into_shared();
            if i + 1 == count && !file.is_full() {
                writer = Some(w);
            }
            shared.push(file);
        }
        Ok(ConsumeQueue {
            topic: self.topic,
            queue_id: self.queue_id,
            dir: self.dir,
            file_size: self.file_size,
            files: MappedFileQueue::new(self.file_size, shared),
            writer: Mutex::new(writer),
            min_offset: AtomicU64::new(self.min_offset),
            max_physical_end: AtomicU64::new(self.max_physical_end),
        })
    }
}

/// The first queue offset in `[from, end)` whose unit is real and points at or above
/// `log_min` (units are in CommitLog order, so the walk stops there); `end` if none.
fn first_kept(from: u64, end: u64, log_min: u64, unit: impl Fn(u64) -> Option<CqUnit>) -> u64 {
    let mut at = from;
    while at < end {
        match unit(at) {
            Some(u) if u.is_filler() || (u.physical_offset as u64) < log_min => at += 1,
            _ => break,
        }
    }
    at
}

fn remove_queue_files(dir: &Path, faults: &FaultInjector) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let path = entry.path();
        crate::fault::remove_file(faults, &path).map_err(|e| Error::io("remove", &path, e))?;
    }
    mmap::sync_dir(dir, faults)
}

/// The file in `consumequeue/<topic>/` that records a deleted topic: the CommitLog offset
/// below which none of the topic's records enters a queue again (RocketMQ skips the
/// non-numeric name, as it skips every entry that is not a queue id).
const TOMBSTONE: &str = "deleted-before";

/// Records, durably, that `topic`'s records below CommitLog offset `before` belong to a
/// deleted topic: recovery and verify leave them out of the queues from now on.
pub(crate) fn write_tombstone(
    root: &Path,
    topic: &str,
    before: u64,
    faults: &FaultInjector,
) -> Result<()> {
    let dir = root.join(topic);
    mmap::create_dir_durable(&dir, faults)?;
    let path = dir.join(TOMBSTONE);
    let tmp = dir.join(format!("{TOMBSTONE}.tmp"));
    let write = || -> std::io::Result<()> {
        crate::fault::guarded(faults, crate::fault::IoOp::Write, || {
            fs::write(&tmp, before.to_string())
        })?;
        crate::fault::guarded(faults, crate::fault::IoOp::Flush, || {
            fs::File::open(&tmp)?.sync_all()
        })?;
        crate::fault::rename(faults, &tmp, &path)
    };
    write().map_err(|e| Error::io("write", &path, e))?;
    mmap::sync_dir(&dir, faults)
}

/// The deleted topics under `root` and the CommitLog offset each was deleted at. A
/// tombstone that does not parse is reported as corrupt: guessing could bring back a
/// deleted queue or hide a live one.
pub(crate) fn load_tombstones(root: &Path) -> Result<std::collections::HashMap<String, u64>> {
    let mut out = std::collections::HashMap::new();
    let Ok(topics) = fs::read_dir(root) else {
        return Ok(out);
    };
    for topic in topics {
        let topic = topic.map_err(|e| Error::io("read directory", root, e))?;
        let path = topic.path().join(TOMBSTONE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // Not a directory (a stray file in consumequeue/): nothing recorded there.
            Err(_) if !topic.path().is_dir() => continue,
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let before = text.trim().parse::<u64>().map_err(|_| Error::Corrupted {
            path: path.clone(),
            offset: 0,
            kind: CorruptionKind::BadTombstone(text.trim().to_owned()),
        })?;
        if let Some(name) = topic.file_name().to_str() {
            out.insert(name.to_owned(), before);
        }
    }
    Ok(out)
}

/// Whether the record at CommitLog offset `phys` of `topic` belongs to a deleted topic
/// (below its tombstone) and so enters no queue.
pub(crate) fn is_deleted(
    tombstones: &std::collections::HashMap<String, u64>,
    topic: &str,
    phys: u64,
) -> bool {
    tombstones.get(topic).is_some_and(|&before| phys < before)
}

/// Lists `(topic, queue_id)` of every queue directory under `root`
/// (`consumequeue/<topic>/<numeric dir>`); other entries are ignored, as RocketMQ does.
pub(crate) fn list_queues(root: &Path) -> Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    let Ok(topics) = fs::read_dir(root) else {
        return Ok(out);
    };
    for topic in topics {
        let topic = topic.map_err(|e| Error::io("read directory", root, e))?;
        let path = topic.path();
        if !path.is_dir() {
            continue;
        }
        let Some(name) = topic.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let queues = fs::read_dir(&path).map_err(|e| Error::io("read directory", &path, e))?;
        for q in queues {
            let q = q.map_err(|e| Error::io("read directory", &path, e))?;
            let id = q.file_name().to_str().and_then(|s| s.parse::<u32>().ok());
            if let (Some(id), true) = (id, q.path().is_dir()) {
                out.push((name.clone(), id));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// How many of a ConsumeQueue's files (oldest first; `last_units[i]` is the last unit of
/// file `i`, `None` while it is not full) lie wholly below the CommitLog minimum.
/// Never the last file.
pub(crate) fn files_to_remove(last_units: &[Option<CqUnit>], log_min: u64) -> usize {
    let candidates = last_units.len().saturating_sub(1);
    last_units
        .iter()
        .take(candidates)
        .take_while(|u| u.is_some_and(|u| u.is_filler() || (u.physical_offset as u64) < log_min))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(offset: i64) -> CqUnit {
        CqUnit {
            physical_offset: offset,
            size: 100,
            tags_code: 7,
        }
    }

    #[test]
    fn owned_queue_appends_rolls_reloads_and_cuts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = FaultInjector::default();
        let size = 5 * CQ_UNIT_SIZE;
        let (mut q, problem) = OwnedQueue::load(dir.path(), "t", 0, size, &faults).expect("load");
        assert_eq!(problem, None);
        assert_eq!(q.scan(1000, true, false).expect("scan"), None);
        for i in 0..12u64 {
            assert!(q.put(i, unit(i as i64 * 100), &faults).expect("put"));
        }
        assert!(!q.put(3, unit(300), &faults).expect("same unit"));
        assert_eq!(q.end(), 12);
        let shared = q.into_shared().expect("share");
        assert_eq!(shared.max_offset(), 12);
        assert_eq!(shared.file_count(), 3);
        shared.append(12, unit(1200), &faults).expect("append");
        shared
            .append(12, unit(1200), &faults)
            .expect("duplicate is skipped");
        assert_eq!(shared.max_offset(), 13);
        assert_eq!(shared.unit(12), Some(unit(1200)));
        drop(shared);

        let (mut q, _) = OwnedQueue::load(dir.path(), "t", 0, size, &faults).expect("reload");
        assert_eq!(q.scan(1000, true, false).expect("scan"), None);
        assert_eq!((q.end(), q.max_physical_end()), (13, 1300));
        assert!(q.cut_beyond(750).expect("cut"));
        assert_eq!(q.end(), 7);
        assert_eq!(q.max_physical_end(), 700);
        // A differing unit below the end is rewritten and everything after it cut.
        assert!(q.put(2, unit(250), &faults).expect("rewrite"));
        assert_eq!(q.end(), 3);
    }

    #[test]
    fn a_scan_trusting_middle_files_agrees_with_a_full_one_and_the_walk_finds_what_it_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = FaultInjector::default();
        let size = 5 * CQ_UNIT_SIZE;
        let (mut q, _) = OwnedQueue::load(dir.path(), "t", 3, size, &faults).expect("load");
        // Two leading fillers (removed offsets), then 20 real units over five files.
        for i in 2..22u64 {
            q.put(i, unit(i as i64 * 100), &faults).expect("put");
        }
        drop(q.into_shared().expect("share"));
        let mut seen = Vec::new();
        for trust in [false, true] {
            let (mut q, _) = OwnedQueue::load(dir.path(), "t", 3, size, &faults).expect("load");
            assert_eq!(q.scan(1000, false, trust).expect("scan"), None);
            seen.push((q.end(), q.min_offset, q.max_physical_end()));
        }
        assert_eq!(seen, vec![(22, 2, 2200); 2]);
        // Unit 12 (the third file's third) goes backwards: only the walk sees it.
        let (mut q, _) = OwnedQueue::load(dir.path(), "t", 3, size, &faults).expect("load");
        q.files[2].bytes_mut()[40..60].copy_from_slice(&unit(50).encode());
        q.dirty[2] = true;
        drop(q.into_shared().expect("share"));
        let (mut q, _) = OwnedQueue::load(dir.path(), "t", 3, size, &faults).expect("load");
        assert_eq!(q.scan(1000, false, true).expect("scan"), None);
        let shared = q.into_shared().expect("share");
        assert_eq!(
            shared.check_units(1000),
            Some((12, UnitProblem::Invalid(unit(50))))
        );
    }

    #[test]
    fn scan_stops_at_impossible_units_and_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = FaultInjector::default();
        let size = 10 * CQ_UNIT_SIZE;
        let (mut q, _) = OwnedQueue::load(dir.path(), "t", 1, size, &faults).expect("load");
        for i in 0..6u64 {
            q.put(i, unit(i as i64 * 100), &faults).expect("put");
        }
        // Unit 3 goes backwards: an impossible unit.
        q.files[0].bytes_mut()[60..80].copy_from_slice(&unit(50).encode());
        drop(q.into_shared().expect("share"));
        let (mut q, _) = OwnedQueue::load(dir.path(), "t", 1, size, &faults).expect("reload");
        assert_eq!(
            q.scan(1000, true, false).expect("scan"),
            Some(UnitProblem::Invalid(unit(50)))
        );
        assert_eq!(q.end(), 3);
        // A zero unit followed by data: the data after the hole is cut.
        q.put(3, unit(300), &faults).expect("put");
        q.put(4, unit(400), &faults).expect("put");
        q.files[0].bytes_mut()[60..80].fill(0);
        drop(q.into_shared().expect("share"));
        let (mut q, _) = OwnedQueue::load(dir.path(), "t", 1, size, &faults).expect("reload");
        assert_eq!(
            q.scan(1000, true, false).expect("scan"),
            Some(UnitProblem::DataAfterHole)
        );
        assert_eq!(q.end(), 3);
    }

    #[test]
    fn first_unit_above_zero_prefills() {
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = FaultInjector::default();
        let size = 4 * CQ_UNIT_SIZE;
        let (mut q, _) = OwnedQueue::load(dir.path(), "t", 2, size, &faults).expect("load");
        q.put(6, unit(600), &faults).expect("put");
        assert_eq!((q.end(), q.min_offset), (7, 6));
        assert_eq!(q.unit(4), Some(CqUnit::FILLER));
        let shared = q.into_shared().expect("share");
        assert_eq!(shared.min_offset(), 6);
        assert_eq!(shared.unit(6), Some(unit(600)));
    }

    #[test]
    fn files_go_when_wholly_below_the_log_minimum() {
        let unit = |phys: i64| {
            Some(CqUnit {
                physical_offset: phys,
                size: 100,
                tags_code: 0,
            })
        };
        let lasts = [unit(900), unit(1900), unit(2900), None];
        assert_eq!(files_to_remove(&lasts, 1000), 1);
        assert_eq!(files_to_remove(&lasts, 1900), 1, "1900 itself is kept");
        assert_eq!(files_to_remove(&lasts, 5000), 3, "never the last file");
        assert_eq!(
            files_to_remove(&[None, unit(0)], 5000),
            0,
            "a file being written stays"
        );
        assert_eq!(files_to_remove(&[Some(CqUnit::FILLER), unit(10)], 5), 1);
        assert_eq!(files_to_remove(&[], 5), 0);
    }
}
