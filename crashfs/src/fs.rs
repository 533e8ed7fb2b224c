//! The FUSE side: a pass-through to the backing directory that feeds the durability model
//! on every change, and the cut that writes an image from it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{CutReport, DirModel, DirOp, FileModel, Rng, PAGE};

/// Where unlinked and replaced files wait (their content may come back in an image).
const GRAVEYARD: &str = ".crashfs-graveyard";
/// Attributes and entries are not cached: renames and size changes show at once.
const TTL: Duration = Duration::ZERO;

#[derive(Debug)]
enum Kind {
    File(FileModel),
    Dir {
        entries: BTreeMap<OsString, u64>,
        model: DirModel,
    },
}

#[derive(Debug)]
struct Node {
    /// Path relative to the backing directory (in the graveyard once unlinked).
    path: PathBuf,
    kind: Kind,
}

/// A cut waiting for a file fsync to arrive.
#[derive(Debug)]
pub(crate) struct Armed {
    /// File fsyncs still to pass; the cut happens inside the one that brings this to 0.
    pub remaining: u64,
    pub seed: u64,
    pub image: PathBuf,
    pub done: std::sync::mpsc::Sender<io::Result<(Instant, CutReport)>>,
}

/// Everything the filesystem knows; one lock serialises every operation and the cut.
#[derive(Debug)]
pub(crate) struct State {
    backing: PathBuf,
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    handles: HashMap<u64, File>,
    next_fh: u64,
    pub(crate) armed: Option<Armed>,
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

impl State {
    /// Takes what `backing` holds as durable.
    pub(crate) fn scan(backing: &Path) -> io::Result<State> {
        let mut state = State {
            backing: backing.to_owned(),
            nodes: HashMap::new(),
            next_ino: 2,
            handles: HashMap::new(),
            next_fh: 1,
            armed: None,
        };
        let graveyard = backing.join(GRAVEYARD);
        if graveyard.exists() {
            fs::remove_dir_all(&graveyard)?;
        }
        fs::create_dir(&graveyard)?;
        state.scan_dir(1, PathBuf::new())?;
        Ok(state)
    }

    fn scan_dir(&mut self, ino: u64, rel: PathBuf) -> io::Result<()> {
        let mut entries = BTreeMap::new();
        for e in fs::read_dir(self.backing.join(&rel))? {
            let e = e?;
            let name = e.file_name();
            if rel.as_os_str().is_empty() && name == GRAVEYARD {
                continue;
            }
            let child = self.next_ino;
            self.next_ino += 1;
            let path = rel.join(&name);
            if e.file_type()?.is_dir() {
                self.scan_dir(child, path)?;
            } else {
                let size = e.metadata()?.len();
                self.nodes.insert(
                    child,
                    Node {
                        path,
                        kind: Kind::File(FileModel::durable(size)),
                    },
                );
            }
            entries.insert(name, child);
        }
        let model = DirModel {
            durable: entries.clone(),
            pending: Vec::new(),
        };
        self.nodes.insert(
            ino,
            Node {
                path: rel,
                kind: Kind::Dir { entries, model },
            },
        );
        Ok(())
    }

    fn full(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.nodes
            .get(&ino)
            .map(|n| self.backing.join(&n.path))
            .ok_or(Errno::ENOENT)
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let m = fs::symlink_metadata(self.full(ino)?).map_err(|e| errno(&e))?;
        let time = |secs: i64, nanos: i64| {
            UNIX_EPOCH
                + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
                + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size: m.len(),
            blocks: m.blocks(),
            atime: time(m.atime(), m.atime_nsec()),
            mtime: time(m.mtime(), m.mtime_nsec()),
            ctime: time(m.ctime(), m.ctime_nsec()),
            crtime: SystemTime::UNIX_EPOCH,
            kind: if m.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev() as u32,
            blksize: m.blksize() as u32,
            flags: 0,
        })
    }

    fn entries_mut(
        &mut self,
        dir: u64,
    ) -> Result<(&mut BTreeMap<OsString, u64>, &mut DirModel), Errno> {
        match self.nodes.get_mut(&dir).map(|n| &mut n.kind) {
            Some(Kind::Dir { entries, model }) => Ok((entries, model)),
            Some(Kind::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn child(&self, dir: u64, name: &OsStr) -> Result<u64, Errno> {
        match self.nodes.get(&dir).map(|n| &n.kind) {
            Some(Kind::Dir { entries, .. }) => entries.get(name).copied().ok_or(Errno::ENOENT),
            Some(Kind::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn child_path(&self, dir: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        let parent = self.nodes.get(&dir).ok_or(Errno::ENOENT)?;
        Ok(parent.path.join(name))
    }

    /// Records `[offset, offset + len)` of file `ino` as about to change.
    fn will_change(&mut self, ino: u64, offset: u64, len: u64) -> Result<(), Errno> {
        let path = self.full(ino)?;
        let Some(Node {
            kind: Kind::File(model),
            ..
        }) = self.nodes.get_mut(&ino)
        else {
            return Err(Errno::EISDIR);
        };
        let file = File::open(&path).map_err(|e| errno(&e))?;
        model.will_change(offset, len, |page| {
            let mut buf = vec![0u8; PAGE as usize];
            let n = read_full(&file, &mut buf, page * PAGE);
            buf.truncate(n);
            buf
        });
        Ok(())
    }

    /// `name` in `dir` no longer names `ino` (unlink, rmdir): gone now, undone or not by a
    /// cut until the directory is synced.
    fn forget(&mut self, dir: u64, name: &OsStr, ino: u64) -> Result<(), Errno> {
        let (entries, model) = self.entries_mut(dir)?;
        entries.remove(name);
        model.pending.push(DirOp::Unlink {
            name: name.to_owned(),
            ino,
        });
        Ok(())
    }

    fn new_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// Moves a file that loses its name into the graveyard (its content may come back).
    fn bury(&mut self, ino: u64) -> Result<(), Errno> {
        let from = self.full(ino)?;
        let rel = Path::new(GRAVEYARD).join(ino.to_string());
        fs::rename(&from, self.backing.join(&rel)).map_err(|e| errno(&e))?;
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.path = rel;
        }
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
    ) -> Result<(), Errno> {
        let ino = self.child(parent, name)?;
        let replaced = self.child(newparent, newname).ok();
        if let Some(old) = replaced {
            if matches!(
                self.nodes.get(&old).map(|n| &n.kind),
                Some(Kind::Dir { .. })
            ) {
                return Err(Errno::EISDIR);
            }
            self.bury(old)?;
        }
        let from = self.full(ino)?;
        let to_rel = self.child_path(newparent, newname)?;
        fs::rename(&from, self.backing.join(&to_rel)).map_err(|e| errno(&e))?;
        let old_rel = self
            .nodes
            .get(&ino)
            .map(|n| n.path.clone())
            .unwrap_or_default();
        for n in self.nodes.values_mut() {
            if let Ok(rest) = n.path.strip_prefix(&old_rel) {
                // (`join("")` would add a trailing slash.)
                n.path = if rest.as_os_str().is_empty() {
                    to_rel.clone()
                } else {
                    to_rel.join(rest)
                };
            }
        }
        let (entries, model) = self.entries_mut(parent)?;
        entries.remove(name);
        if parent == newparent {
            entries.insert(newname.to_owned(), ino);
            model.pending.push(DirOp::Rename {
                from: name.to_owned(),
                to: newname.to_owned(),
                ino,
            });
        } else {
            model.pending.push(DirOp::Unlink {
                name: name.to_owned(),
                ino,
            });
            let (entries, model) = self.entries_mut(newparent)?;
            entries.insert(newname.to_owned(), ino);
            model.pending.push(DirOp::Create {
                name: newname.to_owned(),
                ino,
            });
        }
        Ok(())
    }

    /// Writes what survives a power cut into `image`.
    pub(crate) fn cut(&self, seed: u64, image: &Path) -> io::Result<CutReport> {
        let mut rng = Rng::new(seed);
        let mut report = CutReport::default();
        self.cut_dir(1, image, &mut rng, &mut report)?;
        Ok(report)
    }

    fn cut_dir(
        &self,
        ino: u64,
        to: &Path,
        rng: &mut Rng,
        report: &mut CutReport,
    ) -> io::Result<()> {
        let Some(Node {
            kind: Kind::Dir { model, .. },
            ..
        }) = self.nodes.get(&ino)
        else {
            return Ok(());
        };
        fs::create_dir_all(to)?;
        for (name, child) in model.image(rng, report) {
            let Some(node) = self.nodes.get(&child) else {
                continue;
            };
            let target = to.join(&name);
            match &node.kind {
                Kind::Dir { .. } => self.cut_dir(child, &target, rng, report)?,
                Kind::File(file) => {
                    let current = fs::read(self.backing.join(&node.path))?;
                    fs::write(&target, file.image(&current, rng, report))?;
                    report.files += 1;
                }
            }
        }
        Ok(())
    }
}

fn read_full(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

/// The FUSE connection number of the mount at `mountpoint` (its device's minor number),
/// for aborting a hung connection.
pub(crate) fn connection_id(mountpoint: &Path) -> Option<u64> {
    let dev = fs::metadata(mountpoint).ok()?.dev();
    Some(nix::sys::stat::minor(dev))
}

/// Detaches the mount now; the kernel finishes it when nothing uses it.
pub(crate) fn lazy_unmount(mountpoint: &Path) -> io::Result<()> {
    nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
}

/// The `fuser` filesystem.
pub(crate) struct PassThrough {
    pub(crate) state: Arc<Mutex<State>>,
}

impl PassThrough {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fuser::Filesystem for PassThrough {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let st = self.lock();
        match st.child(parent.0, name).and_then(|ino| st.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.lock();
        let result = (|| {
            if let Some(size) = size {
                let path = st.full(ino.0)?;
                let now = fs::metadata(&path).map_err(|e| errno(&e))?.len();
                let (lo, hi) = (now.min(size), now.max(size));
                st.will_change(ino.0, lo, hi - lo)?;
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(size))
                    .map_err(|e| errno(&e))?;
            }
            st.attr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let result = (|| {
            if st.child(parent.0, name).is_ok() {
                return Err(Errno::EEXIST);
            }
            let rel = st.child_path(parent.0, name)?;
            fs::create_dir(st.backing.join(&rel)).map_err(|e| errno(&e))?;
            let ino = st.new_ino();
            st.nodes.insert(
                ino,
                Node {
                    path: rel,
                    kind: Kind::Dir {
                        entries: BTreeMap::new(),
                        model: DirModel::default(),
                    },
                },
            );
            let (entries, model) = st.entries_mut(parent.0)?;
            entries.insert(name.to_owned(), ino);
            model.pending.push(DirOp::Create {
                name: name.to_owned(),
                ino,
            });
            st.attr(ino)
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let result = (|| {
            let ino = st.child(parent.0, name)?;
            st.bury(ino)?;
            st.forget(parent.0, name, ino)
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let result = (|| {
            let ino = st.child(parent.0, name)?;
            fs::remove_dir(st.full(ino)?).map_err(|e| errno(&e))?;
            st.nodes.remove(&ino);
            st.forget(parent.0, name, ino)
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.lock().rename(parent.0, name, newparent.0, newname) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut st = self.lock();
        let result = (|| {
            let path = st.full(ino.0)?;
            if flags.0 & libc::O_TRUNC != 0 {
                let len = fs::metadata(&path).map_err(|e| errno(&e))?.len();
                st.will_change(ino.0, 0, len)?;
            }
            let file = open_backing(&path, flags.0).map_err(|e| errno(&e))?;
            let fh = st.next_fh;
            st.next_fh += 1;
            st.handles.insert(fh, file);
            Ok(fh)
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.lock();
        let result = (|| {
            if let Ok(existing) = st.child(parent.0, name) {
                if flags & libc::O_EXCL != 0 {
                    return Err(Errno::EEXIST);
                }
                let path = st.full(existing)?;
                if flags & libc::O_TRUNC != 0 {
                    let len = fs::metadata(&path).map_err(|e| errno(&e))?.len();
                    st.will_change(existing, 0, len)?;
                }
                let file = open_backing(&path, flags).map_err(|e| errno(&e))?;
                return Ok((existing, file));
            }
            let rel = st.child_path(parent.0, name)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode & 0o7777)
                .open(st.backing.join(&rel))
                .map_err(|e| errno(&e))?;
            let ino = st.new_ino();
            st.nodes.insert(
                ino,
                Node {
                    path: rel,
                    kind: Kind::File(FileModel::default()),
                },
            );
            let (entries, model) = st.entries_mut(parent.0)?;
            entries.insert(name.to_owned(), ino);
            model.pending.push(DirOp::Create {
                name: name.to_owned(),
                ino,
            });
            Ok((ino, file))
        })();
        match result.and_then(|(ino, file)| Ok((st.attr(ino)?, file))) {
            Ok((attr, file)) => {
                let fh = st.next_fh;
                st.next_fh += 1;
                st.handles.insert(fh, file);
                reply.created(
                    &TTL,
                    &attr,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                );
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let st = self.lock();
        let Some(file) = st.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let n = read_full(file, &mut buf, offset);
        reply.data(&buf[..n]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.lock();
        if let Err(e) = st.will_change(ino.0, offset, data.len() as u64) {
            return reply.error(e);
        }
        let Some(file) = st.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        match file.write_all_at(data, offset) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        // An armed cut happens here, before this fsync counts: the power failed while
        // the program was still waiting for it.
        if let Some(armed) = st.armed.as_mut() {
            armed.remaining = armed.remaining.saturating_sub(1);
            if armed.remaining == 0 {
                if let Some(armed) = st.armed.take() {
                    let at = Instant::now();
                    let result = st.cut(armed.seed, &armed.image).map(|r| (at, r));
                    let _ = armed.done.send(result);
                }
            }
        }
        let size = match st
            .full(ino.0)
            .and_then(|p| fs::metadata(p).map_err(|e| errno(&e)))
        {
            Ok(m) => m.len(),
            Err(e) => return reply.error(e),
        };
        if let Some(Node {
            kind: Kind::File(model),
            ..
        }) = st.nodes.get_mut(&ino.0)
        {
            model.synced(size);
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let st = self.lock();
        let Some(Node {
            kind: Kind::Dir { entries, .. },
            ..
        }) = st.nodes.get(&ino.0)
        else {
            return reply.error(Errno::ENOTDIR);
        };
        let listed = [
            (ino.0, FileType::Directory, OsString::from(".")),
            (1, FileType::Directory, OsString::from("..")),
        ]
        .into_iter()
        .chain(entries.iter().map(|(name, &child)| {
            let kind = match st.nodes.get(&child).map(|n| &n.kind) {
                Some(Kind::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (child, kind, name.clone())
        }));
        for (i, (child, kind, name)) in listed.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.lock().entries_mut(ino.0) {
            Ok((entries, model)) => {
                let now = entries.clone();
                model.synced(&now);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let backing = self.lock().backing.clone();
        match nix::sys::statvfs::statvfs(&backing) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        if let Err(e) = st.will_change(ino.0, offset, length) {
            return reply.error(e);
        }
        let Some(file) = st.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let flags = nix::fcntl::FallocateFlags::from_bits_truncate(mode);
        match nix::fcntl::fallocate(file, flags, offset as i64, length as i64) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }
}

fn open_backing(path: &Path, flags: i32) -> io::Result<File> {
    let mut o = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        libc::O_RDONLY => o.read(true),
        libc::O_WRONLY => o.write(true),
        _ => o.read(true).write(true),
    };
    if flags & libc::O_TRUNC != 0 {
        o.truncate(true);
    }
    // O_APPEND is left to the kernel: FUSE sends writes with their offsets.
    o.open(path)
}
