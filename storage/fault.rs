//! Fault injection for the store's file I/O (feature `fault-injection`).
//!
//! Every fallible operation the store performs on its files asks the injector first; a
//! test arms a rule such as "fail the 2nd allocation with ENOSPC, forever" and later
//! clears it. Without the feature the injector is an empty type whose check compiles to
//! nothing. Rules belong to one store (passed through its builder), so tests that inject
//! faults can run in parallel.

use std::io;

/// The classes of I/O the store performs. Every one of them goes through [`guarded`] (or
/// a helper here built on it), so a test can fail any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoOp {
    /// Creating a file and reserving its space (`open(O_CREAT)` + `posix_fallocate`, or
    /// `set_len` for checkpoint files).
    Allocate,
    /// Mapping a file into memory (`mmap`).
    Map,
    /// Writing bytes through a file descriptor (checkpoints, the lock file, a slave's
    /// replicated records); a master's records are copied into mappings and become I/O
    /// at [`Flush`](Self::Flush).
    Write,
    /// Making written bytes durable (`msync`, `fsync`, `fdatasync`).
    Flush,
    /// Renaming a file (a finished `*.tmp`, or a deleted file to `*.deleted`).
    Rename,
    /// Removing a file.
    Unlink,
    /// Making a directory's entries durable (`fsync` of the directory).
    DirSync,
}

#[cfg(feature = "fault-injection")]
mod imp {
    use super::IoOp;
    use std::io;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    #[derive(Debug)]
    enum Action {
        Fail { errno: i32, forever: bool },
        Delay(Duration),
    }

    #[derive(Debug)]
    struct Rule {
        /// The class this rule counts and hits; `None`: every class.
        op: Option<IoOp>,
        /// Calls still to pass before the rule applies (0 = from the next call).
        pass: u64,
        action: Action,
    }

    /// A failure the injector produced.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Injected {
        /// The operation that failed.
        pub op: IoOp,
        /// Its errno.
        pub errno: i32,
        /// Which call it was, counting every class from the injector's creation (1-based).
        pub call: u64,
    }

    #[derive(Debug, Default)]
    struct State {
        rules: Vec<Rule>,
        calls: u64,
        injected: Vec<Injected>,
    }

    /// Makes chosen I/O operations of a store fail or stall. Cloning shares the rules.
    #[derive(Debug, Clone, Default)]
    pub struct FaultInjector {
        state: Arc<Mutex<State>>,
    }

    impl FaultInjector {
        /// An injector with no rules.
        pub fn new() -> Self {
            Self::default()
        }

        /// Fails the `nth` (1-based, counted from now) call of `op` with `errno`; with
        /// `forever`, every later call of `op` fails too, until [`clear`](Self::clear).
        pub fn fail_nth(&self, op: IoOp, nth: u64, errno: i32, forever: bool) {
            self.push(Some(op), nth, Action::Fail { errno, forever });
        }

        /// Fails the `nth` (1-based, counted from now) I/O call of any class with `errno`;
        /// with `forever`, every later call fails too. For countdown sweeps.
        pub fn fail_nth_call(&self, nth: u64, errno: i32, forever: bool) {
            self.push(None, nth, Action::Fail { errno, forever });
        }

        /// Makes every call of `op` take `delay` longer (a slow disk), until cleared.
        pub fn delay(&self, op: IoOp, delay: Duration) {
            self.push(Some(op), 1, Action::Delay(delay));
        }

        /// Removes every rule (the call count and the record of failures stay).
        pub fn clear(&self) {
            self.lock().rules.clear();
        }

        /// I/O calls seen so far, every class.
        pub fn calls(&self) -> u64 {
            self.lock().calls
        }

        /// The failures produced so far, oldest first.
        pub fn injected(&self) -> Vec<Injected> {
            self.lock().injected.clone()
        }

        fn push(&self, op: Option<IoOp>, nth: u64, action: Action) {
            self.lock().rules.push(Rule {
                op,
                pass: nth.saturating_sub(1),
                action,
            });
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn check(&self, op: IoOp) -> io::Result<()> {
            let mut stall = Duration::ZERO;
            let mut failure = None;
            {
                let mut state = self.lock();
                state.calls += 1;
                let call = state.calls;
                state.rules.retain_mut(|rule| {
                    if rule.op.is_some_and(|o| o != op) || failure.is_some() {
                        return true;
                    }
                    if rule.pass > 0 {
                        rule.pass -= 1;
                        return true;
                    }
                    match rule.action {
                        Action::Delay(d) => {
                            stall += d;
                            true
                        }
                        Action::Fail { errno, forever } => {
                            failure = Some(errno);
                            forever
                        }
                    }
                });
                if let Some(errno) = failure {
                    state.injected.push(Injected { op, errno, call });
                    tracing::debug!(?op, errno, call, "injected I/O failure");
                }
            }
            if !stall.is_zero() {
                std::thread::sleep(stall);
            }
            failure.map_or(Ok(()), |errno| Err(io::Error::from_raw_os_error(errno)))
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
mod imp {
    use super::IoOp;
    use std::io;

    /// Without the `fault-injection` feature: never fails, costs nothing.
    #[derive(Debug, Clone, Default)]
    pub struct FaultInjector {
        _private: (),
    }

    impl FaultInjector {
        #[inline]
        #[allow(clippy::unused_self, clippy::unnecessary_wraps)] // same signature as with the feature
        pub(crate) fn check(&self, _op: IoOp) -> io::Result<()> {
            Ok(())
        }
    }
}

pub use imp::FaultInjector;
#[cfg(feature = "fault-injection")]
pub use imp::Injected;

/// Runs `f` unless the injector says this call of `op` fails.
#[inline]
pub(crate) fn guarded<T>(
    faults: &FaultInjector,
    op: IoOp,
    f: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    faults.check(op)?;
    f()
}

/// Removes a file, through the injector.
pub(crate) fn remove_file(faults: &FaultInjector, path: &std::path::Path) -> io::Result<()> {
    guarded(faults, IoOp::Unlink, || std::fs::remove_file(path))
}

/// Renames a file, through the injector.
pub(crate) fn rename(
    faults: &FaultInjector,
    from: &std::path::Path,
    to: &std::path::Path,
) -> io::Result<()> {
    guarded(faults, IoOp::Rename, || std::fs::rename(from, to))
}
