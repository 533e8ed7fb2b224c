//! The ordered files of one queue directory: loading and checking them, finding the file
//! that holds an offset, and the queue's min/max offsets.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::{CorruptionKind, Error, Result};
use crate::fault::FaultInjector;
use crate::file::mmap::{self, MappedFile};
use crate::format;

/// Opens every file of `dir` (creating the directory if needed), in offset order, and
/// checks the set: each name is a 20-digit offset that is a multiple of `file_size`, each
/// file is exactly `file_size` bytes, and consecutive names differ by `file_size`.
/// Leftover `*.tmp` files (a creation cut short by a crash) and `*.deleted` files (deleted
/// by cleanup while a reader held them) are removed.
pub(crate) fn load_dir(
    dir: &Path,
    file_size: u64,
    faults: &FaultInjector,
) -> Result<Vec<MappedFile>> {
    mmap::create_dir_durable(dir, faults)?;
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut removed_tmp = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let leftover = [".tmp", mmap::RETIRED_SUFFIX].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|stem| format::parse_file_name(stem).is_some())
        });
        if leftover {
            crate::fault::remove_file(faults, &path).map_err(|e| Error::io("remove", &path, e))?;
            removed_tmp = true;
            continue;
        }
        let is_file = entry
            .file_type()
            .map_err(|e| Error::io("stat", &path, e))?
            .is_file();
        match format::parse_file_name(&name) {
            Some(offset) if is_file => found.push((offset, path)),
            _ => return Err(corrupt(path, CorruptionKind::ForeignFile)),
        }
    }
    if removed_tmp {
        mmap::sync_dir(dir, faults)?;
    }
    found.sort_unstable_by_key(|(o, _)| *o);
    let mut files = Vec::with_capacity(found.len());
    let mut expected: Option<u64> = None;
    for (offset, path) in found {
        if offset % file_size != 0 {
            return Err(corrupt(path, CorruptionKind::MisalignedFileName));
        }
        if let Some(expected_offset) = expected.filter(|&e| e != offset) {
            return Err(corrupt(
                path,
                CorruptionKind::GapInFileNames { expected_offset },
            ));
        }
        expected = Some(offset + file_size);
        files.push(MappedFile::open(path, offset, file_size, faults)?);
    }
    Ok(files)
}

/// The start offsets of the files of `dir`, sorted, without opening anything.
pub(crate) fn file_offsets(dir: &Path) -> Result<Vec<u64>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut offsets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if let Some(o) = format::parse_file_name(&entry.file_name().to_string_lossy()) {
            offsets.push(o);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

fn corrupt(path: PathBuf, kind: CorruptionKind) -> Error {
    Error::Corrupted {
        path,
        offset: 0,
        kind,
    }
}

/// The shared, ordered files of one queue.
#[derive(Debug)]
pub(crate) struct MappedFileQueue {
    file_size: u64,
    files: RwLock<Vec<Arc<MappedFile>>>,
}

impl MappedFileQueue {
    pub(crate) fn new(file_size: u64, files: Vec<Arc<MappedFile>>) -> Self {
        MappedFileQueue {
            file_size,
            files: RwLock::new(files),
        }
    }

    /// Appends a new last file (it must follow the current last one).
    pub(crate) fn push(&self, file: Arc<MappedFile>) {
        let mut files = self.files.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = files.last() {
            assert_eq!(
                last.start_offset() + self.file_size,
                file.start_offset(),
                "queue files must be contiguous"
            );
        }
        files.push(file);
    }

    /// The file holding `offset`, if any.
    pub(crate) fn find(&self, offset: u64) -> Option<Arc<MappedFile>> {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        let first = files.first()?.start_offset();
        let index = usize::try_from(offset.checked_sub(first)? / self.file_size).ok()?;
        files
            .get(index)
            .filter(|f| offset - f.start_offset() < self.file_size)
            .cloned()
    }

    /// The files from the one holding `offset` to the last.
    pub(crate) fn files_from(&self, offset: u64) -> Vec<Arc<MappedFile>> {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files
            .iter()
            .filter(|f| f.start_offset() + self.file_size > offset)
            .cloned()
            .collect()
    }

    /// Every file, oldest first.
    pub(crate) fn all(&self) -> Vec<Arc<MappedFile>> {
        self.files
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Offset of the first byte still stored.
    pub(crate) fn min_offset(&self) -> u64 {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files.first().map_or(0, |f| f.start_offset())
    }
}

// The ways a queue's front changes: cleanup deleting its oldest file, and a replica's
// empty log moving to where its master's stream starts.
impl MappedFileQueue {
    /// Takes the first file out of the queue if it starts at `start` and is not the last
    /// one (the queue's active file is never deleted). Readers can no longer find it;
    /// those holding it keep it mapped.
    pub(crate) fn take_first(&self, start: u64) -> Option<Arc<MappedFile>> {
        let mut files = self.files.write().unwrap_or_else(PoisonError::into_inner);
        if files.len() < 2 || files[0].start_offset() != start {
            return None;
        }
        Some(files.remove(0))
    }

    /// Whether no file holds a published byte (a new queue, or one whose only files were
    /// made in advance).
    pub(crate) fn holds_no_bytes(&self) -> bool {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files.iter().all(|f| f.wrote() == 0)
    }

    /// Takes every file out of the queue (a replica's empty log moving to where its master's
    /// stream starts). Readers can no longer find them; those holding one keep it mapped.
    pub(crate) fn take_all(&self) -> Vec<Arc<MappedFile>> {
        std::mem::take(&mut *self.files.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether the file starting at `start` is the first one and not the last one.
    pub(crate) fn is_first_of_several(&self, start: u64) -> bool {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files.len() >= 2 && files[0].start_offset() == start
    }
}

impl MappedFileQueue {
    /// Offset just past the last published byte.
    pub(crate) fn max_offset(&self) -> u64 {
        let files = self.files.read().unwrap_or_else(PoisonError::into_inner);
        files.last().map_or(0, |f| f.start_offset() + f.wrote())
    }

    pub(crate) fn file_count(&self) -> usize {
        self.files
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultInjector;
    use crate::file::mmap::CreateOptions;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn cleanup_takes_only_the_first_file_never_the_last_and_can_put_it_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 4096;
        let files: Vec<Arc<MappedFile>> = (0..2)
            .map(|i| {
                let f = MappedFile::create(
                    dir.path(),
                    i * size,
                    size,
                    CreateOptions::default(),
                    &FaultInjector::default(),
                    &AtomicBool::new(false),
                )
                .expect("create");
                f.into_shared().0
            })
            .collect();
        let q = MappedFileQueue::new(size, files);
        assert!(q.is_first_of_several(0) && !q.is_first_of_several(size));
        assert!(q.take_first(size).is_none(), "not the first file");
        let first = q.take_first(0).expect("the first of two");
        assert_eq!((q.min_offset(), q.file_count()), (size, 1));
        assert!(q.find(0).is_none(), "new reads no longer find it");
        assert!(q.take_first(size).is_none(), "never the last file");
        assert!(!q.is_first_of_several(size), "the last file");
        assert_eq!(first.start_offset(), 0);
    }
}
