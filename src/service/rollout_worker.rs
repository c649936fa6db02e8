//! The rollout worker: one per replica. It claims targets of running rollouts (as many as each
//! rollout's concurrency and the rollout pool's connections allow, canaries first), migrates
//! them (SCHEMA tenants a few to a transaction, see `target::migrate_together`, which migrates each with
//! [`DataPlane::migrate_from_mirror`]), records each
//! outcome, renews the leases of what it is working on, and ends rollouts by their rules.
//! Replicas share the work through the catalog; a replica that dies leaves leases that run out,
//! and the targets are claimed again. A rollout is of one component: the worker reads that
//! component's migration set once per rollout (it keeps it while it tracks the rollout: a
//! component's history is immutable, and a rollout never goes past its target, so migrations
//! pushed later change nothing for it), and each claim brings the catalog's mirror of its
//! tenant's version of that component. Leases are times by the catalog's clock (`crate::clock`),
//! and so is when this worker renews its own; how often it polls the catalog is real time, as
//! it only looks for what other replicas did.

mod target;

use std::{collections::HashMap, sync::Arc, time::Instant};

use target::Goal;

use tokio::{sync::Notify, task::JoinSet};
use uuid::Uuid;

use super::component_sets;
use super::rollouts::RolloutSettings;
use crate::dataplane::{DataPlane, TenantMigrations};
use crate::domain::{CallContext, Error, RolloutCounts, RolloutState, Verdict};
use crate::store::Catalog;

/// Rollout targets migrated in one transaction, at most: a few keeps each tenant's locks short
/// (a batch holds its tenants' until it commits) while sparing most of the per-transaction
/// costs (begin, commit, a claim, the call that records them).
const MAX_TARGETS_PER_TRANSACTION: usize = 8;

/// What this replica knows of one rollout between full passes.
struct Tracked {
    /// Claim settings while the rollout proceeds: concurrency, position bound, and what its
    /// targets are migrated to (`None`: a target this server does not know).
    proceed: Option<(u32, i32, Option<Goal>)>,
    /// The rollout's component, read on its first evaluation here (`None` before, and when the
    /// component is not registered).
    set: Option<TenantMigrations>,
    canary_only: bool,
    in_flight: u32,
    /// Evaluate the rollout's rules before claiming again.
    recheck: bool,
}

impl Tracked {
    fn new() -> Self {
        Self {
            proceed: None,
            set: None,
            canary_only: false,
            in_flight: 0,
            recheck: true,
        }
    }
}

pub struct RolloutWorker {
    catalog: Catalog,
    dataplane: Arc<DataPlane>,
    settings: RolloutSettings,
    wake: Arc<Notify>,
    /// This replica's name on its claims.
    me: String,
}

impl RolloutWorker {
    pub fn new(
        catalog: Catalog,
        dataplane: Arc<DataPlane>,
        settings: RolloutSettings,
        wake: Arc<Notify>,
    ) -> Self {
        let me = format!("worker-{}", Uuid::now_v7().simple());
        Self {
            catalog,
            dataplane,
            settings,
            wake,
            me,
        }
    }

    /// Works until `stop` completes, then waits for the tenants in progress to finish.
    ///
    /// Rollouts are re-read in full every poll interval (and when woken by a new rollout);
    /// between those passes a finished tenant only frees a slot, and the next one is claimed
    /// without re-reading the rollout, unless the finished one failed, was a canary, or there
    /// was nothing left to claim: then the rollout's rules are evaluated again at once. Targets
    /// whose lease ran out (their worker died) are claimed again on the full passes.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let worker = Arc::new(self);
        let mut tasks: JoinSet<(Uuid, u32, bool)> = JoinSet::new();
        let mut tracked: HashMap<Uuid, Tracked> = HashMap::new();
        let mut last_scan: Option<Instant> = None;
        let clock = worker.catalog.clock().clone();
        let renew_every = chrono::TimeDelta::from_std(worker.settings.lease / 3)
            .unwrap_or(chrono::TimeDelta::MAX);
        let mut last_renewal = clock.now();
        tokio::pin!(stop);
        loop {
            let scan = last_scan.is_none_or(|at| at.elapsed() >= worker.settings.poll_interval);
            if let Err(error) = worker.pass(scan, &mut tasks, &mut tracked).await {
                tracing::warn!(%error, "rollout worker pass failed; retrying");
            }
            if scan {
                last_scan = Some(Instant::now());
            }
            if clock.now() - last_renewal >= renew_every {
                if let Err(error) = worker
                    .catalog
                    .renew_leases(&worker.me, lease_ms(&worker.settings))
                    .await
                {
                    tracing::warn!(%error, "renewing rollout leases");
                }
                last_renewal = clock.now();
            }
            tokio::select! {
                () = &mut stop => break,
                () = worker.wake.notified() => last_scan = None,
                () = tokio::time::sleep(worker.settings.poll_interval) => {}
                () = clock.sleep_until(last_renewal + renew_every) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((rollout, n, failed)) = done && let Some(t) = tracked.get_mut(&rollout) {
                        t.in_flight = t.in_flight.saturating_sub(n);
                        t.recheck |= failed || t.canary_only;
                    }
                }
            }
        }
        // Tenants in progress finish (each is one transaction); unclaimed work stays for others.
        while tasks.join_next().await.is_some() {}
    }

    /// Evaluates the rollouts that need it (all of them on a scan) and claims free slots.
    async fn pass(
        self: &Arc<Self>,
        scan: bool,
        tasks: &mut JoinSet<(Uuid, u32, bool)>,
        tracked: &mut HashMap<Uuid, Tracked>,
    ) -> Result<(), Error> {
        if scan {
            let active = self.catalog.active_rollouts().await?;
            tracked.retain(|id, t| active.contains(id) || t.in_flight > 0);
            for id in active {
                tracked.entry(id).or_insert_with(Tracked::new).recheck = true;
            }
        }
        let lanes = self.catalog.rollout_lanes() as usize;
        let ids: Vec<Uuid> = tracked.keys().copied().collect();
        for id in ids {
            let Some(t) = tracked.get_mut(&id) else {
                continue;
            };
            if t.recheck {
                t.recheck = false;
                if !self.evaluate(id, t).await? {
                    t.proceed = None;
                    continue;
                }
            }
            let Some((max_concurrency, below, target)) = t.proceed.clone() else {
                continue;
            };
            // Canaries go one by one: the rules are evaluated after each.
            let most = if t.canary_only {
                1
            } else {
                MAX_TARGETS_PER_TRANSACTION
            };
            // A transaction per rollout connection; claims only while one is idle, so the claim
            // never waits for a connection either.
            let idle_lanes = lanes.saturating_sub(tasks.len());
            let free = max_concurrency
                .saturating_sub(t.in_flight)
                .min(u32::try_from(idle_lanes * most).unwrap_or(u32::MAX));
            if free == 0 {
                continue;
            }
            let claims = self
                .catalog
                .claim_targets(id, &self.me, free, below, lease_ms(&self.settings), scan)
                .await?;
            if (claims.len() as u32) < free {
                // Nothing more to claim now: perhaps the rollout is done; look again next time.
                t.recheck = true;
            }
            // Shared out evenly over the idle connections.
            let per_transaction = claims.len().div_ceil(idle_lanes.max(1)).clamp(1, most);
            let mut claims = claims.into_iter().peekable();
            while claims.peek().is_some() {
                let batch: Vec<_> = claims.by_ref().take(per_transaction).collect();
                let n = batch.len() as u32;
                t.in_flight += n;
                let worker = Arc::clone(self);
                let target = target.clone();
                tasks.spawn(async move {
                    // Its end wakes the loop through `join_next`: no full pass needed.
                    let failed = worker.migrate_batch(id, target, batch).await;
                    (id, n, failed)
                });
            }
        }
        Ok(())
    }

    /// Applies the rollout's rules; `false` when it is over (or gone) and nothing is to be claimed.
    async fn evaluate(&self, id: Uuid, t: &mut Tracked) -> Result<bool, Error> {
        let Some(rollout) = self.catalog.rollout(id).await? else {
            return Ok(false);
        };
        if !rollout.state.is_active() {
            return Ok(false);
        }
        let canary = if rollout.canary_count > 0 {
            self.catalog
                .rollout_counts(id, Some(rollout.canary_count as i32))
                .await?
        } else {
            RolloutCounts::default()
        };
        match rollout.verdict(canary) {
            Verdict::Stop { state, reason } => {
                if self
                    .catalog
                    .transition_rollout(
                        &CallContext::system(),
                        id,
                        &RolloutState::ACTIVE,
                        state,
                        reason.as_deref(),
                    )
                    .await?
                {
                    tracing::info!(rollout = %id, state = state.as_str(), reason, "rollout ended");
                }
                Ok(false)
            }
            Verdict::Proceed { canary_only } => {
                t.canary_only = canary_only;
                let below = if canary_only {
                    rollout.canary_count as i32
                } else {
                    i32::MAX
                };
                if t.set.is_none() {
                    t.set = match component_sets::of_component(
                        &self.catalog,
                        &self.dataplane,
                        &rollout.component,
                    )
                    .await
                    {
                        Ok(set) => Some(set),
                        // Its targets fail as of a target this server does not know.
                        Err(Error::NotFound { .. }) => None,
                        Err(other) => return Err(other),
                    };
                }
                let target = t.set.as_ref().and_then(|set| {
                    set.position(&rollout.target_version).map(|target| Goal {
                        set: set.clone(),
                        target,
                    })
                });
                t.proceed = Some((rollout.max_concurrency, below, target));
                Ok(true)
            }
        }
    }
}

fn lease_ms(settings: &RolloutSettings) -> i64 {
    settings.lease.as_millis() as i64
}
