//! The background jobs' common loop, and what they tell of their passes.
//!
//! A job (purging deleted tenants, pruning the audit log, measuring storage, giving back idle
//! quota leases) runs a pass, then waits until its next pass is due by the server's clock
//! ([`Clock::sleep_until`]). On the system clock that is real time; moving the clock past the
//! due time (a test's [`Clock::advance`]) wakes the job at once, so what is due is decided by
//! the clock, never by how long the process has waited. A pass is due `interval` after the
//! previous one *began*: one that began before the clock moved on is followed by another at
//! once, which sees the new time.
//!
//! Each completed pass is published in [`JobPasses`] with the time it began, so a test can wait
//! for a pass that saw its clock's new time (a pass is a fact the test can wait for; how long a
//! pass takes is not something it should guess).

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use super::Provisioning;
use crate::clock::Clock;
use crate::domain::CallContext;

/// A replica's background jobs that run on an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Purges the storage of deleted tenants whose retention has run out.
    Purge,
    /// Deletes audit rows past their retention.
    AuditPrune,
    /// Measures provisioned tenants' storage.
    StorageMeasure,
    /// Gives back quota leases left unused.
    QuotaLeases,
    /// Checks the fleet's storage for drift from its migrations.
    Drift,
}

impl Job {
    const ALL: [Job; 5] = [
        Job::Purge,
        Job::AuditPrune,
        Job::StorageMeasure,
        Job::QuotaLeases,
        Job::Drift,
    ];

    fn index(self) -> usize {
        match self {
            Job::Purge => 0,
            Job::AuditPrune => 1,
            Job::StorageMeasure => 2,
            Job::QuotaLeases => 3,
            Job::Drift => 4,
        }
    }
}

/// When each job's last completed pass began, by the server's clock; cheap to clone (clones
/// share the record).
#[derive(Clone)]
pub struct JobPasses {
    began: Arc<[watch::Sender<Option<DateTime<Utc>>>; Job::ALL.len()]>,
}

impl Default for JobPasses {
    fn default() -> Self {
        Self {
            began: Arc::new(std::array::from_fn(|_| watch::Sender::new(None))),
        }
    }
}

impl std::fmt::Debug for JobPasses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for job in Job::ALL {
            map.entry(&job, &self.last(job));
        }
        map.finish()
    }
}

impl JobPasses {
    /// When the last completed pass of `job` began; `None` before the first (or when the job
    /// is off).
    pub fn last(&self, job: Job) -> Option<DateTime<Utc>> {
        *self.began[job.index()].borrow()
    }

    /// Waits until a pass of `job` that began at `at` or later has completed. Never returns if
    /// the job is off: bound the wait.
    pub async fn completed_since(&self, job: Job, at: DateTime<Utc>) {
        let mut began = self.began[job.index()].subscribe();
        // The sender lives in `self`, which outlives this wait: an error cannot happen.
        let _ = began.wait_for(|b| b.is_some_and(|b| b >= at)).await;
    }

    fn completed(&self, job: Job, began: DateTime<Utc>) {
        self.began[job.index()].send_replace(Some(began));
    }
}

/// Runs `pass` every `interval` by `clock` until `stop` completes: the first at once with
/// `at_once`, else after one interval. A pass that has begun runs to its end; `stop` is
/// heeded between passes. Each completed pass is recorded in `passes`.
pub(crate) async fn run_every<F, P>(
    job: Job,
    clock: &Clock,
    interval: TimeDelta,
    at_once: bool,
    passes: &JobPasses,
    stop: impl Future<Output = ()>,
    mut pass: F,
) where
    F: FnMut() -> P,
    P: Future<Output = ()>,
{
    tokio::pin!(stop);
    let mut due = if at_once {
        clock.now()
    } else {
        clock.now() + interval
    };
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = clock.sleep_until(due) => {}
        }
        let began = clock.now();
        pass().await;
        passes.completed(job, began);
        due = began + interval;
    }
}

/// The purge job: at once and then every `interval` by `clock` (the catalog's), purges
/// tenants whose retention has run out, until `stop`.
pub async fn run_purge_job(
    provisioning: Provisioning,
    clock: Clock,
    interval: TimeDelta,
    passes: JobPasses,
    stop: impl Future<Output = ()>,
) {
    // A job acts on what audited calls asked for; it writes no audit row of its own.
    let ctx = CallContext::system();
    let pass = || async {
        match provisioning.purge_due(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purge job pass"),
            Err(error) => tracing::warn!(%error, "purge job pass failed; retrying next time"),
        }
    };
    run_every(Job::Purge, &clock, interval, true, &passes, stop, pass).await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    async fn bounded(what: impl Future<Output = ()>) {
        tokio::time::timeout(Duration::from_secs(10), what)
            .await
            .expect("done in time");
    }

    #[tokio::test]
    async fn a_pass_is_due_when_the_clock_says_so_and_is_recorded() {
        let start = DateTime::from_timestamp(1_000, 0).unwrap();
        let clock = Clock::fixed(start);
        let passes = JobPasses::default();
        let count = Arc::new(AtomicU32::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let job = {
            let (clock, passes, count) = (clock.clone(), passes.clone(), count.clone());
            tokio::spawn(async move {
                run_every(
                    Job::Purge,
                    &clock,
                    TimeDelta::hours(1),
                    true,
                    &passes,
                    async {
                        let _ = stopped.await;
                    },
                    || {
                        count.fetch_add(1, Ordering::Relaxed);
                        async {}
                    },
                )
                .await;
            })
        };
        bounded(passes.completed_since(Job::Purge, start)).await;
        assert_eq!(count.load(Ordering::Relaxed), 1, "the first pass at once");

        clock.advance(TimeDelta::minutes(59));
        tokio::task::yield_now().await;
        assert_eq!(count.load(Ordering::Relaxed), 1, "not due yet");
        clock.advance(TimeDelta::minutes(1));
        bounded(passes.completed_since(Job::Purge, clock.now())).await;
        assert_eq!(count.load(Ordering::Relaxed), 2);
        assert_eq!(passes.last(Job::Purge), Some(clock.now()));
        assert_eq!(passes.last(Job::AuditPrune), None, "another job's record");

        let _ = stop.send(());
        bounded(async { job.await.expect("the job") }).await;
    }
}
