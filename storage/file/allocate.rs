//! Background creation of the next CommitLog file (RocketMQ's AllocateMappedFileService).
//!
//! The appender asks for the file after the one it just started; the `rmq-allocate`
//! thread creates, allocates and (optionally) warms it while the current file fills, so a
//! roll-over only takes a file that is already there.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::fault::FaultInjector;
use crate::file::mmap::{CreateOptions, MappedFile};

#[derive(Debug, Default)]
struct State {
    /// Offset of the file to create next.
    wanted: Option<u64>,
    /// Offset being created right now.
    busy: Option<u64>,
    /// A finished creation, successful or not.
    ready: Option<(u64, Result<MappedFile>)>,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    dir: PathBuf,
    file_size: u64,
    opts: CreateOptions,
    faults: FaultInjector,
    /// Set on stop: cuts a warm-up in progress short.
    cancel: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle to the allocator thread.
#[derive(Debug)]
pub(crate) struct Allocator {
    shared: Arc<Shared>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Allocator {
    pub(crate) fn start(
        dir: PathBuf,
        file_size: u64,
        opts: CreateOptions,
        faults: FaultInjector,
    ) -> std::io::Result<Allocator> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            dir,
            file_size,
            opts,
            faults,
            cancel: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("rmq-allocate".into())
            .spawn(move || run(&s))?;
        Ok(Allocator {
            shared,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Asks for the file starting at `offset` to be made in the background.
    pub(crate) fn prepare(&self, offset: u64) {
        let mut st = self.shared.lock();
        Self::request(&mut st, &self.shared.cv, offset);
    }

    fn request(st: &mut State, cv: &Condvar, offset: u64) {
        let pending = st.busy == Some(offset)
            || st.wanted == Some(offset)
            || st.ready.as_ref().is_some_and(|(o, _)| *o == offset);
        if !pending {
            st.wanted = Some(offset);
            cv.notify_all();
        }
    }

    /// Takes the file starting at `offset`, waiting up to `timeout` for it to be made.
    /// `Ok(None)` on timeout; `Err` if creating it failed (e.g. disk full) — the next call
    /// tries again.
    pub(crate) fn take(&self, offset: u64, timeout: Duration) -> Result<Option<MappedFile>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some((o, made)) = st.ready.take() {
                if o == offset {
                    return made.map(Some);
                }
                // A file for an offset nobody wants any more: do not leave it lying around.
                if let Ok(file) = made {
                    let _ = file.remove();
                }
            }
            Self::request(&mut st, &self.shared.cv, offset);
            let now = Instant::now();
            if now >= deadline || st.stop {
                return Ok(None);
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Stops and joins the thread. A file made in advance stays on disk, where the next
    /// open finds it as an empty last file.
    pub(crate) fn stop(&self) {
        self.shared.cancel.store(true, Ordering::Release);
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
        let handle = self
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("allocator thread panicked");
            }
        }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(s: &Shared) {
    let mut st = s.lock();
    loop {
        if st.stop {
            return;
        }
        let Some(offset) = st.wanted.take() else {
            st = s.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        st.busy = Some(offset);
        drop(st);
        let started = Instant::now();
        let made = MappedFile::create(&s.dir, offset, s.file_size, s.opts, &s.faults, &s.cancel);
        match &made {
            Ok(f) => {
                tracing::debug!(path = %f.path().display(), took = ?started.elapsed(), "allocated");
            }
            Err(e) => {
                tracing::warn!(offset, error = %e, "could not allocate the next commitlog file");
            }
        }
        st = s.lock();
        st.busy = None;
        st.ready = Some((offset, made));
        s.cv.notify_all();
    }
}
