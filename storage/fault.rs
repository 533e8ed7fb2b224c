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
    use std::time::Duration;

    #[derive(Debug)]
    enum Action {
        Fail { errno: i32, forever: bool },
        Delay(Duration),
    }

    #[derive(Debug)]
    struct Rule {
        op: IoOp,
        /// Calls of `op` still to pass before the rule applies (0 = from the next call).
        pass: u64,
        action: Action,
    }

    /// Makes chosen I/O operations of a store fail or stall. Cloning shares the rules.
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
                action: Action::Fail { errno, forever },
            });
        }

        /// Makes every call of `op` take `delay` longer (a slow disk), until cleared.
        pub fn delay(&self, op: IoOp, delay: Duration) {
            self.lock().push(Rule {
                op,
                pass: 0,
                action: Action::Delay(delay),
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
            let mut stall = Duration::ZERO;
            let mut failure = None;
            {
                let mut rules = self.lock();
                rules.retain_mut(|rule| {
                    if rule.op != op || failure.is_some() {
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
