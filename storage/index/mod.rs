//! The hash IndexFile: message keys (`topic#key`) to CommitLog offsets, in files of
//! RocketMQ's layout (40-byte header, hash slots, 20-byte items chained per slot) named by
//! creation time under `index/`.
//!
//! Only the dispatcher writes (under the write lock); queries read under the read lock. An
//! index hit is only a candidate: the store reads the record and checks the key before
//! returning it. Chain walks are bounded by the item count and must go strictly backwards,
//! so a corrupt chain ends instead of looping.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock};

use crate::clock::Clock;
use crate::error::{CorruptionKind, Error, Result};
use crate::fault::FaultInjector;
use crate::file::mmap::{self, CreateOptions, MappedFile};
use crate::format::{
    self, index_file_size, index_item_pos, index_key, index_key_hash, index_slot_pos,
    index_time_diff, IndexHeader, IndexItem, RecordView, INDEX_HEADER_SIZE, INDEX_ITEM_SIZE,
    INDEX_SLOT_SIZE,
};

/// One IndexFile.
#[derive(Debug)]
struct IndexFile {
    file: MappedFile,
    header: IndexHeader,
    slots: u32,
    items: u32,
    /// Written since the last flush.
    dirty: bool,
}

impl IndexFile {
    fn is_full(&self) -> bool {
        self.header.next_item() >= self.items
    }

    fn write_header(&mut self) {
        let bytes = self.header.encode();
        self.file.bytes_mut()[..INDEX_HEADER_SIZE as usize].copy_from_slice(&bytes);
    }

    fn read_u32(bytes: &[u8], pos: u64) -> Option<u32> {
        let at = usize::try_from(pos).ok()?;
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_be_bytes(b.try_into().ok()?))
    }

    /// Inserts one key (`putKey`); false if the file is full.
    fn put(&mut self, hash: i32, phy_offset: i64, store_timestamp: i64) -> bool {
        if self.is_full() {
            return false;
        }
        let item_no = self.header.next_item();
        let slot = (hash as u32) % self.slots;
        let slot_pos = index_slot_pos(slot);
        let old = Self::read_u32(self.file.bytes(), slot_pos).unwrap_or(0);
        let prev = if old == 0 || old > item_no { 0 } else { old };
        if item_no <= 1 {
            self.header.begin_phy_offset = phy_offset;
            self.header.begin_timestamp = store_timestamp;
        }
        let item = IndexItem {
            key_hash: hash,
            phy_offset,
            time_diff: index_time_diff(self.header.begin_timestamp, store_timestamp),
            prev_index: prev as i32,
        };
        let item_pos = index_item_pos(self.slots, item_no) as usize;
        let slots = self.slots;
        let bytes = self.file.bytes_mut();
        bytes[item_pos..item_pos + INDEX_ITEM_SIZE as usize].copy_from_slice(&item.encode());
        let sp = slot_pos as usize;
        bytes[sp..sp + INDEX_SLOT_SIZE as usize].copy_from_slice(&item_no.to_be_bytes());
        debug_assert!(item_pos < index_file_size(slots, self.items) as usize);
        if prev == 0 {
            self.header.hash_slot_count += 1;
        }
        self.header.index_count = item_no as i32 + 1;
        self.header.end_phy_offset = phy_offset;
        self.header.end_timestamp = store_timestamp;
        self.write_header();
        self.dirty = true;
        true
    }

    /// Structural check of every slot and item: slots point at existing items, each item's
    /// chain link goes backwards, CommitLog offsets never decrease and stay within the
    /// header's range. Catches flipped bits in links and offsets (hash bits cannot be told
    /// from the file alone; query hits are verified against their records anyway).
    fn is_consistent(&self) -> bool {
        let count = self.header.next_item();
        let bytes = self.file.bytes();
        let slots_ok = (0..self.slots)
            .all(|s| Self::read_u32(bytes, index_slot_pos(s)).is_some_and(|v| v < count.max(1)));
        if !slots_ok {
            return false;
        }
        let (begin, end) = (self.header.begin_phy_offset, self.header.end_phy_offset);
        let mut prev_phy = begin;
        for k in 1..count {
            let Some(item) = usize::try_from(index_item_pos(self.slots, k))
                .ok()
                .and_then(|p| bytes.get(p..))
                .and_then(IndexItem::decode)
            else {
                return false;
            };
            let ok = item.prev_index >= 0
                && (item.prev_index as u32) < k
                && item.time_diff >= 0
                && item.key_hash >= 0
                && item.phy_offset >= prev_phy
                && item.phy_offset <= end;
            if !ok {
                return false;
            }
            prev_phy = item.phy_offset;
        }
        true
    }

    /// Walks the chain of `hash` newest first, collecting offsets whose time lies in
    /// `[begin, end]`.
    fn lookup(&self, hash: i32, begin: i64, end: i64, max: usize, out: &mut Vec<u64>) {
        let count = self.header.next_item();
        if count <= 1 {
            return;
        }
        let bytes = self.file.bytes();
        let slot = (hash as u32) % self.slots;
        let mut next = Self::read_u32(bytes, index_slot_pos(slot)).unwrap_or(0);
        // Each hop must go to a strictly smaller item number: at most `count` hops.
        while next > 0 && next < count && out.len() < max {
            let pos = index_item_pos(self.slots, next);
            let Some(item) = usize::try_from(pos)
                .ok()
                .and_then(|p| bytes.get(p..))
                .and_then(IndexItem::decode)
            else {
                break;
            };
            let time = self
                .header
                .begin_timestamp
                .saturating_add(i64::from(item.time_diff).saturating_mul(1000));
            if time < begin {
                break;
            }
            if item.key_hash == hash && time <= end && item.phy_offset >= 0 {
                out.push(item.phy_offset as u64);
            }
            let prev = item.prev_index;
            if prev <= 0 || prev as u32 >= next {
                break;
            }
            next = prev as u32;
        }
    }
}

/// Every IndexFile of the store.
#[derive(Debug)]
pub(crate) struct IndexFiles {
    dir: PathBuf,
    slots: u32,
    items: u32,
    files: RwLock<Vec<IndexFile>>,
    clock: Arc<dyn Clock>,
    faults: FaultInjector,
}

/// What loading the index found and changed.
#[derive(Debug, Default)]
pub(crate) struct IndexLoad {
    /// Files removed because they held entries beyond the durable point.
    pub removed: Vec<PathBuf>,
    /// Offset from which records must be indexed again.
    pub reindex_from: u64,
    /// The newest file, whose structural check was left to the background.
    pub unchecked: Option<PathBuf>,
}

impl IndexFiles {
    /// Loads `dir`. Files holding items for records at or beyond `durable` (the offset
    /// below which index items are known flushed) are removed: their slot chains may be
    /// half-written. Their records are indexed again from [`IndexLoad::reindex_from`].
    pub(crate) fn load(
        dir: &Path,
        slots: u32,
        items: u32,
        durable: u64,
        clock: Arc<dyn Clock>,
        faults: FaultInjector,
        defer_check: bool,
    ) -> Result<(IndexFiles, IndexLoad)> {
        mmap::create_dir_durable(dir, &faults)?;
        let size = index_file_size(slots, items);
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let path = entry.path();
                crate::fault::remove_file(&faults, &path)
                    .map_err(|e| Error::io("remove", &path, e))?;
            } else if format::is_index_file_name(&name) {
                names.push(name);
            }
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        let mut load = IndexLoad {
            removed: Vec::new(),
            reindex_from: durable,
            unchecked: None,
        };
        for name in names {
            let path = dir.join(&name);
            let file = MappedFile::open(path.clone(), 0, size, &faults)?;
            let header = IndexHeader::decode(file.bytes()).unwrap_or_default();
            let sane = header.index_count >= 0
                && (header.index_count as u32) <= items
                && header.hash_slot_count >= 0
                && header.begin_phy_offset <= header.end_phy_offset
                && header.begin_phy_offset >= 0;
            if !sane {
                return Err(Error::Corrupted {
                    path,
                    offset: 0,
                    kind: CorruptionKind::IndexHeader,
                });
            }
            files.push(IndexFile {
                file,
                header,
                slots,
                items,
                dirty: false,
            });
        }
        // Drop files (newest first) with items at or beyond the durable point, and a newest
        // file that fails the structural check (it is rebuilt from the CommitLog).
        let mut checked = false;
        while let Some(last) = files.last() {
            let h = last.header;
            let has_items = h.index_count > 1;
            let beyond = has_items && (h.end_phy_offset as u64) >= durable;
            // A clean reopen leaves the check of every item (O(items)) to the background.
            let check_now = !checked && has_items && !beyond;
            if check_now && defer_check {
                load.unchecked = Some(last.file.path().to_owned());
            }
            let broken = check_now && !defer_check && !last.is_consistent();
            checked = true;
            if !beyond && !broken {
                break;
            }
            if broken {
                tracing::warn!(path = %last.file.path().display(), "index file fails its structural check; rebuilding it");
            }
            let file = files.pop().expect("last exists");
            load.reindex_from = load.reindex_from.min(h.begin_phy_offset as u64);
            let path = file.file.remove()?;
            load.removed.push(path);
        }
        if !load.removed.is_empty() {
            mmap::sync_dir(dir, &faults)?;
            tracing::info!(
                files = load.removed.len(),
                from = load.reindex_from,
                "index files beyond the durable point removed; re-indexing"
            );
        }
        Ok((
            IndexFiles {
                dir: dir.to_owned(),
                slots,
                items,
                files: RwLock::new(files),
                clock,
                faults,
            },
            load,
        ))
    }

    /// Runs the structural check that loading left to the background on the file at
    /// `path` (under the read lock: the dispatcher's indexing waits for it). `None` when
    /// the file is gone (deleted by cleanup).
    pub(crate) fn check_file(&self, path: &Path) -> Option<bool> {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files
            .iter()
            .find(|f| f.file.path() == path)
            .map(IndexFile::is_consistent)
    }

    /// Offset of the last record indexed, if any.
    #[cfg(test)]
    pub(crate) fn indexed_through(&self) -> Option<u64> {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        let h = files.last()?.header;
        (h.index_count > 1 || h.end_timestamp > 0).then_some(h.end_phy_offset as u64)
    }

    /// Indexes the keys of one record ([`indexed_keys`]) unless it is already indexed.
    pub(crate) fn put(&self, phy_offset: u64, record: &RecordView<'_>) -> Result<()> {
        let mut keys = indexed_keys(record).peekable();
        if keys.peek().is_none() {
            return Ok(());
        }
        let mut files = self.files.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = files.last() {
            let h = last.header;
            let indexed = h.index_count > 1 || h.end_timestamp > 0;
            if indexed && phy_offset <= h.end_phy_offset as u64 {
                return Ok(());
            }
        }
        for key in keys {
            let hash = index_key_hash(&index_key(record.topic, key));
            self.put_hash(&mut files, hash, phy_offset as i64, record.store_timestamp)?;
        }
        Ok(())
    }

    fn put_hash(
        &self,
        files: &mut Vec<IndexFile>,
        hash: i32,
        phy: i64,
        timestamp: i64,
    ) -> Result<()> {
        for _ in 0..2 {
            if let Some(last) = files.last_mut() {
                if last.put(hash, phy, timestamp) {
                    return Ok(());
                }
            }
            let carried = files.last().map(|f| f.header);
            if let Some(full) = files.last_mut() {
                full.file.flush_all()?;
                full.dirty = false;
            }
            files.push(self.create(carried)?);
        }
        Err(Error::io(
            "index put",
            &self.dir,
            std::io::ErrorKind::Other.into(),
        ))
    }

    fn create(&self, carried: Option<IndexHeader>) -> Result<IndexFile> {
        let size = index_file_size(self.slots, self.items);
        let mut millis = self.clock.now_millis();
        let mut name = format::index_file_name(millis);
        while self.dir.join(&name).exists() {
            millis += 1;
            name = format::index_file_name(millis);
        }
        let never = AtomicBool::new(false);
        let mut file = MappedFile::create_named(
            &self.dir,
            &name,
            0,
            size,
            CreateOptions::default(),
            &self.faults,
            &never,
        )?;
        file.set_wrote(size);
        let header = carried.map_or_else(IndexHeader::default, |h| IndexHeader {
            begin_timestamp: h.end_timestamp,
            end_timestamp: h.end_timestamp,
            begin_phy_offset: h.end_phy_offset,
            end_phy_offset: h.end_phy_offset,
            hash_slot_count: 0,
            index_count: 0,
        });
        let mut f = IndexFile {
            file,
            header,
            slots: self.slots,
            items: self.items,
            dirty: true,
        };
        f.write_header();
        Ok(f)
    }

    /// Candidate offsets for `key` of `topic` stored within `[begin, end]` (ms), newest
    /// first, at most `max`. Callers verify each against its record.
    pub(crate) fn query(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin: i64,
        end: i64,
    ) -> Vec<u64> {
        let hash = index_key_hash(&index_key(topic, key));
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for f in files.iter().rev() {
            let h = f.header;
            let overlaps = (begin <= h.begin_timestamp && h.begin_timestamp <= end)
                || (begin <= h.end_timestamp && h.end_timestamp <= end)
                || (h.begin_timestamp <= begin && end <= h.end_timestamp);
            if overlaps {
                f.lookup(hash, begin, end, max, &mut out);
            }
            if h.begin_timestamp < begin || out.len() >= max {
                break;
            }
        }
        out
    }

    /// Removes every file but the newest whose items all point below `log_min` (RocketMQ
    /// `IndexFiles.deleteExpiredFile`), returning their paths and sizes. The files leave
    /// the list under the lock; unmapping and unlinking happen after it is released, so
    /// queries and dispatch never wait for them.
    pub(crate) fn remove_below(&self, log_min: u64) -> Result<Vec<(PathBuf, u64)>> {
        let taken: Vec<IndexFile> = {
            let mut files = self.files.write().unwrap_or_else(PoisonError::into_inner);
            let ends: Vec<i64> = files.iter().map(|f| f.header.end_phy_offset).collect();
            let n = files_to_remove(&ends, log_min);
            files.drain(..n).collect()
        };
        let mut removed = Vec::with_capacity(taken.len());
        for f in taken {
            let size = f.file.size();
            let path = f.file.remove()?;
            removed.push((path, size));
        }
        if !removed.is_empty() {
            mmap::sync_dir(&self.dir, &self.faults)?;
        }
        Ok(removed)
    }

    /// Flushes every file written since its last flush.
    pub(crate) fn flush(&self) -> Result<()> {
        let mut files = self.files.write().unwrap_or_else(PoisonError::into_inner);
        for f in files.iter_mut().filter(|f| f.dirty) {
            f.file.flush_all()?;
            f.dirty = false;
        }
        Ok(())
    }

    /// End timestamp of the newest full file (RocketMQ's checkpoint `indexMsgTimestamp`).
    pub(crate) fn newest_full_end_timestamp(&self) -> i64 {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files
            .iter()
            .rev()
            .find(|f| f.is_full())
            .map_or(0, |f| f.header.end_timestamp)
    }

    #[cfg(test)]
    pub(crate) fn file_count(&self) -> usize {
        self.files
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The keys a record is indexed under: its UNIQ_KEY and each space-separated word of its
/// KEYS; none for a rolled-back transaction. Dispatch indexes these, a key query accepts a
/// record only if the key is among them, and the offline check expects exactly these.
pub(crate) fn indexed_keys<'a>(record: &RecordView<'a>) -> impl Iterator<Item = &'a str> {
    let rolled_back = record.transaction_type() == format::TRANSACTION_ROLLBACK_TYPE;
    let (uniq, keys) = if rolled_back {
        (None, None)
    } else {
        (
            format::property(record.properties, format::keys::UNIQ_KEY),
            format::property(record.properties, format::keys::KEYS),
        )
    };
    uniq.into_iter()
        .chain(keys.into_iter().flat_map(|k| k.split(' ')))
        .filter(|k| !k.is_empty())
}

/// How many IndexFiles (oldest first, by their header's end offset) hold only items below
/// the CommitLog minimum. Never the last file.
pub(crate) fn files_to_remove(end_offsets: &[i64], log_min: u64) -> usize {
    let candidates = end_offsets.len().saturating_sub(1);
    end_offsets
        .iter()
        .take(candidates)
        .take_while(|&&end| end < 0 || (end as u64) < log_min)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::format::Message;
    use crate::format::{Decoded, RecordPlan, StoreFields};

    fn record(topic: &str, keys: &str, ts: i64) -> Vec<u8> {
        let msg = Message::new(topic, 0, b"b".to_vec()).with_property("KEYS", keys);
        let plan =
            RecordPlan::new(&msg, "127.0.0.1:1".parse().expect("addr"), 1024, true).expect("plan");
        let mut buf = vec![0u8; plan.len()];
        plan.write(
            &mut buf,
            &StoreFields {
                queue_offset: 0,
                physical_offset: 0,
                store_timestamp: ts,
                store_host: "127.0.0.1:1".parse().expect("addr"),
            },
        );
        buf
    }

    fn view(buf: &[u8]) -> RecordView<'_> {
        match format::decode_record(buf, true) {
            Ok(Decoded::Message(v)) => v,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn put_query_roll_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(1_000_000));
        let (svc, _) = IndexFiles::load(
            dir.path(),
            7,
            5,
            0,
            clock.clone(),
            FaultInjector::default(),
            false,
        )
        .expect("load");
        // 4 items per file (item 0 unused): 10 keys need 3 files.
        for i in 0..10u64 {
            clock.advance(1);
            let buf = record(
                "t",
                &format!("k{} common", i % 3),
                1_000_000 + i as i64 * 1000,
            );
            svc.put(i * 100, &view(&buf)).expect("put");
        }
        assert!(svc.file_count() >= 3);
        let hits = svc.query("t", "k1", 64, 0, i64::MAX);
        assert_eq!(hits, vec![700, 400, 100]);
        assert_eq!(
            svc.query("t", "common", 3, 0, i64::MAX),
            vec![900, 800, 700]
        );
        assert!(svc.query("other", "k1", 64, 0, i64::MAX).is_empty());
        // A time range selects.
        let hits = svc.query("t", "k1", 64, 1_003_500, 1_005_000);
        assert_eq!(hits, vec![400]);
        // Re-putting an indexed offset is a no-op.
        let buf = record("t", "k1", 1_009_000);
        svc.put(900, &view(&buf)).expect("dup");
        assert_eq!(svc.query("t", "k1", 64, 0, i64::MAX).len(), 3);
        svc.flush().expect("flush");
        drop(svc);
        let (svc, load) = IndexFiles::load(
            dir.path(),
            7,
            5,
            1000,
            clock.clone(),
            FaultInjector::default(),
            false,
        )
        .expect("reload");
        assert!(load.removed.is_empty());
        assert_eq!(svc.query("t", "k1", 64, 0, i64::MAX), vec![700, 400, 100]);
        drop(svc);
        // With the durable point at 500 the files holding 500.. go and must be rebuilt.
        let (svc, load) = IndexFiles::load(
            dir.path(),
            7,
            5,
            500,
            clock,
            FaultInjector::default(),
            false,
        )
        .expect("reload");
        assert!(!load.removed.is_empty());
        assert!(load.reindex_from <= 500);
        assert!(svc.indexed_through().is_none_or(|x| x < 500));
    }

    #[test]
    fn corrupt_chains_terminate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(1_000_000));
        let (svc, _) =
            IndexFiles::load(dir.path(), 1, 50, 0, clock, FaultInjector::default(), false)
                .expect("load");
        for i in 0..20u64 {
            let buf = record("t", "k", 1_000_000);
            svc.put(i * 100, &view(&buf)).expect("put");
        }
        let set_prev = |item: u32, prev: i32| {
            let mut files = svc.files.write().expect("lock");
            let pos = index_item_pos(1, item) as usize + 16;
            files[0].file.bytes_mut()[pos..pos + 4].copy_from_slice(&prev.to_be_bytes());
        };
        // Item 10 points forward (to 15): the walk 20, 19, ..., 10 stops there.
        set_prev(10, 15);
        let hits = svc.query("t", "k", 64, 0, i64::MAX);
        assert_eq!(hits.len(), 11, "chain cut at the bad link: {hits:?}");
        // The newest item points at itself: one hit, no loop.
        set_prev(20, 20);
        assert_eq!(svc.query("t", "k", 64, 0, i64::MAX), vec![1900]);
    }

    #[test]
    fn files_go_when_wholly_below_the_log_minimum() {
        assert_eq!(files_to_remove(&[900, 1900, 2900], 2000), 2);
        assert_eq!(
            files_to_remove(&[900, 1900, 2900], 10_000),
            2,
            "never the last"
        );
        assert_eq!(files_to_remove(&[900], 10_000), 0);
        assert_eq!(
            files_to_remove(&[1000, 900], 1000),
            0,
            "stops at the first kept"
        );
    }
}
