//! Fault injection for the store's file I/O (feature `fault-injection`).
//!
//! Every fallible operation the store performs on its files asks the injector first; a
//! test arms a rule such as "fail the 2nd allocation with ENOSPC, forever" and later
//! clears it. Without the feature the injector is an empty type whose check compiles to
//! nothing. Rules belong to one store (passed through its builder), so tests that inject
//! faults can run in parallel.

use std::io;

/// The classes of I/O the store performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoOp {
    /// Creating and allocating a new mapped file (`open` + `posix_fallocate`).
    Allocate,
    /// Flushing a mapped range to disk (`msync`).
    Flush,
}

#[cfg(feature = "fault-injection")]
mod imp {
    use super::IoOp;
    use std::io;
    use std::sync::{Arc, Mutex, PoisonError};

    #[derive(Debug)]
    struct Rule {
        op: IoOp,
        /// Calls of `op` still to pass before the first failure (0 = fail the next call).
        pass: u64,
        errno: i32,
        forever: bool,
    }

    /// Makes chosen I/O operations of a store fail. Cloning shares the rules.
    #[derive(Debug, Clone, Default)]
    pub struct FaultInjector {
        rules: Arc<Mutex<Vec<Rule>>>,
    }

    impl FaultInjector {
        /// An injector with no rules.
        pub fn new() -> Self {
            Self::default()
        }

        /// Fails the `nth` (1-based, counted from now) call of `op` with `errno`; with
        /// `forever`, every later call of `op` fails too, until [`clear`](Self::clear).
        pub fn fail_nth(&self, op: IoOp, nth: u64, errno: i32, forever: bool) {
            let pass = nth.saturating_sub(1);
            self.lock().push(Rule {
                op,
                pass,
                errno,
                forever,
            });
        }

        /// Removes every rule.
        pub fn clear(&self) {
            self.lock().clear();
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
            self.rules.lock().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn check(&self, op: IoOp) -> io::Result<()> {
            let mut rules = self.lock();
            let mut failure = None;
            rules.retain_mut(|rule| {
                if rule.op != op || failure.is_some() {
                    return true;
                }
                if rule.pass > 0 {
                    rule.pass -= 1;
                    return true;
                }
                failure = Some(rule.errno);
                rule.forever
            });
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
