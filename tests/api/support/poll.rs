//! Waiting for what a test cannot be told about: a child process listening or exiting, a row a
//! server writes in its own time, a connection another task opens. The one place tests poll.
//!
//! Time the server decides (TTLs, windows, leases, job passes) is never waited for: a test
//! moves the server's [`Clock`](tenant_plane::clock::Clock) or the client's `ClientClock`
//! instead. What is left is an event outside any clock, and for those a test asks again every
//! [`POLL`] until the condition holds, for at most a deadline it names. A condition that never
//! holds fails the test with what it waited for, never with a hang, and a condition that holds
//! early ends the wait early: no fixed pause that a slow machine could outlast.

use std::fmt;
use std::time::{Duration, Instant};

/// How often a condition is asked again.
pub const POLL: Duration = Duration::from_millis(20);

/// A condition that did not hold within its deadline.
#[derive(Debug)]
pub struct TimedOut {
    what: String,
    within: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: not seen within {:?}", self.what, self.within)
    }
}

/// Asks `check` every [`POLL`] until it answers `Some`, and returns that answer; fails the
/// test, naming `what`, if it has not within `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    match try_eventually(what, within, check).await {
        Ok(seen) => seen,
        Err(timed_out) => panic!("{timed_out}"),
    }
}

/// [`eventually`], for a caller that has something to clean up (a child process to kill)
/// before it fails.
pub async fn try_eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let start = Instant::now();
    loop {
        if let Some(seen) = check().await {
            return Ok(seen);
        }
        if start.elapsed() >= within {
            return Err(TimedOut {
                what: what.to_owned(),
                within,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`try_eventually`] for a caller outside an async runtime (a plain `#[test]` watching a
/// child process): blocks the thread between checks.
pub fn try_eventually_blocking<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let start = Instant::now();
    loop {
        if let Some(seen) = check() {
            return Ok(seen);
        }
        if start.elapsed() >= within {
            return Err(TimedOut {
                what: what.to_owned(),
                within,
            });
        }
        std::thread::sleep(POLL);
    }
}
