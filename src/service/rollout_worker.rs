//! The rollout worker: one per replica. It claims targets of running rollouts (as many as each
//! rollout's concurrency allows, canaries first), migrates them (SCHEMA tenants a few to a
//! transaction, see [`DataPlane::run_targets`]), records each outcome, renews the leases of what
//! it is working on, and ends rollouts by their rules. Replicas share the
//! work through the catalog; a replica that dies leaves leases that run out, and the targets
//! are claimed again.

use std::{collections::HashMap, sync::Arc, time::Instant};

use tokio::{sync::Notify, task::JoinSet};
use uuid::Uuid;

use super::provisioning::storage_of;
use super::rollouts::RolloutSettings;
use crate::dataplane::{DataPlane, RolloutClaim, Target, TargetRun};
use crate::domain::{Error, RolloutCounts, RolloutState, Tenant, TenantState, Verdict};
use crate::metrics::TargetOutcome;
use crate::store::{Catalog, Claim, Outcome};

/// Rollout targets migrated in one transaction, at most: a handful keeps each tenant's locks
/// short while sparing most of the per-transaction round trips (begin, commit, a claim).
const TARGETS_PER_TRANSACTION: usize = 3;

/// What this replica knows of one rollout between full passes.
struct Tracked {
    /// Claim settings while the rollout proceeds: concurrency, position bound, target index.
    proceed: Option<(u32, i32, Option<usize>)>,
    canary_only: bool,
    in_flight: u32,
    /// Evaluate the rollout's rules before claiming again.
    recheck: bool,
}

impl Tracked {
    fn new() -> Self {
        Self {
            proceed: None,
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
        let mut last_renewal = Instant::now();
        tokio::pin!(stop);
        loop {
            let scan = last_scan.is_none_or(|at| at.elapsed() >= worker.settings.poll_interval);
            if let Err(error) = worker.pass(scan, &mut tasks, &mut tracked).await {
                tracing::warn!(%error, "rollout worker pass failed; retrying");
            }
            if scan {
                last_scan = Some(Instant::now());
            }
            if last_renewal.elapsed() >= worker.settings.lease / 3 {
                if let Err(error) = worker
                    .catalog
                    .renew_leases(&worker.me, lease_ms(&worker.settings))
                    .await
                {
                    tracing::warn!(%error, "renewing rollout leases");
                }
                last_renewal = Instant::now();
            }
            tokio::select! {
                () = &mut stop => break,
                () = worker.wake.notified() => last_scan = None,
                () = tokio::time::sleep(worker.settings.poll_interval) => {}
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
            let Some((max_concurrency, below, target)) = t.proceed else {
                continue;
            };
            let free = max_concurrency.saturating_sub(t.in_flight);
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
            // Canaries go one by one: the rules are evaluated after each.
            let per_transaction = if t.canary_only {
                1
            } else {
                TARGETS_PER_TRANSACTION
            };
            let mut claims = claims.into_iter().peekable();
            while claims.peek().is_some() {
                let batch: Vec<_> = claims.by_ref().take(per_transaction).collect();
                let n = batch.len() as u32;
                t.in_flight += n;
                let worker = Arc::clone(self);
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
                    .transition_rollout(id, &RolloutState::ACTIVE, state, reason.as_deref())
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
                let target = self
                    .dataplane
                    .migrations()
                    .position(&rollout.target_version);
                t.proceed = Some((rollout.max_concurrency, below, target));
                Ok(true)
            }
        }
    }

    /// Migrates claimed targets, `true` if any failed. SCHEMA tenants in the catalog database
    /// that need the migration go in one transaction ([`DataPlane::run_targets`]); the others,
    /// and all of them if that transaction is rolled back, one by one.
    async fn migrate_batch(
        &self,
        rollout: Uuid,
        target: Option<usize>,
        batch: Vec<(Claim, Option<Tenant>)>,
    ) -> bool {
        let (together, alone): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(_, tenant)| {
            target.is_some_and(|target| {
                tenant.as_ref().is_some_and(|tenant| {
                    self.needs_migration(tenant, target)
                        && self.dataplane.records_with_migration(&storage_of(tenant))
                })
            })
        });
        let mut failed = false;
        for (claim, tenant) in alone {
            failed |= self.migrate_target(rollout, target, claim, tenant).await;
        }
        let (Some(target), true) = (target, together.len() > 1) else {
            for (claim, tenant) in together {
                failed |= self.migrate_target(rollout, target, claim, tenant).await;
            }
            return failed;
        };
        let runs: Vec<_> = together
            .iter()
            .filter_map(|(_, tenant)| tenant.as_ref())
            .map(|tenant| {
                let hold = RolloutClaim {
                    rollout,
                    worker: &self.me,
                    from: tenant.migration_version.clone(),
                    started: Instant::now(),
                };
                (storage_of(tenant), hold)
            })
            .collect();
        if let Some(outcomes) = self.dataplane.run_targets(&runs, Target::Up(target)).await {
            for _ in outcomes {
                crate::metrics::rollout_target_finished(TargetOutcome::Migrated);
            }
            return failed;
        }
        for (claim, tenant) in together {
            failed |= self
                .migrate_target(rollout, Some(target), claim, tenant)
                .await;
        }
        failed
    }

    /// Whether `tenant` has storage and is below the target (by the catalog's mirror).
    fn needs_migration(&self, tenant: &Tenant, target: usize) -> bool {
        tenant.state != TenantState::Deleted
            && tenant.provision_time.is_some()
            && tenant
                .migration_version
                .as_deref()
                .and_then(|v| self.dataplane.migrations().position(v))
                .is_none_or(|i| i < target)
    }

    #[tracing::instrument(skip_all, fields(rollout = %rollout, tenant = %claim.tenant, attempt = claim.attempts))]
    /// Migrates one claimed tenant (`tenant`: its row, when it came with the claim) and records
    /// the outcome; `true` if it failed.
    async fn migrate_target(
        &self,
        rollout: Uuid,
        target: Option<usize>,
        claim: Claim,
        tenant: Option<Tenant>,
    ) -> bool {
        let (outcome, recorded) = match target {
            Some(target) => self.outcome(rollout, target, claim, tenant).await,
            None => (
                Outcome::Failed {
                    error: "the rollout's target version is unknown to this server".into(),
                },
                Recorded::No,
            ),
        };
        let recorded = match recorded {
            Recorded::WithMigration => Ok(true),
            Recorded::Lost => Ok(false),
            Recorded::No => {
                self.catalog
                    .finish_target(rollout, claim.tenant, &self.me, &outcome)
                    .await
            }
        };
        match recorded {
            Ok(true) => crate::metrics::rollout_target_finished(match outcome {
                Outcome::Migrated { .. } => TargetOutcome::Migrated,
                Outcome::Skipped { .. } => TargetOutcome::Skipped,
                Outcome::Failed { .. } => TargetOutcome::Failed,
                Outcome::Retry { .. } => TargetOutcome::Retried,
            }),
            Ok(false) => tracing::warn!("another worker took this tenant over (lease ran out)"),
            Err(error) => {
                tracing::warn!(%error, "recording a rollout outcome; the lease will run out and it is retried")
            }
        }
        matches!(outcome, Outcome::Failed { .. })
    }

    async fn outcome(
        &self,
        rollout: Uuid,
        target: usize,
        claim: Claim,
        tenant: Option<Tenant>,
    ) -> (Outcome, Recorded) {
        let tenant = match tenant {
            Some(tenant) => tenant,
            None => match self.catalog.tenant_by_id(claim.tenant).await {
                Ok(Some(tenant)) => tenant,
                Ok(None) => return (skipped(None, "the tenant no longer exists"), Recorded::No),
                Err(error) => return (self.retry_or_fail(claim, error), Recorded::No),
            },
        };
        if !self.needs_migration(&tenant, target) {
            let reason = if tenant.state == TenantState::Deleted || tenant.provision_time.is_none()
            {
                "the tenant is deleted or has no storage"
            } else {
                "already at or past the target"
            };
            return (skipped(tenant.migration_version, reason), Recorded::No);
        }
        let started = Instant::now();
        let hold = RolloutClaim {
            rollout,
            worker: &self.me,
            from: tenant.migration_version.clone(),
            started,
        };
        let run = self
            .dataplane
            .run_target(&storage_of(&tenant), Target::Up(target), &hold)
            .await;
        let outcome = match run {
            Ok(TargetRun::Recorded(outcome)) => return (outcome, Recorded::WithMigration),
            Ok(TargetRun::Lost) => {
                let outcome = Outcome::Retry {
                    error: "another worker took the tenant over".into(),
                };
                return (outcome, Recorded::Lost);
            }
            Ok(TargetRun::Ran(report)) if report.ran.is_empty() => skipped(
                report.version().map(str::to_owned),
                "already at or past the target",
            ),
            Ok(TargetRun::Ran(report)) => Outcome::Migrated {
                from: hold.from,
                to: report.version().map(str::to_owned),
                duration_ms: started.elapsed().as_millis() as i64,
            },
            Err(error @ Error::MigrationFailed { .. }) => {
                let message = error.to_string();
                if let Err(e) = self
                    .catalog
                    .record_failure(tenant.id, &message, false)
                    .await
                {
                    tracing::warn!(error = %e, "recording a tenant's migration error");
                }
                Outcome::Failed { error: message }
            }
            Err(error) => self.retry_or_fail(claim, error),
        };
        (outcome, Recorded::No)
    }

    fn retry_or_fail(&self, claim: Claim, error: Error) -> Outcome {
        if claim.attempts >= self.settings.max_attempts {
            Outcome::Failed {
                error: format!("gave up after {} attempts: {error}", claim.attempts),
            }
        } else {
            Outcome::Retry {
                error: error.to_string(),
            }
        }
    }
}

/// Where a target's outcome was recorded.
enum Recorded {
    /// With the tenant's migration, in its transaction.
    WithMigration,
    /// Nowhere: the worker lost the target before its commit.
    Lost,
    /// Not yet: [`Catalog::finish_target`] records it.
    No,
}

fn skipped(version: Option<String>, reason: &str) -> Outcome {
    Outcome::Skipped {
        version,
        reason: reason.to_owned(),
    }
}

fn lease_ms(settings: &RolloutSettings) -> i64 {
    settings.lease.as_millis() as i64
}
