//! Durability: group commit for SYNC_FLUSH and the periodic flusher for ASYNC_FLUSH.
//!
//! [`GroupCommit`] serializes flushes and tracks the durable offset. A SYNC_FLUSH put
//! waits in [`GroupCommit::wait_durable`]: the first waiter that finds no flush running
//! becomes the leader and flushes everything published so far, which covers every writer
//! that appended before it started; the others sleep until that round ends and re-check.
//! One flush thus serves all waiting writers without a hand-off to another thread.
//!
//! A leader that starts right after a round ended would flush only the few writers that
//! have re-entered so far while the others are still waking up, which halves the groups.
//! So a leader first gathers: it parks until a target number of writers has arrived since
//! the last flush, for at most half the last flush's duration (capped at [`MAX_GATHER`]).
//! The target follows what works: it stays at the group size reached, and every
//! [`PROBE_EVERY`] steady rounds it tries one more; a timeout brings it back down.
//!
//! A failed flush poisons the write path: the kernel may already
//! have marked the pages clean, so a retry could "succeed" without the data being on disk.
//! Waiters above the last good flush get an error and later puts are refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::{Error, Result};

/// Longest time a group-commit leader waits for more writers to join its flush.
pub(crate) const MAX_GATHER: Duration = Duration::from_millis(1);
/// Steady rounds after which a leader tries to gather one writer more than the target.
pub(crate) const PROBE_EVERY: u32 = 8;

/// Group-commit sizing, owned by whoever holds the flush lock.
#[derive(Debug)]
struct FlushState {
    /// Arrivals covered by the last flush.
    covered_arrivals: u64,
    /// Writers a leader gathers before flushing.
    target: u64,
    /// Rounds in a row that reached the target.
    steady_rounds: u32,
}

/// Outcome of waiting for a record's flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushWait {
    /// The record's end offset is durable.
    Durable,
    /// The deadline passed first (the record stays stored).
    TimedOut,
}

/// A writer parked until a flush covers `end` (or it is picked to lead the next one).
#[derive(Debug)]
struct Waiter {
    end: u64,
    thread: Thread,
    woken: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct GroupCommit {
    /// Held while a flush runs (by a leader also while it gathers).
    flush_lock: Mutex<FlushState>,
    /// True while a leader holds `flush_lock` (gathering or flushing); read under `parked`
    /// so a writer never parks after the round that should have woken it.
    flushing: AtomicBool,
    /// Everything below this CommitLog offset is on disk.
    durable: CachePadded<AtomicU64>,
    /// Writers waiting for a running flush.
    parked: Mutex<Vec<Arc<Waiter>>>,
    poisoned: AtomicBool,
    /// Writers that have appended and started waiting, counted since open.
    arrivals: AtomicU64,
    /// While a leader gathers: the arrival count that ends its gathering (else `u64::MAX`).
    gather_goal: AtomicU64,
    /// The leader parked in `gather`.
    gatherer: Mutex<Option<Thread>>,
    /// Duration of the last leader flush.
    last_flush_ns: AtomicU64,
    /// Flushes run by group-commit leaders (for statistics).
    leader_flushes: AtomicU64,
}

impl GroupCommit {
    pub(crate) fn new(durable: u64) -> Self {
        GroupCommit {
            flush_lock: Mutex::new(FlushState {
                covered_arrivals: 0,
                target: 1,
                steady_rounds: 0,
            }),
            flushing: AtomicBool::new(false),
            durable: CachePadded::new(AtomicU64::new(durable)),
            parked: Mutex::new(Vec::new()),
            poisoned: AtomicBool::new(false),
            arrivals: AtomicU64::new(0),
            gather_goal: AtomicU64::new(u64::MAX),
            gatherer: Mutex::new(None),
            last_flush_ns: AtomicU64::new(0),
            leader_flushes: AtomicU64::new(0),
        }
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Flushes run by writers waiting for SYNC_FLUSH (not by the background flusher).
    pub(crate) fn leader_flushes(&self) -> u64 {
        self.leader_flushes.load(Ordering::Relaxed)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    fn lock_parked(&self) -> MutexGuard<'_, Vec<Arc<Waiter>>> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
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
        mut guard: MutexGuard<'_, FlushState>,
        flush: impl FnOnce() -> Result<u64>,
    ) -> Result<()> {
        if self.is_poisoned() {
            return Err(Error::Poisoned);
        }
        self.flushing.store(true, Ordering::Release);
        // Every writer that arrived so far appended before arriving: this flush covers it.
        guard.covered_arrivals = self.arrivals.load(Ordering::Acquire);
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
        self.flushing.store(false, Ordering::Release);
        drop(guard);
        self.wake();
        outcome.map(|_| ())
    }

    /// Wakes every parked writer the durable offset now covers (all of them after a
    /// failure), plus one that is not covered, to lead the next flush.
    fn wake(&self) {
        let durable = self.durable();
        let poisoned = self.is_poisoned();
        let mut next_leader_picked = false;
        let mut parked = self.lock_parked();
        parked.retain(|w| {
            let wake =
                poisoned || w.end <= durable || !std::mem::replace(&mut next_leader_picked, true);
            if wake {
                w.woken.store(true, Ordering::Release);
                w.thread.unpark();
            }
            !wake
        });
    }

    /// Waits until `end` is durable, flushing as the leader when no flush is running.
    pub(crate) fn wait_durable(
        &self,
        end: u64,
        timeout: Duration,
        flush: impl Fn() -> Result<u64>,
    ) -> Result<FlushWait> {
        let deadline = Instant::now() + timeout;
        let arrived = self.arrivals.fetch_add(1, Ordering::AcqRel) + 1;
        if arrived >= self.gather_goal.load(Ordering::Acquire) {
            if let Some(leader) = self
                .gatherer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                leader.unpark();
            }
        }
        let me = Arc::new(Waiter {
            end,
            thread: thread::current(),
            woken: AtomicBool::new(false),
        });
        let outcome = loop {
            if self.durable() >= end {
                // Durability reached only after the deadline (a leader stuck in a slow
                // flush) is still a timeout: the status says whether it came in time.
                break Ok(if Instant::now() <= deadline {
                    FlushWait::Durable
                } else {
                    FlushWait::TimedOut
                });
            }
            if self.is_poisoned() {
                break Err(Error::Poisoned);
            }
            if Instant::now() >= deadline {
                break Ok(FlushWait::TimedOut);
            }
            let guard = match self.flush_lock.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut guard) = guard {
                if self.durable() < end {
                    // From here on followers park instead of retrying the lock.
                    self.flushing.store(true, Ordering::Release);
                    self.gather(&mut guard, deadline);
                    let started = Instant::now();
                    let outcome = self.run_round(guard, &flush);
                    let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    self.last_flush_ns.store(took, Ordering::Relaxed);
                    self.leader_flushes.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = outcome {
                        break Err(e);
                    }
                }
                continue;
            }
            // A flush is running: park until it covers us or picks us to lead the next.
            {
                let mut parked = self.lock_parked();
                if self.durable() >= end || !self.flushing.load(Ordering::Acquire) {
                    continue;
                }
                me.woken.store(false, Ordering::Relaxed);
                parked.push(Arc::clone(&me));
            }
            while !me.woken.load(Ordering::Acquire) {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                thread::park_timeout(deadline - now);
            }
        };
        // Leave no stale entry behind (one could be picked as the next leader).
        if !me.woken.load(Ordering::Acquire) {
            self.lock_parked().retain(|w| !Arc::ptr_eq(w, &me));
        }
        outcome
    }

    /// Parks until `target` writers have arrived since the last flush, or half the last
    /// flush's duration has passed; then adjusts the target (see the module doc).
    fn gather(&self, st: &mut FlushState, deadline: Instant) {
        let goal = st.covered_arrivals + st.target;
        if self.arrivals.load(Ordering::Acquire) < goal {
            let budget = Duration::from_nanos(self.last_flush_ns.load(Ordering::Relaxed) / 2)
                .min(MAX_GATHER);
            let until = (Instant::now() + budget).min(deadline);
            *self.gatherer.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread::current());
            self.gather_goal.store(goal, Ordering::Release);
            loop {
                let now = Instant::now();
                if self.arrivals.load(Ordering::Acquire) >= goal || now >= until {
                    break;
                }
                thread::park_timeout(until - now);
            }
            self.gather_goal.store(u64::MAX, Ordering::Release);
            self.gatherer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        let group = self.arrivals.load(Ordering::Acquire) - st.covered_arrivals;
        if group >= st.target {
            st.steady_rounds += 1;
            if st.steady_rounds >= PROBE_EVERY {
                st.target = group + 1;
                st.steady_rounds = 0;
            }
        } else {
            st.target = group.max(1);
            st.steady_rounds = 0;
        }
    }
}

/// ASYNC_FLUSH page threshold with RocketMQ's thorough rule: at least every
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
