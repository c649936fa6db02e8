//! Leases: units of a counter that this replica has already counted in the catalog, in the
//! same atomic statement as a consumption it admitted, but not yet handed out. The next
//! consumptions of that counter are admitted from the lease, in memory, without a round trip.
//!
//! Exactness is kept because a unit is counted in the catalog before it can be handed out: the
//! catalog's count is never below what was admitted, on any number of replicas, and a crash
//! loses nothing admitted. What a lease costs is the other way round: its units count as used
//! before they are. So a lease is small and shrinks as the quota runs out ([`extra`]): at most
//! [`CHUNK_MAX`] units, and none at all once less than 16 times the asked amount is left, when
//! every consumption goes to the catalog again. Unused units go back to the catalog after
//! [`IDLE_RELEASE`] without use (by the server's clock) and on shutdown; a crash keeps them counted until the window
//! ends. Only counters without a request id are leased: gauges are levels that must stay true,
//! and a request id needs its record written with the count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::Clock;
use crate::domain::Quota;
use crate::service::jobs::{Job, JobPasses, run_every};
use crate::store::UsageKey;

/// Most units one lease holds.
pub(super) const CHUNK_MAX: i64 = 64;
/// A lease unused for this long is given back.
pub(super) const IDLE_RELEASE: Duration = Duration::from_secs(1);
/// Share of what is left of a quota that one lease may take.
const SHARE: i64 = 16;

struct Lease {
    window_start: i64,
    left: i64,
    last_use: DateTime<Utc>,
}

/// This replica's leases, by tenant and resource.
pub(super) struct Leases {
    held: Mutex<HashMap<UsageKey, Lease>>,
    /// What a lease's idle time is read by.
    clock: Clock,
}

/// How many units to count ahead when `amount` goes to the catalog and about `used` is used.
pub(super) fn extra(quota: Quota, used: i64, amount: i64) -> i64 {
    if quota.metering.window_secs().is_none() {
        return 0;
    }
    if quota.unlimited() {
        return CHUNK_MAX;
    }
    ((quota.limit - used - amount).max(0) / SHARE).min(CHUNK_MAX)
}

impl Leases {
    pub fn new(clock: Clock) -> Self {
        Self {
            held: Mutex::default(),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UsageKey, Lease>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `amount` from the lease of `key` for the window; false, taking nothing, when it
    /// holds less. A lease of a later window than the clock's serves too: its units are
    /// counted in the window the catalog holds, which this replica's clock has not reached.
    pub fn take(&self, key: &UsageKey, window_start: i64, amount: i64) -> bool {
        let mut held = self.lock();
        match held.get_mut(key) {
            Some(lease) if lease.window_start >= window_start && lease.left >= amount => {
                lease.left -= amount;
                lease.last_use = self.clock.now();
                true
            }
            _ => false,
        }
    }

    /// Units held for the window.
    pub fn held(&self, key: &UsageKey, window_start: i64) -> i64 {
        match self.lock().get(key) {
            Some(lease) if lease.window_start == window_start => lease.left,
            _ => 0,
        }
    }

    /// Adds units just counted in the catalog. A lease of an earlier window is replaced: its
    /// units were counted in a window that has ended. Units of a window earlier than the
    /// lease's are dropped for the same reason (windows only move forward).
    pub fn add(&self, key: &UsageKey, window_start: i64, units: i64) {
        if units <= 0 {
            return;
        }
        let mut held = self.lock();
        let lease = held.entry(key.clone()).or_insert(Lease {
            window_start,
            left: 0,
            last_use: self.clock.now(),
        });
        if window_start < lease.window_start {
            return;
        }
        if lease.window_start != window_start {
            lease.window_start = window_start;
            lease.left = 0;
        }
        lease.left += units;
        lease.last_use = self.clock.now();
    }

    /// Removes the leases unused for `idle` (all of them for zero) and returns what they held.
    pub fn take_idle(&self, idle: Duration) -> Vec<(UsageKey, i64, i64)> {
        let now = self.clock.now();
        let mut held = self.lock();
        let idle_keys: Vec<UsageKey> = held
            .iter()
            // A lease used "later" than now (the clock was set back) is idle too.
            .filter(|(_, l)| (now - l.last_use).to_std().ok().is_none_or(|d| d >= idle))
            .map(|(k, _)| k.clone())
            .collect();
        idle_keys
            .into_iter()
            .filter_map(|k| {
                let lease = held.remove(&k)?;
                (lease.left > 0).then_some((k, lease.window_start, lease.left))
            })
            .collect()
    }
}

/// How often idle leases are looked for.
const RELEASE_EVERY: TimeDelta = TimeDelta::milliseconds(250);

impl super::Quotas {
    /// Gives back leases unused for [`IDLE_RELEASE`] (looking every [`RELEASE_EVERY`] by the
    /// server's clock), until `stop` completes; then gives back every lease. Run it until the
    /// server has stopped answering, so no lease is made after.
    pub async fn run_lease_job(
        self,
        passes: JobPasses,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let clock = self.inner.clock.clone();
        let pass = || self.release_leases(IDLE_RELEASE);
        run_every(
            Job::QuotaLeases,
            &clock,
            RELEASE_EVERY,
            false,
            &passes,
            stop,
            pass,
        )
        .await;
        self.release_leases(Duration::ZERO).await;
    }

    async fn release_leases(&self, idle: Duration) {
        for (key, window_start, units) in self.inner.leases.take_idle(idle) {
            if let Err(e) = self
                .inner
                .catalog
                .release_units(&key, window_start, units)
                .await
            {
                tracing::warn!(tenant = %key.0, resource = %key.1, units, error = %e, "giving back leased quota units; they stay counted until the window ends");
            }
            self.lock_usage().pop(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Metering, TenantId};

    fn counter(limit: i64) -> Quota {
        Quota {
            limit,
            metering: Metering::Counter { window_secs: 60 },
        }
    }

    #[test]
    fn leases_shrink_as_the_quota_runs_out() {
        assert_eq!(extra(counter(-1), 0, 1), CHUNK_MAX);
        assert_eq!(extra(counter(1_000_000), 0, 1), CHUNK_MAX);
        assert_eq!(extra(counter(1000), 0, 1), 62);
        assert_eq!(extra(counter(1000), 990, 1), 0);
        assert_eq!(extra(counter(10), 0, 7), 0);
        let gauge = Quota {
            limit: -1,
            metering: Metering::Gauge,
        };
        assert_eq!(extra(gauge, 0, 1), 0, "gauges are never leased");
    }

    #[test]
    fn a_lease_serves_its_window_only() {
        let leases = Leases::new(Clock::system());
        let key = (TenantId::new(), "messages_per_day".to_owned());
        leases.add(&key, 60, 3);
        assert!(leases.take(&key, 60, 2));
        assert!(!leases.take(&key, 60, 2), "one unit left");
        assert!(!leases.take(&key, 120, 1), "a new window");
        leases.add(&key, 120, 5);
        assert_eq!(leases.held(&key, 120), 5, "the old window's unit is gone");
        leases.add(&key, 60, 7);
        assert_eq!(
            leases.held(&key, 120),
            5,
            "an earlier window never replaces a later one"
        );
        assert!(
            leases.take(&key, 60, 1),
            "a clock that lags is served from the later window"
        );
        leases.add(&key, 120, 1);
        assert_eq!(
            leases.take_idle(Duration::ZERO),
            vec![(key.clone(), 120, 5)]
        );
        assert_eq!(leases.held(&key, 120), 0);
    }

    #[test]
    fn a_lease_is_idle_once_the_clock_has_moved_on_without_it() {
        let clock = Clock::fixed(chrono::DateTime::from_timestamp(1_000, 0).unwrap());
        let leases = Leases::new(clock.clone());
        let key = (TenantId::new(), "messages_per_day".to_owned());
        leases.add(&key, 960, 3);
        clock.advance(chrono::TimeDelta::milliseconds(999));
        assert!(leases.take(&key, 960, 1), "used again: idle from now");
        clock.advance(chrono::TimeDelta::milliseconds(999));
        assert_eq!(
            leases.take_idle(IDLE_RELEASE),
            vec![],
            "not idle for long enough"
        );
        clock.advance(chrono::TimeDelta::milliseconds(1));
        assert_eq!(leases.take_idle(IDLE_RELEASE), vec![(key, 960, 2)]);
    }
}
