//! The wall clock, injectable: what time the server believes it is.
//!
//! A replica decides many things by its own clock: which quota window a consumption counts in,
//! when an API key has expired, when a cached catalog row or a quota lease is too old, when a
//! rollout lease has run out, which audit rows are past their retention, which deleted tenants
//! are due for purging, and what time every row it writes says. Replicas' clocks disagree by up
//! to their NTP error, and a test must be able to start a replica whose clock is off, or one
//! that stands still, and to let an hour pass in a moment, without waiting for real time. So
//! code that needs the time takes it from the one [`Clock`] it was given (the server's is
//! `Config::clock`; the catalog holds it, and the use cases and background jobs read it from
//! there), never from `chrono::Utc::now()` directly.
//!
//! A clock is either *ticking* (the system clock, plus an offset) or *fixed* (it stands still
//! until it is set or advanced). Clones share their state: advancing a clock advances every
//! clone of it. [`Clock::offset_by`] makes a new, independent clock that reads a fixed amount
//! away from this one, as another machine's clock would.
//!
//! Background jobs wait with [`Clock::sleep_until`]: on a ticking clock that is real time, but
//! moving the clock (set or advance) wakes every waiter at once, so a test that advances a
//! clock past a job's next pass sees that pass run without sleeping. `std::time::Instant` is
//! still right for what only measures real durations (a call's latency, a connection's
//! timeout): those say nothing about what time it is.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

/// The longest real-time wait of a ticking clock's [`Clock::sleep_until`] before it reads the
/// clock again: bounds the harm of a system clock stepped forward while it waits.
const LONGEST_REAL_WAIT: Duration = Duration::from_secs(60);

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
    /// Bumped each time the clock is set or advanced, to wake whoever waits on it.
    moved: watch::Sender<u64>,
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
                moved: watch::Sender::new(0),
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
        self.moved();
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
        self.moved();
    }

    fn moved(&self) {
        self.state.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until this clock reads `at` or later. A ticking clock waits for real time to pass
    /// (and looks again as soon as it is set or advanced); a fixed clock waits until it is set
    /// or advanced that far.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        let mut moved = self.state.moved.subscribe();
        loop {
            // Marked seen before the clock is read: a move after the reading wakes the wait.
            moved.borrow_and_update();
            let left = at - self.now();
            if left <= TimeDelta::zero() {
                return;
            }
            if self.state.ticking {
                let real = left.to_std().unwrap_or(LONGEST_REAL_WAIT);
                tokio::select! {
                    () = tokio::time::sleep(real.min(LONGEST_REAL_WAIT)) => {}
                    _ = moved.changed() => {}
                }
            } else if moved.changed().await.is_err() {
                // The sender lives as long as this clock: not reached while `self` is borrowed.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until this clock has moved on by `by` from now; see [`Clock::sleep_until`].
    pub async fn sleep(&self, by: TimeDelta) {
        self.sleep_until(self.now() + by).await;
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

    #[tokio::test]
    async fn a_sleep_on_a_fixed_clock_ends_when_the_clock_is_moved_past_it() {
        let clock = Clock::fixed(at(1_000));
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(TimeDelta::seconds(60)).await })
        };
        tokio::task::yield_now().await;
        clock.advance(TimeDelta::seconds(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "59 s of 60 have passed");
        clock.advance(TimeDelta::seconds(1));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("woken by the clock, not by real time")
            .expect("the sleeper");
    }

    #[tokio::test]
    async fn a_sleep_on_a_ticking_clock_ends_at_once_when_the_clock_is_set_past_it() {
        let clock = Clock::system();
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(TimeDelta::hours(1)).await })
        };
        tokio::task::yield_now().await;
        clock.advance(TimeDelta::hours(2));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("woken by the move")
            .expect("the sleeper");
    }
}
