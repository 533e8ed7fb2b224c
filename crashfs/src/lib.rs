//! # crashfs
//!
//! A filesystem for durability tests that knows what a power cut would keep. It passes
//! every operation through to a backing directory (so the program under test runs
//! normally, memory-mapped files included) and, beside that, keeps per file the content
//! as of its last `fsync`/`fdatasync` (`msync(MS_SYNC)` of a shared mapping reaches it as
//! page writes followed by an fsync) and per directory the entries as of its last
//! directory fsync. [`CrashFs::cut`] writes an *image*: every file with its durable
//! content, each page changed since kept new, kept old or torn sector by sector, and each
//! directory change since the last directory fsync (create, unlink, rename; a rename
//! within a directory is atomic) kept or undone, all chosen from a seed. The program is
//! then started on the image, on the plain filesystem.
//!
//! The observer sits below the program: a missing fsync, a flush of the wrong range, or
//! a directory entry never synced shows up as data missing from some image.
//!
//! Mounting needs `/dev/fuse` and root (the mount is made directly, without fusermount).

mod fs;
mod model;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use model::CutReport;

use fs::{PassThrough, State};

/// How long unmounting waits for the filesystem thread before forcing it.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why crashfs cannot run here (a sentence naming what is missing: `/dev/fuse`, root), or
/// `None` when it can.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist (load the fuse module)".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("mounting without fusermount needs root".into());
    }
    None
}

/// A mounted crashfs.
pub struct CrashFs {
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for CrashFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashFs")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl CrashFs {
    /// Mounts a crashfs at `mountpoint` over `backing` (both existing directories). What
    /// `backing` already holds counts as durable.
    ///
    /// # Errors
    /// The mount failed (see [`unavailable`]), or `backing` cannot be read.
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<CrashFs> {
        let state = Arc::new(Mutex::new(State::scan(backing)?));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("crashfs".into()),
            fuser::MountOption::RW,
        ];
        let session = fuser::spawn_mount(
            PassThrough {
                state: Arc::clone(&state),
            },
            mountpoint,
            &config,
        )?;
        Ok(CrashFs {
            state,
            session: Some(session),
            mountpoint: mountpoint.to_owned(),
        })
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power: writes what survives into `image` (an empty directory), choosing
    /// with `seed`. The mounted filesystem goes on unchanged; operations wait while the
    /// image is written.
    ///
    /// # Errors
    /// Reading the backing files or writing the image failed.
    pub fn cut(&self, seed: u64, image: &Path) -> io::Result<CutReport> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.cut(seed, image)
    }

    /// Cuts the power inside the `n`th file fsync from now (1 = the next), before that
    /// fsync counts: the image holds what was durable while the program still waited for
    /// it. Returns the instant of the cut (anything the program was told was durable
    /// before it must be in the image) and what the cut chose, or `None` if no `n`th fsync
    /// came within `timeout` (the trigger is then disarmed).
    ///
    /// # Errors
    /// Writing the image failed.
    pub fn cut_during_fsync(
        &self,
        n: u64,
        seed: u64,
        image: &Path,
        timeout: Duration,
    ) -> io::Result<Option<(std::time::Instant, CutReport)>> {
        let (done, fired) = std::sync::mpsc::channel();
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .armed = Some(fs::Armed {
            remaining: n.max(1),
            seed,
            image: image.to_owned(),
            done,
        });
        if let Ok(result) = fired.recv_timeout(timeout) {
            return result.map(Some);
        }
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .armed = None;
        // It may have fired between the timeout and the disarm.
        fired.try_recv().ok().transpose()
    }

    /// Unmounts and waits for the filesystem thread, forcing the connection closed if it
    /// does not end within 10 s.
    ///
    /// # Errors
    /// Unmounting failed even lazily.
    pub fn unmount(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let mountpoint = self.mountpoint.clone();
        let connection = fs::connection_id(&mountpoint);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let joiner = std::thread::spawn(move || {
            let _ = done_tx.send(session.umount_and_join());
        });
        if let Ok(result) = done_rx.recv_timeout(UNMOUNT_TIMEOUT) {
            let _ = joiner.join();
            return result.or_else(|_| fs::lazy_unmount(&mountpoint));
        }
        // Busy or hung: detach the mount and abort the connection so the thread (and
        // anything blocked on the mount) returns.
        let detached = fs::lazy_unmount(&mountpoint);
        if let Some(id) = connection {
            let _ = std::fs::write(format!("/sys/fs/fuse/connections/{id}/abort"), b"1");
        }
        if done_rx.recv_timeout(UNMOUNT_TIMEOUT).is_ok() {
            let _ = joiner.join();
        }
        detached
    }
}

impl Drop for CrashFs {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
