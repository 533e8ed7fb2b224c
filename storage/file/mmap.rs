//! The one module with `unsafe`: pre-allocated, memory-mapped files of fixed size.
//!
//! Invariants that make the raw-pointer accesses below sound (memmap2's own contract is
//! "UB if the underlying file is modified while mapped"):
//!
//! 1. **Allocated before mapped, never shrunk.** A file gets its full size with
//!    `posix_fallocate` (never a sparse `ftruncate`) before it is mapped, so touching any
//!    mapped page cannot SIGBUS on a full disk. Nothing here truncates a mapped file;
//!    zeroing a tail uses `FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE`, which keeps size and
//!    blocks.
//! 2. **One process.** The store holds an exclusive lock on its directory for its whole
//!    life, so no other process writes the files.
//! 3. **One writer, readers below the published position.** A [`SegmentWriter`] can only
//!    be made by consuming an owned [`MappedFile`], so each shared file has at most one; it
//!    writes only at or above `wrote` and publishes with a Release store. Readers build
//!    slices only below `wrote` (Acquire load), which is never lowered while the file is
//!    shared: lowering it (`set_wrote`, `zero_from`) takes `&mut self` on an owned file.
//!    So no `&[u8]` ever overlaps a `&mut [u8]`.
//! 4. **Mappings outlive borrows.** Slices borrow the `MappedFile`; readers keep an
//!    `Arc<MappedFile>`, so a file is unmapped (and, if retired, unlinked) only when the
//!    last holder lets go. No raw pointer is stored anywhere else. There is no forced
//!    unmap: a deleted file that a reader still holds stays mapped until that reader is
//!    done (RocketMQ's `destroyMapedFileIntervalForcibly` would be use-after-unmap here).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_utils::CachePadded;
use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::error::{CorruptionKind, Error, Result};
use crate::fault::{guarded, FaultInjector, IoOp};
use crate::format::{self, OS_PAGE_SIZE};

/// Warm-up pre-faults this many bytes at a time, checking for cancellation in between, so
/// that stopping the allocator never waits for a whole 1 GiB file to be populated.
const WARM_CHUNK: u64 = 32 << 20;

/// How a new file is prepared.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CreateOptions {
    /// Pre-fault every page (`MADV_POPULATE_WRITE`, else touch each page).
    pub warm: bool,
    /// `mlock` the mapping.
    pub mlock: bool,
}

/// One fixed-size file of a queue, mapped read-write.
#[derive(Debug)]
pub(crate) struct MappedFile {
    path: PathBuf,
    // Kept open for the mapping's life and for fallocate / fdatasync.
    file: File,
    map: MmapRaw,
    start_offset: u64,
    size: u64,
    /// Bytes written and published; readers never look past it.
    wrote: CachePadded<AtomicU64>,
    /// Bytes known durable.
    flushed: CachePadded<AtomicU64>,
    /// Set once the file is deleted from the store: where it was renamed to. It is
    /// unlinked from there when the last holder drops it.
    retired: OnceLock<PathBuf>,
    /// The store's injector, for the file's own I/O (flush, rename, unlink).
    faults: FaultInjector,
}

/// Suffix of a deleted file waiting for its last reader; removed at the next open.
pub(crate) const RETIRED_SUFFIX: &str = ".deleted";

impl MappedFile {
    /// Creates `<dir>/<20-digit start_offset>` of `size` bytes: written as a `.tmp` file,
    /// fully allocated, fsynced, renamed into place, directory fsynced, then mapped (and
    /// warmed unless `cancel` is set meanwhile). On failure nothing is left behind.
    pub(crate) fn create(
        dir: &Path,
        start_offset: u64,
        size: u64,
        opts: CreateOptions,
        faults: &FaultInjector,
        cancel: &AtomicBool,
    ) -> Result<MappedFile> {
        let name = format::file_name(start_offset);
        Self::create_named(dir, &name, start_offset, size, opts, faults, cancel)
    }

    /// As [`create`](Self::create), with an explicit file name (IndexFiles are named by
    /// creation time).
    pub(crate) fn create_named(
        dir: &Path,
        name: &str,
        start_offset: u64,
        size: u64,
        opts: CreateOptions,
        faults: &FaultInjector,
        cancel: &AtomicBool,
    ) -> Result<MappedFile> {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        if path.exists() {
            // Renaming over it would destroy data; the queue never asks for an existing file.
            return Err(Error::io(
                "create",
                &path,
                io::ErrorKind::AlreadyExists.into(),
            ));
        }
        let made = (|| {
            let file = guarded(faults, IoOp::Allocate, || {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)?;
                preallocate(&file, size)?;
                Ok(file)
            })
            .map_err(|e| Error::io("allocate", &tmp, e))?;
            guarded(faults, IoOp::Flush, || file.sync_all())
                .map_err(|e| Error::io("fsync", &tmp, e))?;
            crate::fault::rename(faults, &tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
            Ok(file)
        })();
        let file = match made {
            Ok(file) => file,
            Err(e) => {
                // Best effort, and not through the injector: a failed cleanup of a
                // half-made file is removed at the next open anyway.
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        sync_dir(dir, faults)?;
        let mut mapped = Self::map(path, file, start_offset, size, faults)?;
        mapped.wrote = CachePadded::new(AtomicU64::new(0));
        mapped.flushed = CachePadded::new(AtomicU64::new(0));
        if opts.warm {
            mapped.warm(cancel);
        }
        if opts.mlock {
            if let Err(e) = mapped.map.lock() {
                tracing::warn!(path = %mapped.path.display(), error = %e, "mlock failed; continuing unlocked");
            }
        }
        Ok(mapped)
    }

    /// Opens an existing file, which must be exactly `size` bytes. It starts out treated
    /// as full (every byte readable); recovery then sets the real end with `set_wrote`.
    pub(crate) fn open(
        path: PathBuf,
        start_offset: u64,
        size: u64,
        faults: &FaultInjector,
    ) -> Result<MappedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let actual = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        if actual != size {
            return Err(Error::Corrupted {
                path,
                offset: 0,
                kind: CorruptionKind::WrongFileSize {
                    actual,
                    expected: size,
                },
            });
        }
        Self::map(path, file, start_offset, size, faults)
    }

    fn map(
        path: PathBuf,
        file: File,
        start_offset: u64,
        size: u64,
        faults: &FaultInjector,
    ) -> Result<MappedFile> {
        let len = usize::try_from(size).map_err(|_| {
            Error::config(
                "mapped file size",
                format!("{size} is larger than the address space"),
            )
        })?;
        let map = guarded(faults, IoOp::Map, || {
            MmapOptions::new().len(len).map_raw(&file)
        })
        .map_err(|e| Error::io("mmap", &path, e))?;
        Ok(MappedFile {
            path,
            file,
            map,
            start_offset,
            size,
            wrote: CachePadded::new(AtomicU64::new(size)),
            flushed: CachePadded::new(AtomicU64::new(size)),
            retired: OnceLock::new(),
            faults: faults.clone(),
        })
    }

    /// Pre-faults the pages chunk by chunk until done or `cancel` is set. A partly warmed
    /// file is as valid as a cold one; its remaining pages fault in on first write.
    fn warm(&mut self, cancel: &AtomicBool) {
        let mut at = 0u64;
        while at < self.size && !cancel.load(Ordering::Acquire) {
            let len = WARM_CHUNK.min(self.size - at);
            if self
                .map
                .advise_range(Advice::PopulateWrite, at as usize, len as usize)
                .is_err()
            {
                self.touch_pages(at, len);
            }
            at += len;
        }
    }

    /// Faults pages by writing a zero into each (kernels before 5.14 lack
    /// MADV_POPULATE_WRITE). The file is new and all zeros, so its content does not change.
    fn touch_pages(&mut self, from: u64, len: u64) {
        let base = self.map.as_mut_ptr();
        let mut at = from;
        while at < from + len {
            // SAFETY: `at < from + len <= size` = mapping length, so the pointer is inside the
            // mapping. The file is owned (`&mut self`), not yet shared, so no slice aliases it.
            unsafe { base.add(at as usize).write_volatile(0) };
            at += OS_PAGE_SIZE;
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The queue offset of this file's first byte.
    pub(crate) fn start_offset(&self) -> u64 {
        self.start_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Published write position (relative to the file start).
    pub(crate) fn wrote(&self) -> u64 {
        self.wrote.load(Ordering::Acquire)
    }

    /// Durable position (relative to the file start).
    pub(crate) fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.wrote() == self.size
    }

    /// The published bytes `[pos, wrote)`; empty if `pos` is at or past `wrote`.
    pub(crate) fn readable_from(&self, pos: u64) -> &[u8] {
        let wrote = self.wrote();
        if pos >= wrote {
            return &[];
        }
        // SAFETY: `pos < wrote <= size` = mapping length, so the range is inside the
        // mapping, which lives as long as `&self`. Bytes below the published `wrote` are
        // never written while the file is shared (module invariant 3), and the Acquire
        // load above orders the writer's stores before this read.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(pos as usize), (wrote - pos) as usize)
        }
    }

    /// Sets the end of valid data of an owned (unshared) file, e.g. after recovery.
    pub(crate) fn set_wrote(&mut self, pos: u64) {
        assert!(pos <= self.size, "write position beyond the file");
        *self.wrote.get_mut() = pos;
        *self.flushed.get_mut() = pos;
    }

    /// Zeroes `[pos, size)` of an owned file and makes it durable, so stale bytes past a
    /// recovered end can never be mistaken for records later. Blocks stay allocated.
    pub(crate) fn zero_from(&mut self, pos: u64) -> Result<()> {
        assert!(pos <= self.size, "zeroing beyond the file");
        let page_end = pos.div_ceil(OS_PAGE_SIZE) * OS_PAGE_SIZE;
        let head = page_end.min(self.size) - pos;
        // SAFETY: `[pos, pos + head)` lies inside the mapping (`pos + head <= size`); the
        // file is owned (`&mut self`), so no slice aliases it.
        unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(pos as usize), 0, head as usize) };
        if page_end < self.size && zero_range(&self.file, page_end, self.size - page_end).is_err() {
            // No FALLOC_FL_ZERO_RANGE on this filesystem: zero the pages that need it.
            let mut at = page_end;
            while at < self.size {
                let page = OS_PAGE_SIZE.min(self.size - at) as usize;
                // SAFETY: as above: in bounds, owned file, no aliasing slice.
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(at as usize), page)
                };
                if bytes.iter().any(|&b| b != 0) {
                    bytes.fill(0);
                }
                at += page as u64;
            }
        }
        let start = pos / OS_PAGE_SIZE * OS_PAGE_SIZE;
        guarded(&self.faults, IoOp::Flush, || {
            self.map
                .flush_range(start as usize, (self.size - start) as usize)
        })
        .map_err(|e| Error::io("msync", &self.path, e))?;
        guarded(&self.faults, IoOp::Flush, || self.file.sync_data())
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    /// The whole mapping of an owned file, for files written at arbitrary positions
    /// (IndexFile slots) or repaired during recovery.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the range is exactly the mapping, which lives as long as `self`; `&mut self`
        // on a file that is not shared (an `Arc` would only give `&`) excludes every other
        // borrow of these bytes (module invariant 3).
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), self.size as usize) }
    }

    /// The whole mapping, whatever the write position (IndexFiles, whose bytes are all
    /// meaningful from creation).
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the range is exactly the mapping, which lives as long as `&self`. Writes to
        // a file read this way only happen through `bytes_mut`, which needs `&mut self`, so
        // they cannot overlap this borrow.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.size as usize) }
    }

    /// Flushes the whole mapping (files written at arbitrary positions) and marks
    /// everything published as durable.
    pub(crate) fn flush_all(&self) -> Result<()> {
        guarded(&self.faults, IoOp::Flush, || self.map.flush())
            .map_err(|e| Error::io("msync", &self.path, e))?;
        self.flushed.fetch_max(self.wrote(), Ordering::AcqRel);
        Ok(())
    }

    /// Flushes published bytes by RocketMQ's rule: when the file is full, when at
    /// least `least_pages` pages are dirty, or (`least_pages == 0`) when anything is.
    /// Returns whether a flush happened. Callers serialize flushes of one file.
    pub(crate) fn flush(&self, least_pages: u32) -> Result<bool> {
        let wrote = self.wrote();
        let flushed = self.flushed();
        if !should_flush(wrote, flushed, self.size, least_pages) {
            return Ok(false);
        }
        let start = flushed / OS_PAGE_SIZE * OS_PAGE_SIZE;
        guarded(&self.faults, IoOp::Flush, || {
            self.map
                .flush_range(start as usize, (wrote - start) as usize)
        })
        .map_err(|e| Error::io("msync", &self.path, e))?;
        self.flushed.fetch_max(wrote, Ordering::AcqRel);
        Ok(true)
    }

    /// Deletes the file from the store's namespace while readers may still hold it: it
    /// is renamed to `<name>.deleted` (the mapping and the bytes stay valid) and the
    /// directory synced, so the remaining names stay contiguous even if the process dies
    /// now. The renamed file is unlinked when the last holder drops it (or by
    /// [`destroy`](Self::destroy)); leftovers are removed at the next open.
    pub(crate) fn retire(&self) -> Result<()> {
        if self.retired.get().is_some() {
            return Ok(());
        }
        let mut name = self.path.as_os_str().to_owned();
        name.push(RETIRED_SUFFIX);
        let target = PathBuf::from(name);
        crate::fault::rename(&self.faults, &self.path, &target)
            .map_err(|e| Error::io("rename", &self.path, e))?;
        let _ = self.retired.set(target);
        // Once renamed the file is out of the namespace whether or not the directory sync
        // below succeeds: putting it back in its queue under the old name would make the
        // next rename fail and the next open remove a file still in use. If the rename is
        // lost to a power cut the file simply reappears as the first one of its queue,
        // which keeps the names contiguous.
        if let Some(dir) = self.path.parent() {
            if let Err(e) = sync_dir(dir, &self.faults) {
                tracing::warn!(path = %self.path.display(), error = %e, "directory sync after deleting a file failed; the deletion stands");
            }
        }
        Ok(())
    }

    /// Where a retired file now lives.
    pub(crate) fn retired_path(&self) -> Option<&Path> {
        self.retired.get().map(PathBuf::as_path)
    }

    /// Unmaps and closes a file nobody else holds, returning its retired path (if any)
    /// still to be unlinked: the caller removes it and can time both steps.
    pub(crate) fn destroy(mut self) -> Option<PathBuf> {
        let retired = self.retired.take();
        drop(self);
        retired
    }

    /// Unmaps and unlinks a file nobody else holds (recovery cutting files past the end).
    /// Returns the removed path.
    pub(crate) fn remove(self) -> Result<PathBuf> {
        let path = self.path.clone();
        let faults = self.faults.clone();
        drop(self);
        crate::fault::remove_file(&faults, &path).map_err(|e| Error::io("remove", &path, e))?;
        Ok(path)
    }

    /// The injector this file's I/O goes through.
    pub(crate) fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// Shares the file and returns its one writer.
    pub(crate) fn into_shared(self) -> (Arc<MappedFile>, SegmentWriter) {
        let file = Arc::new(self);
        (Arc::clone(&file), SegmentWriter { file })
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // Unlinking a mapped file is safe (the inode lives until the mapping is gone,
        // which happens right after this, when the fields drop).
        if let Some(path) = self.retired.get() {
            if let Err(e) = crate::fault::remove_file(&self.faults, path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a deleted file; the next open removes it");
            }
        }
    }
}

/// RocketMQ's flush decision, pure so it can be tested on its own.
pub(crate) fn should_flush(wrote: u64, flushed: u64, size: u64, least_pages: u32) -> bool {
    if wrote <= flushed {
        return false;
    }
    if wrote == size {
        return true;
    }
    if least_pages > 0 {
        return wrote / OS_PAGE_SIZE - flushed / OS_PAGE_SIZE >= u64::from(least_pages);
    }
    true
}

/// The single writer of one shared [`MappedFile`].
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    file: Arc<MappedFile>,
}

impl SegmentWriter {
    pub(crate) fn file(&self) -> &Arc<MappedFile> {
        &self.file
    }

    /// Current write position; only this writer moves it.
    pub(crate) fn write_pos(&self) -> u64 {
        self.file.wrote.load(Ordering::Relaxed)
    }

    pub(crate) fn remaining(&self) -> u64 {
        self.file.size - self.write_pos()
    }

    /// Lets `fill` write `len` bytes at the write position, then publishes them.
    ///
    /// # Panics
    /// If fewer than `len` bytes remain (callers check `remaining` first).
    pub(crate) fn append<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
        let pos = self.write_pos();
        assert!(
            len as u64 <= self.file.size - pos,
            "append beyond the end of the file"
        );
        // SAFETY: `[pos, pos + len)` is inside the mapping (checked above) and at or above
        // the published `wrote`, where no reader builds slices; `&mut self` on the file's
        // only writer excludes other writers (module invariant 3). The mapping lives as
        // long as `self.file`.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(self.file.map.as_mut_ptr().add(pos as usize), len)
        };
        let out = fill(buf);
        self.file.wrote.store(pos + len as u64, Ordering::Release);
        out
    }

    /// Writes `bytes` at the write position through the file descriptor (`pwrite`), then
    /// publishes them. The mapping is `MAP_SHARED` over the same page cache, so readers see
    /// the bytes through it; whole pages written this way are never first zero-filled by a
    /// page fault, which makes this the faster way to append large runs (replication).
    ///
    /// # Errors
    /// The write's I/O error; nothing is published then.
    ///
    /// # Panics
    /// If fewer than `bytes.len()` bytes remain (callers check `remaining` first).
    pub(crate) fn write_through_fd(&mut self, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let pos = self.write_pos();
        assert!(
            bytes.len() as u64 <= self.file.size - pos,
            "write beyond the end of the file"
        );
        let file = &self.file;
        guarded(&file.faults, IoOp::Write, || {
            file.file.write_all_at(bytes, pos)
        })
        .map_err(|e| Error::io("pwrite", &file.path, e))?;
        self.file
            .wrote
            .store(pos + bytes.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Ends the file: writes the 8-byte BLANK header declaring the remaining bytes (if at
    /// least 8 remain) and publishes the file as full.
    pub(crate) fn finish_with_blank(&mut self) {
        let remaining = self.remaining();
        if remaining >= format::END_FILE_MIN_BLANK_LENGTH {
            let declared = u32::try_from(remaining).unwrap_or(u32::MAX);
            self.append(8, |buf| {
                let mut header = [0u8; 8];
                format::write_blank(&mut header, declared);
                buf.copy_from_slice(&header);
            });
        }
        self.file.wrote.store(self.file.size, Ordering::Release);
    }
}

fn preallocate(file: &File, size: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain FFI call on a valid, open file descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: plain FFI call on a valid, open file descriptor; no memory is passed. The
    // kernel drops the range from every mapping of the file; callers hold the file
    // exclusively, so no Rust reference points into that range.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Physical memory in bytes (for RocketMQ's "message in memory" transfer rule); 0 if the
/// OS does not say.
pub(crate) fn physical_memory_bytes() -> u64 {
    // SAFETY: `sysconf` only reads system configuration; no memory is passed.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(pages)
        .unwrap_or(0)
        .saturating_mul(u64::try_from(page_size).unwrap_or(0))
}

/// Space of the filesystem holding a path, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FsSpace {
    /// Blocks in use.
    pub used: u64,
    /// Blocks free for unprivileged users.
    pub available: u64,
}

/// `statvfs(path)`.
#[allow(clippy::useless_conversion)] // the fields are u32 on 32-bit targets
pub(crate) fn fs_space(path: &Path) -> io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `stat` points
    // to writable memory of the struct's size, which the call fills on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so the struct is initialised (it was zeroed before, too).
    let stat = unsafe { stat.assume_init() };
    let unit = u64::from(stat.f_frsize);
    Ok(FsSpace {
        used: u64::from(stat.f_blocks.saturating_sub(stat.f_bfree)).saturating_mul(unit),
        available: u64::from(stat.f_bavail).saturating_mul(unit),
    })
}

/// Creates `dir` and any missing parents, syncing each new directory into its parent: a
/// directory created without that can vanish in a power cut with everything in it.
pub(crate) fn create_dir_durable(dir: &Path, faults: &FaultInjector) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_dir_durable(parent, faults)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another thread made it meanwhile; its creator syncs the parent.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    sync_dir(parent, faults)
}

/// fsyncs a directory, making creates, renames and unlinks in it durable.
pub(crate) fn sync_dir(dir: &Path, faults: &FaultInjector) -> Result<()> {
    guarded(faults, IoOp::DirSync, || {
        File::open(dir).and_then(|d| d.sync_all())
    })
    .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_rule_matches_rocketmq() {
        let size = 64 * 4096;
        assert!(!should_flush(100, 100, size, 0), "nothing dirty");
        assert!(should_flush(101, 100, size, 0), "least 0 flushes any dirt");
        assert!(!should_flush(3 * 4096, 0, size, 4), "3 pages < 4");
        assert!(should_flush(4 * 4096, 0, size, 4), "4 pages");
        assert!(
            should_flush(size, size - 1, size, 4),
            "a full file always flushes"
        );
        assert!(
            should_flush(4096 + 10, 4096 - 10, size, 1),
            "crossing a page boundary is one page"
        );
        assert!(!should_flush(4096 + 10, 4096 + 5, size, 1), "same page");
    }

    #[test]
    fn create_allocates_writes_publishes_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let faults = FaultInjector::default();
        let size = 16 * 4096;
        let file = MappedFile::create(
            dir.path(),
            size,
            size,
            CreateOptions {
                warm: true,
                mlock: true,
            },
            &faults,
            &AtomicBool::new(false),
        )
        .expect("create");
        assert_eq!(
            file.path().file_name().and_then(|n| n.to_str()),
            Some("00000000000000065536")
        );
        // Really allocated, not sparse.
        let meta = fs::metadata(file.path()).expect("stat");
        assert_eq!(meta.len(), size);
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512 >= size,
            "file is sparse"
        );
        let (shared, mut writer) = file.into_shared();
        assert!(shared.readable_from(0).is_empty());
        writer.append(5, |b| b.copy_from_slice(b"hello"));
        assert_eq!(shared.readable_from(0), b"hello");
        assert!(shared.flush(0).expect("flush"));
        assert_eq!(shared.flushed(), 5);
        writer.finish_with_blank();
        assert!(shared.is_full());
        assert_eq!(
            &shared.readable_from(5)[4..8],
            &format::BLANK_MAGIC_CODE.to_be_bytes()
        );
        let path = shared.path().to_owned();
        drop((shared, writer));
        let mut reopened = MappedFile::open(path.clone(), size, size, &faults).expect("open");
        assert_eq!(&reopened.readable_from(0)[..5], b"hello");
        reopened.zero_from(3).expect("zero");
        assert_eq!(&reopened.readable_from(0)[..8], b"hel\0\0\0\0\0");
        let e = MappedFile::open(path, size, size * 2, &faults).expect_err("wrong size");
        assert!(matches!(
            e,
            Error::Corrupted {
                kind: CorruptionKind::WrongFileSize { .. },
                ..
            }
        ));
    }

    #[test]
    fn retired_file_is_removed_when_last_holder_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = MappedFile::create(
            dir.path(),
            0,
            4096,
            CreateOptions::default(),
            &FaultInjector::default(),
            &AtomicBool::new(false),
        )
        .expect("create");
        let (shared, mut writer) = f.into_shared();
        writer.append(4, |b| b.copy_from_slice(b"data"));
        let reader = Arc::clone(&shared);
        let path = shared.path().to_owned();
        shared.retire().expect("retire");
        shared.retire().expect("retiring twice is a no-op");
        let retired = shared.retired_path().expect("retired").to_owned();
        assert!(!path.exists(), "renamed away at once");
        assert!(retired.ends_with("00000000000000000000.deleted"));
        drop((shared, writer));
        assert!(retired.exists(), "a reader still holds it");
        assert_eq!(
            reader.readable_from(0),
            b"data",
            "and still reads the bytes"
        );
        drop(reader);
        assert!(!retired.exists());
    }

    #[test]
    fn destroy_hands_back_the_path_to_unlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = MappedFile::create(
            dir.path(),
            4096,
            4096,
            CreateOptions::default(),
            &FaultInjector::default(),
            &AtomicBool::new(false),
        )
        .expect("create");
        f.retire().expect("retire");
        let path = f.destroy().expect("retired path");
        assert!(path.exists(), "destroy leaves the unlink to the caller");
        fs::remove_file(&path).expect("unlink");
        let g = MappedFile::create(
            dir.path(),
            8192,
            4096,
            CreateOptions::default(),
            &FaultInjector::default(),
            &AtomicBool::new(false),
        )
        .expect("create");
        assert_eq!(g.destroy(), None, "a live file is only unmapped");
        assert!(dir.path().join("00000000000000008192").exists());
    }
}
