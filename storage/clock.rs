//! Wall-clock time for store timestamps, injectable so tests control it.
//!
//! Deadlines and intervals (flush timeouts, flush periods, cleanup pauses) use
//! `std::time::Instant`, which is monotonic; the timestamps written into records and the
//! retention decisions (file age, `deleteWhen` hours) come from a [`Clock`].

use std::fmt::Debug;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Source of wall-clock milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;

    /// Seconds local time is ahead of UTC at `millis` (`deleteWhen` hours are local
    /// hours, as in RocketMQ). Default: 0, i.e. UTC.
    fn utc_offset_seconds(&self, millis: i64) -> i32 {
        let _ = millis;
        0
    }
}

/// The local hour of day (0..=23) at `millis` for a zone `utc_offset_seconds` ahead of UTC.
pub(crate) fn local_hour(millis: i64, utc_offset_seconds: i32) -> u32 {
    let seconds = millis.div_euclid(1000) + i64::from(utc_offset_seconds);
    (seconds.rem_euclid(86_400) / 3600) as u32
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        wall_millis()
    }

    fn utc_offset_seconds(&self, millis: i64) -> i32 {
        use chrono::{Offset, TimeZone};
        chrono::Local
            .timestamp_millis_opt(millis)
            .earliest()
            .map_or(0, |t| t.offset().fix().local_minus_utc())
    }
}

/// A clock that only moves when told to (in UTC unless given an offset).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
    utc_offset: AtomicI32,
}

impl ManualClock {
    /// A clock showing `millis`.
    pub fn new(millis: i64) -> Self {
        ManualClock {
            now: AtomicI64::new(millis),
            utc_offset: AtomicI32::new(0),
        }
    }

    /// Makes local time `seconds` ahead of UTC (negative: behind).
    pub fn set_utc_offset(&self, seconds: i32) {
        self.utc_offset.store(seconds, Ordering::SeqCst);
    }

    /// Sets the time (backwards jumps allowed).
    pub fn set(&self, millis: i64) {
        self.now.store(millis, Ordering::SeqCst);
    }

    /// Moves the time by `delta` ms.
    pub fn advance(&self, delta: i64) {
        self.now.fetch_add(delta, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn utc_offset_seconds(&self, _millis: i64) -> i32 {
        self.utc_offset.load(Ordering::SeqCst)
    }
}

pub(crate) fn wall_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hour_handles_offsets_and_times_before_1970() {
        let h = 3_600_000;
        assert_eq!(local_hour(0, 0), 0);
        assert_eq!(local_hour(4 * h, 0), 4);
        assert_eq!(local_hour(4 * h - 1, 0), 3);
        assert_eq!(local_hour(4 * h, 8 * 3600), 12);
        assert_eq!(local_hour(4 * h, -5 * 3600), 23);
        assert_eq!(local_hour(-1, 0), 23);
        let clock = ManualClock::new(30 * h);
        clock.set_utc_offset(-3600);
        assert_eq!(
            local_hour(clock.now_millis(), clock.utc_offset_seconds(0)),
            5
        );
        // The system zone gives some whole-minute offset within a day.
        let offset = SystemClock.utc_offset_seconds(wall_millis());
        assert!(offset.abs() < 86_400 && offset % 60 == 0, "{offset}");
    }
}
