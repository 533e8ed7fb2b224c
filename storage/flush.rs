//! Durability: group commit for SYNC_FLUSH and the periodic flusher for ASYNC_FLUSH.
//!
//! [`GroupCommit`] serializes flushes and tracks the durable offset. A SYNC_FLUSH put
//! waits in [`GroupCommit::wait_durable`]: the first waiter that finds no flush running
//! becomes the leader and flushes everything published so far, which covers every writer
//! that appended before it started; the others sleep until that round ends and re-check.
//! One flush thus serves all waiting writers without a hand-off to another thread.
//!
//! A failed flush poisons the write path (RELIABILITY.md rule 2): the kernel may already
//! have marked the pages clean, so a retry could "succeed" without the data being on disk.
//! Waiters above the last good flush get an error and later puts are refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::{Error, Result};

/// Outcome of waiting for a record's flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushWait {
    /// The record's end offset is durable.
    Durable,
    /// The deadline passed first (the record stays stored).
    TimedOut,
}

#[derive(Debug)]
pub(crate) struct GroupCommit {
    /// Held while a flush runs.
    flush_lock: Mutex<()>,
    /// Everything below this CommitLog offset is on disk.
    durable: CachePadded<AtomicU64>,
    /// Bumped after every flush attempt, so waiters know a round ended.
    round: Mutex<u64>,
    round_done: Condvar,
    poisoned: AtomicBool,
}

impl GroupCommit {
    pub(crate) fn new(durable: u64) -> Self {
        GroupCommit {
            flush_lock: Mutex::new(()),
            durable: CachePadded::new(AtomicU64::new(durable)),
            round: Mutex::new(0),
            round_done: Condvar::new(),
            poisoned: AtomicBool::new(false),
        }
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Runs one flush; `flush` returns the new durable offset.
    pub(crate) fn flush_with(&self, flush: impl FnOnce() -> Result<u64>) -> Result<()> {
        let guard = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.run_round(guard, flush)
    }

    fn run_round(
        &self,
        guard: MutexGuard<'_, ()>,
        flush: impl FnOnce() -> Result<u64>,
    ) -> Result<()> {
        if self.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let outcome = flush();
        match &outcome {
            Ok(durable) => {
                self.durable.fetch_max(*durable, Ordering::AcqRel);
            }
            Err(e) => {
                tracing::error!(error = %e, "flush failed; the store refuses writes until reopened");
                self.poisoned.store(true, Ordering::Release);
            }
        }
        drop(guard);
        *self.round.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.round_done.notify_all();
        outcome.map(|_| ())
    }

    /// Waits until `end` is durable, flushing as the leader when no flush is running.
    pub(crate) fn wait_durable(
        &self,
        end: u64,
        timeout: Duration,
        flush: impl Fn() -> Result<u64>,
    ) -> Result<FlushWait> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.durable() >= end {
                return Ok(FlushWait::Durable);
            }
            if self.is_poisoned() {
                return Err(Error::Poisoned);
            }
            if Instant::now() >= deadline {
                return Ok(FlushWait::TimedOut);
            }
            let round = *self.round.lock().unwrap_or_else(PoisonError::into_inner);
            match self.flush_lock.try_lock() {
                Ok(guard) => {
                    if self.durable() < end {
                        self.run_round(guard, &flush)?;
                    }
                    continue;
                }
                Err(TryLockError::Poisoned(p)) => {
                    if self.durable() < end {
                        self.run_round(p.into_inner(), &flush)?;
                    }
                    continue;
                }
                Err(TryLockError::WouldBlock) => {}
            }
            let mut current = self.round.lock().unwrap_or_else(PoisonError::into_inner);
            while *current == round {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(if self.durable() >= end {
                        FlushWait::Durable
                    } else {
                        FlushWait::TimedOut
                    });
                }
                current = self
                    .round_done
                    .wait_timeout(current, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
}

/// ASYNC_FLUSH page threshold with RocketMQ's thorough rule (§5.2): at least every
/// `thorough` flush whatever is dirty.
#[derive(Debug)]
pub(crate) struct PeriodicFlushPolicy {
    least_pages: u32,
    thorough: Duration,
    last_thorough: Instant,
}

impl PeriodicFlushPolicy {
    pub(crate) fn new(least_pages: u32, thorough: Duration, now: Instant) -> Self {
        PeriodicFlushPolicy {
            least_pages,
            thorough,
            last_thorough: now,
        }
    }

    /// The page threshold for a flush at `now`.
    pub(crate) fn least_pages(&mut self, now: Instant) -> u32 {
        if now.duration_since(self.last_thorough) >= self.thorough {
            self.last_thorough = now;
            0
        } else {
            self.least_pages
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    #[test]
    fn thorough_rule() {
        let t0 = Instant::now();
        let mut p = PeriodicFlushPolicy::new(4, Duration::from_secs(10), t0);
        assert_eq!(p.least_pages(t0 + Duration::from_secs(1)), 4);
        assert_eq!(p.least_pages(t0 + Duration::from_secs(10)), 0);
        assert_eq!(p.least_pages(t0 + Duration::from_secs(11)), 4);
        assert_eq!(p.least_pages(t0 + Duration::from_secs(20)), 0);
    }

    #[test]
    fn one_flush_serves_many_waiters() {
        let gc = Arc::new(GroupCommit::new(0));
        let flushes = Arc::new(AtomicU32::new(0));
        let published = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (1..=8u64)
            .map(|i| {
                let (gc, flushes, published) = (
                    Arc::clone(&gc),
                    Arc::clone(&flushes),
                    Arc::clone(&published),
                );
                std::thread::spawn(move || {
                    published.fetch_max(i * 100, Ordering::SeqCst);
                    gc.wait_durable(i * 100, Duration::from_secs(5), || {
                        flushes.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        Ok(published.load(Ordering::SeqCst))
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("join").expect("wait"), FlushWait::Durable);
        }
        assert!(gc.durable() >= 800);
        assert!(flushes.load(Ordering::SeqCst) < 8, "flushes were shared");
    }

    #[test]
    fn failed_flush_poisons_and_is_not_retried() {
        let gc = GroupCommit::new(100);
        assert_eq!(
            gc.wait_durable(50, Duration::from_secs(1), || Ok(100))
                .expect("durable"),
            FlushWait::Durable
        );
        let e = gc
            .wait_durable(200, Duration::from_secs(1), || Err(Error::Poisoned))
            .expect_err("flush fails");
        assert!(matches!(e, Error::Poisoned));
        let attempts = AtomicU32::new(0);
        let e = gc
            .wait_durable(200, Duration::from_secs(1), || {
                attempts.fetch_add(1, Ordering::SeqCst);
                Ok(300)
            })
            .expect_err("poisoned");
        assert!(matches!(e, Error::Poisoned));
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            0,
            "never retried after a failure"
        );
        assert_eq!(
            gc.wait_durable(100, Duration::from_secs(1), || Ok(0))
                .expect("below"),
            FlushWait::Durable
        );
    }

    #[test]
    fn timeout_when_flush_never_covers() {
        let gc = GroupCommit::new(0);
        let r = gc
            .wait_durable(10, Duration::from_millis(30), || Ok(5))
            .expect("no error");
        assert_eq!(r, FlushWait::TimedOut);
    }
}
