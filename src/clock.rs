//! The wall clock, injectable: what time the server believes it is.
//!
//! A replica decides some things by its own clock: which quota window a consumption counts in,
//! above all. Replicas' clocks disagree by up to their NTP error, and a test must be able to
//! start a replica whose clock is off, or one that stands still, without waiting for real time
//! to pass. So code that needs the time takes it from a [`Clock`] it was given (the server's
//! is `Config::clock`), never from `chrono::Utc::now()` directly.
//!
//! A clock is either *ticking* (the system clock, plus an offset) or *fixed* (it stands still
//! until it is set or advanced). Clones share their state: advancing a clock advances every
//! clone of it. [`Clock::offset_by`] makes a new, independent clock that reads a fixed amount
//! away from this one, as another machine's clock would.
//!
//! Only the quota path takes its time from here so far; other subsystems still read the
//! system clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time; cheap to clone (clones share the time).
#[derive(Clone)]
pub struct Clock {
    state: Arc<State>,
}

struct State {
    /// Whether the clock follows the system clock.
    ticking: bool,
    /// Microseconds: the offset from the system clock when ticking, the time itself (since the
    /// Unix epoch) when fixed. One atomic, so reading the clock on the hot path takes no lock.
    micros: AtomicI64,
}

impl Clock {
    /// The system clock as it is.
    pub fn system() -> Self {
        Self::new(true, 0)
    }

    /// A clock that stands at `at` until it is set or advanced.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self::new(false, at.timestamp_micros())
    }

    fn new(ticking: bool, micros: i64) -> Self {
        Self {
            state: Arc::new(State {
                ticking,
                micros: AtomicI64::new(micros),
            }),
        }
    }

    /// A new clock, ticking or fixed like this one, that reads `by` later than this one does
    /// now (earlier for a negative `by`). It does not follow later changes to this one.
    pub fn offset_by(&self, by: TimeDelta) -> Self {
        let micros = self
            .state
            .micros
            .load(Ordering::Relaxed)
            .saturating_add(by.num_microseconds().unwrap_or(i64::MAX));
        Self::new(self.state.ticking, micros)
    }

    /// The current time, to the microsecond (what PostgreSQL keeps).
    pub fn now(&self) -> DateTime<Utc> {
        let micros = self.state.micros.load(Ordering::Relaxed);
        let micros = if self.state.ticking {
            Utc::now().timestamp_micros().saturating_add(micros)
        } else {
            micros
        };
        DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The current time in whole seconds since the Unix epoch (quota windows are counted in
    /// these).
    pub fn unix_secs(&self) -> i64 {
        self.now().timestamp()
    }

    /// Moves this clock (and its clones) forward by `by`, or back for a negative `by`; a
    /// ticking clock keeps ticking from there.
    pub fn advance(&self, by: TimeDelta) {
        let by = by.num_microseconds().unwrap_or(i64::MAX);
        // Saturating, so a huge step pins the clock instead of wrapping it.
        let _ = self
            .state
            .micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some(m.saturating_add(by))
            });
    }

    /// Sets this clock (and its clones) to `at`; a ticking clock keeps ticking from there.
    pub fn set(&self, at: DateTime<Utc>) {
        let at = at.timestamp_micros();
        let micros = if self.state.ticking {
            at.saturating_sub(Utc::now().timestamp_micros())
        } else {
            at
        };
        self.state.micros.store(micros, Ordering::Relaxed);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.state.micros.load(Ordering::Relaxed);
        if self.state.ticking {
            write!(f, "Clock::system(offset {micros}us)")
        } else {
            write!(f, "Clock::fixed({})", self.now())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap_or_default()
    }

    #[test]
    fn a_fixed_clock_stands_still_until_moved_and_its_clones_move_with_it() {
        let clock = Clock::fixed(at(1_000));
        let clone = clock.clone();
        assert_eq!(clock.unix_secs(), 1_000);
        clock.advance(TimeDelta::seconds(5));
        assert_eq!(clone.unix_secs(), 1_005);
        clone.set(at(2_000));
        assert_eq!(clock.now(), at(2_000));
    }

    #[test]
    fn an_offset_clock_reads_apart_and_moves_on_its_own() {
        let clock = Clock::fixed(at(1_000));
        let behind = clock.offset_by(TimeDelta::seconds(-7));
        assert_eq!(behind.unix_secs(), 993);
        clock.advance(TimeDelta::seconds(1));
        assert_eq!(behind.unix_secs(), 993, "an offset clock is independent");
    }

    #[test]
    fn a_ticking_clock_follows_the_system_clock_from_where_it_was_set() {
        let system = Clock::system();
        let ahead = system.offset_by(TimeDelta::hours(1));
        let gap = ahead.now() - Utc::now();
        assert!(
            gap > TimeDelta::minutes(59) && gap <= TimeDelta::hours(1),
            "{gap}"
        );
        ahead.set(at(1_000));
        assert!((ahead.unix_secs() - 1_000).abs() <= 1);
        let before = ahead.now();
        std::thread::yield_now();
        assert!(ahead.now() >= before, "it still ticks");
    }
}
