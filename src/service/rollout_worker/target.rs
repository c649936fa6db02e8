//! A worker's part for its claimed targets: migrating them (SCHEMA tenants a few to a
//! transaction, the others one by one), and recording each outcome.
//!
//! A SCHEMA tenant's migration and its target's outcome are one unit of work: one transaction
//! on the rollout pool, in which the data plane migrates the tenant's schema and the store
//! records the outcome, its event and the catalog's mirror of the version. A worker that lost
//! the target meanwhile (its lease ran out and another worker took it) rolls back, so every
//! tenant is migrated by exactly one worker.
//!
//! Everything here is of the rollout's component ([`Goal`]): its set, the mirror of its version
//! that came with each claim, and its rows in the catalog's mirror.

use std::time::Instant;

use uuid::Uuid;

use super::RolloutWorker;
use crate::dataplane::{ComponentReport, Run, Storage, Target, TenantMigrations};
use crate::domain::{CallContext, Error, Isolation, Tenant, TenantId, TenantState};
use crate::metrics::TargetOutcome;
use crate::service::provisioning::storage_of;
use crate::service::storage_run::run_and_record;
use crate::store::{
    Change, Claim, Outcome,
    provisioning::{FailedRun, Mirror, record_run},
};

/// What a rollout migrates its targets to: its component's migrations, and the index of its
/// target version among them.
#[derive(Clone)]
pub(super) struct Goal {
    pub(super) set: TenantMigrations,
    pub(super) target: usize,
}

impl RolloutWorker {
    /// Migrates claimed targets, `true` if any failed. SCHEMA tenants in the catalog database
    /// that need the migration and have some version of the component already go in one
    /// transaction ([`Self::migrate_together`]); the others (a component new to a tenant has no
    /// version table there yet: [`DataPlane::run`] makes it), and all of them if that
    /// transaction is rolled back, one by one.
    ///
    /// [`DataPlane::run`]: crate::dataplane::DataPlane::run
    pub(super) async fn migrate_batch(
        &self,
        rollout: Uuid,
        goal: Option<Goal>,
        batch: Vec<(Claim, Option<Tenant>)>,
    ) -> bool {
        let (together, alone): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(claim, tenant)| {
            goal.as_ref().is_some_and(|goal| {
                claim.version.is_some()
                    && tenant.as_ref().is_some_and(|tenant| {
                        needs_migration(tenant, claim, goal)
                            && self.commits_with_outcome(&storage_of(tenant))
                    })
            })
        });
        let mut failed = false;
        for (claim, tenant) in alone {
            failed |= self
                .migrate_target(rollout, goal.as_ref(), claim, tenant)
                .await;
        }
        if let Some(goal) = &goal
            && together.len() > 1
        {
            let tenants: Vec<(&Claim, &Tenant)> = together
                .iter()
                .filter_map(|(claim, tenant)| tenant.as_ref().map(|tenant| (claim, tenant)))
                .collect();
            if let Some(migrated) = self.migrate_together(rollout, goal, tenants).await {
                for _ in 0..migrated {
                    crate::metrics::rollout_target_finished(TargetOutcome::Migrated);
                }
                return failed;
            }
        }
        for (claim, tenant) in together {
            failed |= self
                .migrate_target(rollout, goal.as_ref(), claim, tenant)
                .await;
        }
        failed
    }

    /// Whether a target of this tenant commits its outcome with its migration, and may be
    /// migrated with others in one transaction: a SCHEMA tenant in the catalog database.
    fn commits_with_outcome(&self, storage: &Storage) -> bool {
        storage.isolation == Isolation::Schema && self.dataplane.in_catalog(storage)
    }

    /// Migrates SCHEMA tenants' targets up to the goal in one transaction, each from the
    /// version the catalog mirrors (which came with its claim), and records them all with one
    /// statement before the one commit; how many. `None` when the transaction was rolled back
    /// (a migration failed, a tenant was found at the target already or elsewhere than its
    /// mirror says, a claim was lost, or the database failed): the caller migrates the tenants
    /// one by one, so each failure is recorded against its own tenant.
    ///
    /// Tenants are taken in id order, so two such transactions (of two rollouts sharing
    /// tenants) take the tenants' locks in the same order and never wait on each other in a
    /// cycle.
    #[tracing::instrument(skip_all, fields(rollout = %rollout, tenants = tenants.len()))]
    async fn migrate_together(
        &self,
        rollout: Uuid,
        goal: &Goal,
        mut tenants: Vec<(&Claim, &Tenant)>,
    ) -> Option<usize> {
        tenants.sort_by_key(|(_, tenant)| tenant.id);
        let unit = match self.catalog.begin_rollout(&CallContext::system()).await {
            Ok(unit) => unit,
            Err(error) => {
                tracing::debug!(%error, "a rollout transaction could not begin");
                return None;
            }
        };
        let mut outcomes: Vec<(TenantId, Outcome)> = Vec::with_capacity(tenants.len());
        for (claim, tenant) in &tenants {
            let started = Instant::now();
            let migrated = self
                .dataplane
                .migrate_from_mirror(
                    unit.txn(),
                    &storage_of(tenant),
                    &goal.set,
                    &Target::Up(goal.target),
                    claim.version.as_deref(),
                )
                .await;
            match migrated {
                Ok(report) if !report.ran.is_empty() => {
                    outcomes.push((tenant.id, migrated_outcome(claim, &report, started)));
                }
                Ok(_) => {
                    tracing::debug!(tenant = %tenant.id, "found at the target: migrated one by one");
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, tenant = %tenant.id, "a rollout transaction is rolled back");
                    break;
                }
            }
        }
        let mut all_migrated = outcomes.len() == tenants.len();
        if all_migrated {
            let records: Vec<(TenantId, &Outcome)> = outcomes
                .iter()
                .map(|(id, outcome)| (*id, outcome))
                .collect();
            all_migrated = match self
                .catalog
                .record_migrated(unit.txn(), rollout, goal.set.id(), &self.me, &records)
                .await
            {
                Ok(held) => held,
                Err(error) => {
                    tracing::debug!(%error, "a rollout transaction could not be recorded");
                    false
                }
            };
        }
        if !all_migrated {
            // At once, not when the connection is next used: the tenants' locks must be free
            // for the one-by-one runs that follow.
            if let Err(error) = unit.rollback().await {
                tracing::debug!(%error, "rolling a rollout transaction back");
            }
            return None;
        }
        if let Err(error) = unit.commit().await {
            tracing::debug!(%error, "a rollout transaction could not commit");
            return None;
        }
        for (id, _) in &outcomes {
            self.catalog.changed(&Change::TenantRow(*id));
        }
        Some(outcomes.len())
    }

    #[tracing::instrument(skip_all, fields(rollout = %rollout, tenant = %claim.tenant, attempt = claim.attempts))]
    /// Migrates one claimed tenant (`tenant`: its row, when it came with the claim) and records
    /// the outcome; `true` if it failed.
    async fn migrate_target(
        &self,
        rollout: Uuid,
        goal: Option<&Goal>,
        claim: Claim,
        tenant: Option<Tenant>,
    ) -> bool {
        let tenant_id = claim.tenant;
        let (outcome, recorded) = match goal {
            Some(goal) => self.outcome(rollout, goal, claim, tenant).await,
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
                    .finish_target(rollout, tenant_id, &self.me, &outcome)
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
        goal: &Goal,
        claim: Claim,
        tenant: Option<Tenant>,
    ) -> (Outcome, Recorded) {
        let tenant = match tenant {
            Some(tenant) => tenant,
            None => match self.catalog.tenant_by_id(claim.tenant).await {
                Ok(Some(tenant)) => tenant,
                Ok(None) => return (skipped(None, "the tenant no longer exists"), Recorded::No),
                Err(error) => return (self.retry_or_fail(&claim, error), Recorded::No),
            },
        };
        if !needs_migration(&tenant, &claim, goal) {
            let reason = if tenant.state == TenantState::Deleted || tenant.provision_time.is_none()
            {
                "the tenant is deleted or has no storage"
            } else {
                "already at or past the target"
            };
            return (skipped(claim.version, reason), Recorded::No);
        }
        let started = Instant::now();
        let storage = storage_of(&tenant);
        let run = if self.commits_with_outcome(&storage) {
            self.migrate_alone(rollout, goal, &claim, &storage, started)
                .await
        } else {
            run_and_record(
                &CallContext::system(),
                &self.catalog,
                &self.dataplane,
                &storage,
                &Run::Migrate(Target::Up(goal.target)),
                std::slice::from_ref(&goal.set),
                Mirror::Migrated,
            )
            .await
            .map(|(report, _)| Alone::ToRecord(report.first()))
        };
        let outcome = match run {
            Ok(Alone::Recorded(outcome)) => return (outcome, Recorded::WithMigration),
            Ok(Alone::Lost) => {
                let outcome = Outcome::Retry {
                    error: "another worker took the tenant over".into(),
                };
                return (outcome, Recorded::Lost);
            }
            Ok(Alone::ToRecord(report)) if report.ran.is_empty() => skipped(
                report.version().map(str::to_owned),
                "already at or past the target",
            ),
            Ok(Alone::ToRecord(report)) => migrated_outcome(&claim, &report, started),
            Err(error @ Error::MigrationFailed { .. }) => {
                let message = error.to_string();
                if let Err(e) = self
                    .catalog
                    .record_failure(
                        &CallContext::system(),
                        tenant.id,
                        &message,
                        FailedRun::Later,
                        &[goal.set.id()],
                    )
                    .await
                {
                    tracing::warn!(error = %e, "recording a tenant's migration error");
                }
                Outcome::Failed { error: message }
            }
            Err(error) => self.retry_or_fail(&claim, error),
        };
        (outcome, Recorded::No)
    }

    /// Migrates a SCHEMA tenant's target up to the goal in one transaction, with its outcome
    /// when it migrated; when it found the tenant at the target already, only the catalog's
    /// mirror commits with it, and the outcome is the caller's to record.
    async fn migrate_alone(
        &self,
        rollout: Uuid,
        goal: &Goal,
        claim: &Claim,
        storage: &Storage,
        started: Instant,
    ) -> Result<Alone, Error> {
        let unit = self.catalog.begin_rollout(&CallContext::system()).await?;
        let run = Run::Migrate(Target::Up(goal.target));
        let report = self
            .dataplane
            .run(unit.txn(), storage, &run, std::slice::from_ref(&goal.set))
            .await?
            .first();
        if report.ran.is_empty() {
            let (ctx, now) = (unit.ctx(), self.catalog.now());
            record_run(
                unit.txn(),
                ctx,
                now,
                storage.tenant,
                &[(goal.set.id(), report.version())],
                Mirror::Migrated,
            )
            .await?;
            unit.commit().await?;
            self.catalog.changed(&Change::TenantRow(storage.tenant));
            return Ok(Alone::ToRecord(report));
        }
        let outcome = migrated_outcome(claim, &report, started);
        let held = self
            .catalog
            .record_migrated(
                unit.txn(),
                rollout,
                goal.set.id(),
                &self.me,
                &[(storage.tenant, &outcome)],
            )
            .await?;
        if !held {
            unit.rollback().await?;
            return Ok(Alone::Lost);
        }
        unit.commit().await?;
        self.catalog.changed(&Change::TenantRow(storage.tenant));
        Ok(Alone::Recorded(outcome))
    }

    fn retry_or_fail(&self, claim: &Claim, error: Error) -> Outcome {
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

/// How a target migrated on its own ended.
enum Alone {
    /// Migrated, its outcome committed with the migration.
    Recorded(Outcome),
    /// Not migrated: the worker no longer held the target when it came to commit, and rolled
    /// the migration back.
    Lost,
    /// Migrated, or found at the target, and mirrored; its outcome is still to be recorded.
    ToRecord(ComponentReport),
}

/// Whether `tenant` has storage and is below the goal's target (by the catalog's mirror of its
/// version of the component, which came with its `claim`).
fn needs_migration(tenant: &Tenant, claim: &Claim, goal: &Goal) -> bool {
    tenant.state != TenantState::Deleted
        && tenant.provision_time.is_some()
        && claim
            .version
            .as_deref()
            .and_then(|v| goal.set.position(v))
            .is_none_or(|i| i < goal.target)
}

/// The outcome of the `claim`ed target migrated as `report` says, from the version the catalog
/// mirrored, since `started`.
fn migrated_outcome(claim: &Claim, report: &ComponentReport, started: Instant) -> Outcome {
    Outcome::Migrated {
        from: claim.version.clone(),
        to: report.version().map(str::to_owned),
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
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
