//! A worker's part for its claimed targets: migrating them (SCHEMA tenants a few to a
//! transaction, the others one by one), and recording each outcome.

use std::time::Instant;

use uuid::Uuid;

use super::RolloutWorker;
use crate::dataplane::{RolloutClaim, Target, TargetRun};
use crate::domain::{CallContext, Error, Tenant, TenantState};
use crate::metrics::TargetOutcome;
use crate::service::provisioning::storage_of;
use crate::store::{Claim, Outcome};

impl RolloutWorker {
    /// Migrates claimed targets, `true` if any failed. SCHEMA tenants in the catalog database
    /// that need the migration go in one transaction
    /// ([`crate::dataplane::DataPlane::run_targets`]); the others, and all of them if that
    /// transaction is rolled back, one by one.
    pub(super) async fn migrate_batch(
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
        if let Some(target) = target
            && together.len() > 1
        {
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
        }
        for (claim, tenant) in together {
            failed |= self.migrate_target(rollout, target, claim, tenant).await;
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
            .run_target(
                &CallContext::system(),
                &storage_of(&tenant),
                Target::Up(target),
                &hold,
            )
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
                    .record_failure(&CallContext::system(), tenant.id, &message, false)
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
