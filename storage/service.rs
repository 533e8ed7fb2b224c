//! A named background thread that runs one bounded unit of work per tick, can be woken
//! early, and is stopped and joined explicitly or on drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[derive(Debug, Default)]
struct Signal {
    stop: bool,
    woken: bool,
}

#[derive(Debug, Default)]
struct Shared {
    signal: Mutex<Signal>,
    cv: Condvar,
    /// A wake-up is pending and the thread has not yet taken it: further wakes need not
    /// lock (puts wake the dispatcher on every append).
    pending: AtomicBool,
}

/// Wakes a [`ServiceThread`] early. Waking a stopped thread does nothing.
#[derive(Debug, Clone)]
pub(crate) struct Waker {
    shared: Arc<Shared>,
}

impl Waker {
    /// Runs the thread's body soon, without waiting for the tick.
    pub(crate) fn wake(&self) {
        if self.shared.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut sig = self
            .shared
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !sig.woken {
            sig.woken = true;
            self.shared.cv.notify_one();
        }
    }
}

/// A background thread running `body` every `tick` (or sooner when woken) until stopped.
#[derive(Debug)]
pub(crate) struct ServiceThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl ServiceThread {
    /// Spawns the thread. `body` must do a bounded amount of work per call.
    pub(crate) fn spawn(
        name: &str,
        tick: Duration,
        mut body: impl FnMut() + Send + 'static,
    ) -> std::io::Result<ServiceThread> {
        Self::spawn_pausing(name, tick, move |_| body())
    }

    /// As [`spawn`](Self::spawn), for a body that pauses inside its unit of work (between
    /// deletions): [`Pause::sleep`] returns early, with `false`, when the thread is stopped.
    pub(crate) fn spawn_pausing(
        name: &str,
        tick: Duration,
        mut body: impl FnMut(&Pause) + Send + 'static,
    ) -> std::io::Result<ServiceThread> {
        let shared = Arc::new(Shared::default());
        let pause = Pause {
            shared: Some(Arc::clone(&shared)),
        };
        let s = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
                {
                    let mut sig = s.signal.lock().unwrap_or_else(PoisonError::into_inner);
                    if !sig.stop && !sig.woken {
                        sig =
                            s.cv.wait_timeout(sig, tick)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                    }
                    if sig.stop {
                        return;
                    }
                    sig.woken = false;
                    // Cleared before the body runs: a wake arriving during the body locks
                    // and sets `woken`, so it is never lost.
                    s.pending.store(false, Ordering::Release);
                }
                body(&pause);
            })?;
        Ok(ServiceThread {
            shared,
            handle: Some(handle),
        })
    }

    /// A handle that wakes this thread, usable without holding the `ServiceThread`.
    pub(crate) fn waker(&self) -> Waker {
        Waker {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Signals the thread to stop and joins it (the current body call finishes first).
    pub(crate) fn stop(&mut self) {
        self.shared
            .signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.shared.cv.notify_all();
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                tracing::error!("background thread panicked");
            }
        }
    }
}

/// An interruptible pause inside a service body.
#[derive(Debug, Default)]
pub(crate) struct Pause {
    /// `None`: a plain sleep (work run on a caller's thread).
    shared: Option<Arc<Shared>>,
}

impl Pause {
    /// Whether the thread has been asked to stop (long bodies check it between steps).
    pub(crate) fn stopped(&self) -> bool {
        self.shared.as_ref().is_some_and(|shared| {
            shared
                .signal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stop
        })
    }

    /// Sleeps for `d` unless the thread is asked to stop; returns false if it was.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let Some(shared) = &self.shared else {
            thread::sleep(d);
            return true;
        };
        let deadline = std::time::Instant::now() + d;
        let mut sig = shared.signal.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if sig.stop {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return true;
            }
            sig = shared
                .cv
                .wait_timeout(sig, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for ServiceThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn runs_on_wakeup_and_stops() {
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let mut t = ServiceThread::spawn("test-svc", Duration::from_secs(3600), move || {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .expect("spawn");
        t.waker().wake();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "woken once, long tick");
        t.stop();
        t.stop(); // idempotent
    }

    #[test]
    fn a_pause_ends_early_when_the_thread_stops() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut t = ServiceThread::spawn_pausing("test-pause", Duration::ZERO, move |pause| {
            let started = std::time::Instant::now();
            let slept = pause.sleep(Duration::from_secs(60));
            let _ = tx.send((slept, started.elapsed()));
        })
        .expect("spawn");
        thread::sleep(Duration::from_millis(50));
        let stopped_at = std::time::Instant::now();
        t.stop();
        assert!(
            stopped_at.elapsed() < Duration::from_secs(5),
            "stop waited for the pause"
        );
        let (slept, took) = rx.recv().expect("body ran");
        assert!(!slept, "the pause reports the stop");
        assert!(!Pause::default().stopped());
        assert!(took < Duration::from_secs(5));
        assert!(Pause::default().sleep(Duration::from_millis(1)));
    }
}
