//! [`ClientClock`]: the time the client's caches age by, injectable.
//!
//! The resolver trusts an answer for a TTL (seconds by default). A test of that TTL, in this
//! crate or in a service built on it, must be able to let the TTL pass without waiting for it,
//! and without the waiting making the test slow or a loaded machine making it flaky. So the
//! resolver reads the time from the [`ClientClock`] it was given: [`ClientClock::system`] (the
//! default) is tokio's monotonic clock, and [`ClientClock::manual`] stands still until
//! [`ClientClock::advance`] moves it. This crate does not depend on the control plane's server
//! code, so it has this small clock of its own rather than the server's `Clock`: it only
//! measures how old an answer is, never what time of day it is.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use tokio::time::Instant;

/// A monotonic time source; cheap to clone (clones of a manual clock share its time).
#[derive(Clone, Debug)]
pub struct ClientClock {
    manual: Option<Arc<Manual>>,
}

#[derive(Debug)]
struct Manual {
    /// Where the clock started.
    start: Instant,
    /// Nanoseconds advanced since `start`: one atomic, so reading the clock takes no lock.
    advanced: AtomicU64,
}

impl ClientClock {
    /// tokio's monotonic clock (which follows `tokio::time::pause` in a paused runtime).
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still until [`advance`](Self::advance)d: for tests that let a TTL
    /// pass in a moment.
    pub fn manual() -> Self {
        Self {
            manual: Some(Arc::new(Manual {
                start: Instant::now(),
                advanced: AtomicU64::new(0),
            })),
        }
    }

    /// Moves a manual clock (and its clones) forward by `by`. A system clock cannot be moved:
    /// on one this does nothing.
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.manual {
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            let _ = manual
                .advanced
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_add(by))
                });
        }
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(manual) => {
                let advanced = Duration::from_nanos(manual.advanced.load(Ordering::Relaxed));
                // Past what an Instant can hold: as far as tokio's own "never" (30 years).
                manual
                    .start
                    .checked_add(advanced)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365 * 30))
            }
        }
    }
}

impl Default for ClientClock {
    /// The system clock.
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_stands_still_until_advanced_and_clones_share_it() {
        let clock = ClientClock::manual();
        let clone = clock.clone();
        let before = clock.now();
        assert_eq!(clock.now(), before);
        clone.advance(Duration::from_secs(5));
        assert_eq!(clock.now() - before, Duration::from_secs(5));
        assert_eq!(clone.now(), clock.now());
    }

    #[tokio::test]
    async fn the_system_clock_cannot_be_advanced() {
        let clock = ClientClock::system();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now() - before < Duration::from_secs(3600));
    }
}
