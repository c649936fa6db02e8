//! Runs in a schema of the catalog database: a SCHEMA tenant's own, or the one every SHARED
//! tenant shares. The catalog's mirror of the version commits with the migration, and so does a
//! rollout target's outcome: a tenant is migrated, mirrored and counted by one commit.

use std::time::Instant;

use sea_orm::{DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use super::sql::{check_mark, exec, lock_key, lock_sql, mark_sql, missing_table, quote, required};
use super::{DataPlane, Report, Run, Storage, Target, TenantMigrations, Versions, roles, shared};
use crate::domain::{Error, Isolation};
use crate::store::{
    Applied, Change, Outcome, db_error,
    provisioning::{RowChange, record_migration, record_shared_version},
    settle_login_sql,
};

/// A rollout worker's hold on a tenant, recorded in the transaction that migrates the tenant
/// when that tenant's schema is in the catalog database.
#[derive(Debug, Clone)]
pub struct RolloutClaim<'a> {
    pub rollout: Uuid,
    /// The worker that holds the target.
    pub worker: &'a str,
    /// The tenant's version before, as the catalog mirrors it.
    pub from: Option<String>,
    /// When the worker started on the tenant.
    pub started: Instant,
}

/// How a rollout target's run ended.
#[derive(Debug)]
pub enum TargetRun {
    /// Migrated, with this outcome and its event committed in the same transaction.
    Recorded(Outcome),
    /// Ran, or found nothing to do; the caller records the target's outcome.
    Ran(Report),
    /// The worker no longer held the target when it came to commit (its lease ran out and
    /// another worker took the tenant): the migration was rolled back.
    Lost,
}

impl DataPlane {
    /// Migrates a rollout's target toward `target`. Where the tenant's schema is in the catalog
    /// database, the target's outcome commits with the migration ([`TargetRun::Recorded`]).
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant))]
    pub async fn run_target(
        &self,
        storage: &Storage,
        target: Target,
        claim: &RolloutClaim<'_>,
    ) -> Result<TargetRun, Error> {
        let run = Run::Migrate(target);
        if self.records_with_migration(storage) {
            Box::pin(self.run_in_schema(storage, &run, Some(claim))).await
        } else {
            self.run(storage, &run).await.map(TargetRun::Ran)
        }
    }

    /// A run in a schema of the catalog database, in one transaction. With `claim` (a SCHEMA
    /// tenant's rollout target), the migration's version rows, the mirror and the target's
    /// outcome go in one statement before the commit.
    pub(super) async fn run_in_schema(
        &self,
        storage: &Storage,
        run: &Run,
        claim: Option<&RolloutClaim<'_>>,
    ) -> Result<TargetRun, Error> {
        let name = required(&storage.schema, "schema")?;
        let schema = quote(name);
        let is_shared = storage.isolation == Isolation::Shared;
        if *run == (Run::Provision { recreate: false })
            && storage.isolation == Isolation::Schema
            && !storage.provisioned
            && let Some(done) = self.provision_first(storage, name).await?
        {
            return Ok(done);
        }
        // A rollout's target on the rollout workers' pool.
        let pool = match claim {
            Some(_) => self.catalog.rollout_conn(),
            None => self.catalog.conn(),
        };
        let txn = pool.begin().await.map_err(db_error)?;
        let mut before = None;
        let mut role = None;
        let created = match run {
            Run::Provision { recreate } => {
                let (exists, found) = roles::provision_enter(&txn, storage, name).await?;
                if exists {
                    // Never adopt a schema the control plane did not make for this tenant.
                    check_mark(&txn, "SCHEMA", name, storage).await?;
                }
                if *recreate && is_shared && exists {
                    shared::delete_rows(&txn, name, storage.tenant).await?;
                } else if *recreate && !is_shared {
                    exec(&txn, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
                }
                let created = *recreate || !exists;
                // Make the schema (marked as the tenant's; not IF NOT EXISTS, so one made by
                // anyone else meanwhile fails the provisioning) and its version table, and step
                // into it: sent with the role and its grants, in one round trip.
                let make = if !exists || (*recreate && !is_shared) {
                    format!(
                        "CREATE SCHEMA {schema}; {}; ",
                        mark_sql("SCHEMA", name, storage)
                    )
                } else {
                    String::new()
                };
                // The role and its grants go before the migrations, so that what they create
                // is granted as it is created (see `roles`); on their own, so that a refusal
                // for want of CREATEROLE is reported as such.
                let opening = format!(
                    "{make}SET LOCAL search_path TO {schema}; {}",
                    TenantMigrations::install_sql()
                );
                roles::prepare_in_schema(&txn, storage, name, &found, !make.is_empty(), &opening)
                    .await?;
                role = Some(found);
                before = Some(if created && !is_shared {
                    // A schema made just now: its version table, made above, is empty.
                    Vec::new()
                } else {
                    self.version_table(&txn, storage).await?
                });
                created
            }
            _ if self.catalog.knows_own_schema() => {
                // One round trip: the lock, the schema on the search_path, and the version
                // table read after the lock (so it sees the last run's commit). A missing
                // schema shows there as a missing table.
                before = Some(self.enter(&txn, storage, name).await?);
                false
            }
            _ => {
                // The lock, then the schema on the search_path; the version table is read next.
                exec(
                    &txn,
                    &format!("{}; SET LOCAL search_path TO {schema}", lock_sql(storage)),
                )
                .await?;
                false
            }
        };
        // A provisioning's version rows go in its grants' batch.
        let defer = (claim.is_some() && !is_shared) || role.is_some();
        let (mut report, unrecorded) = self
            .migrate(&txn, storage, run, defer, before, None)
            .await?;
        report.created = created;
        if *run == Run::Inspect {
            txn.rollback().await.map_err(db_error)?;
            return Ok(TargetRun::Ran(report));
        }
        if let Some(claim) = claim
            && !unrecorded.is_empty()
        {
            return self
                .commit_target(txn, storage, report, &unrecorded, claim)
                .await;
        }
        if is_shared {
            shared::secure(&txn, name).await?;
        }
        // Back to the catalog's schema for the mirror, committed with the migration (in the
        // grants' batch when provisioning, which also settles the role's LOGIN).
        let back = "SET LOCAL search_path TO DEFAULT";
        if role.is_some() {
            let at = report.applied.last().map_or(0, |(_, at)| at.timestamp());
            let then = format!(
                "{}; {back}; {}",
                TenantMigrations::record_sql(name, &unrecorded, at),
                settle_login_sql(storage.tenant, &storage.role)
            );
            roles::grant_in_schema(&txn, storage, name, &then).await?;
        } else {
            exec(&txn, back).await?;
        }
        let provisioned = matches!(run, Run::Provision { .. });
        let rebuilt = matches!(run, Run::Provision { recreate: true });
        report.recorded =
            record_migration(&txn, storage.tenant, report.version(), provisioned, rebuilt).await?;
        if is_shared {
            // One schema serves every shared tenant: they all are at its version now. That may
            // change this tenant's row again, so the row returned above is not kept.
            record_shared_version(&txn, report.version())
                .await
                .map_err(db_error)?;
            if let RowChange::Changed(row) = &mut report.recorded {
                *row = None;
            }
        }
        txn.commit().await.map_err(db_error)?;
        self.catalog.changed(&if is_shared {
            Change::All
        } else {
            Change::TenantRow(storage.tenant)
        });
        Ok(TargetRun::Ran(report))
    }

    /// Takes the tenant's lock in `txn`, puts its schema `name` on the `search_path`, and reads
    /// its version table, checked against the known migrations (one round trip). A missing
    /// schema or table means the tenant is not provisioned.
    pub(super) async fn enter(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        name: &str,
    ) -> Result<Versions, Error> {
        let rows = self
            .catalog
            .enter_tenant_schema(txn, name, &lock_key(storage))
            .await
            .map_err(|e| missing_table(e, storage))?;
        self.known_versions(rows)
    }

    /// Records the versions `unrecorded`, the mirror and the rollout target's outcome, and
    /// commits; rolls back if the claim was lost.
    async fn commit_target(
        &self,
        txn: DatabaseTransaction,
        storage: &Storage,
        report: Report,
        unrecorded: &[String],
        claim: &RolloutClaim<'_>,
    ) -> Result<TargetRun, Error> {
        let Some(outcome) = self
            .record_target(&txn, storage, &report, unrecorded, claim)
            .await?
        else {
            txn.rollback().await.map_err(db_error)?;
            return Ok(TargetRun::Lost);
        };
        txn.commit().await.map_err(db_error)?;
        self.catalog.changed(&Change::TenantRow(storage.tenant));
        Ok(TargetRun::Recorded(outcome))
    }

    /// Records, in `txn`, the versions `unrecorded`, the mirror and the rollout target's
    /// outcome, which it returns; `None` (and nothing written) if the claim was lost.
    pub(super) async fn record_target(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        report: &Report,
        unrecorded: &[String],
        claim: &RolloutClaim<'_>,
    ) -> Result<Option<Outcome>, Error> {
        let (outcome, at) = migrated(report, claim);
        let held = self
            .catalog
            .record_migrated_target(
                txn,
                claim.rollout,
                claim.worker,
                storage.tenant,
                Applied {
                    schema: required(&storage.schema, "schema")?,
                    versions: unrecorded,
                    at,
                },
                &outcome,
            )
            .await?;
        Ok(held.then_some(outcome))
    }
}

/// The outcome of a rollout target migrated as `report` says, and the time its version rows
/// carry (Unix seconds).
pub(super) fn migrated(report: &Report, claim: &RolloutClaim<'_>) -> (Outcome, i64) {
    let at = report.applied.last().map_or(0, |(_, at)| at.timestamp());
    let outcome = Outcome::Migrated {
        from: claim.from.clone(),
        to: report.version().map(str::to_owned),
        duration_ms: i64::try_from(claim.started.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    (outcome, at)
}
