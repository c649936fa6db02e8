//! Rollout targets migrated a few to a transaction: SCHEMA tenants whose schemas are in the
//! catalog database. Each tenant is locked and migrated as it is alone; then one call records
//! them all (each tenant's version rows, the catalog's mirror and its target's outcome, by the
//! catalog's `tenant_plane_finish_batch`), and the batch commits once. A batch that
//! cannot commit whole — a migration failed, a claim was lost — is rolled back, and its tenants
//! are migrated one by one, so each failure is recorded against its own tenant.
//!
//! Tenants are taken in id order, so two batches (of two rollouts sharing tenants) take the
//! tenants' locks in the same order and never wait on each other in a cycle.

use std::time::Instant;

use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::sql::{lock_key, required};
use super::{DataPlane, Run, Storage, Target};
use crate::domain::{Error, Isolation};
use crate::store::{Applied, Backend, Change, Outcome, db_error};

use super::in_schema::{RolloutClaim, migrated};

/// A tenant of a batch, migrated and not yet recorded.
struct Migrated {
    outcome: Outcome,
    /// The versions the migration was run on top of, as the catalog mirrors them.
    before: Vec<String>,
    /// The versions it applied, for the tenant's version table.
    versions: Vec<String>,
    /// Their time, in Unix seconds.
    at: i64,
}

impl DataPlane {
    /// Whether a rollout target of this tenant is recorded in the transaction of its migration
    /// (its schema is in the catalog database, whose schema is known), and may be batched.
    pub fn records_with_migration(&self, storage: &Storage) -> bool {
        storage.isolation == Isolation::Schema
            && self.catalog.backend() == Backend::Postgres
            && self.catalog.knows_own_schema()
    }

    /// Migrates rollout targets up to `target` in one transaction, each recorded with its
    /// migration; their outcomes, in `batch` order. `None` when the batch was rolled back (a
    /// migration failed, a claim was lost, a tenant was found at the target already, or the
    /// database failed): the caller runs the tenants one by one. Every tenant must be one that
    /// [`Self::records_with_migration`].
    #[tracing::instrument(skip_all, fields(tenants = batch.len()))]
    pub async fn run_targets(
        &self,
        batch: &[(Storage, RolloutClaim<'_>)],
        target: Target,
    ) -> Option<Vec<Outcome>> {
        let txn = match self.catalog.rollout_conn().begin().await {
            Ok(txn) => txn,
            Err(error) => {
                tracing::debug!(%error, "a rollout batch could not begin");
                return None;
            }
        };
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].0.tenant);
        let mut done = Vec::with_capacity(batch.len());
        let mut whole = true;
        for i in order {
            let (storage, claim) = &batch[i];
            match self.migrate_in_batch(&txn, storage, &target, claim).await {
                Ok(Some(migrated)) => done.push((i, migrated)),
                Ok(None) => whole = false,
                Err(error) => {
                    tracing::debug!(%error, tenant = %storage.tenant, "a rollout batch is rolled back");
                    whole = false;
                }
            }
            if !whole {
                break;
            }
        }
        if whole {
            whole = self.record_batch(&txn, batch, &done).await;
        }
        if !whole {
            // At once, not when the connection is next used: the tenants' locks must be free
            // for the one-by-one runs that follow.
            if let Err(error) = txn.rollback().await {
                tracing::debug!(%error, "rolling a rollout batch back");
            }
            return None;
        }
        if let Err(error) = txn.commit().await {
            tracing::debug!(%error, "a rollout batch could not commit");
            return None;
        }
        for (storage, _) in batch {
            self.catalog.changed(&Change::TenantRow(storage.tenant));
        }
        let mut outcomes = vec![None; batch.len()];
        for (i, migrated) in done {
            outcomes[i] = Some(migrated.outcome);
        }
        outcomes.into_iter().collect()
    }

    /// Records the batch's migrated tenants in `txn` (one call); `false` when it cannot be
    /// committed whole (a claim was lost, or the database failed).
    async fn record_batch(
        &self,
        txn: &DatabaseTransaction,
        batch: &[(Storage, RolloutClaim<'_>)],
        done: &[(usize, Migrated)],
    ) -> bool {
        // One rollout and one worker hold every target of a batch.
        let Some((_, claim)) = batch.first() else {
            return true;
        };
        let mut records = Vec::with_capacity(done.len());
        for (i, migrated) in done {
            let Some(schema) = batch[*i].0.schema.as_deref() else {
                return false;
            };
            let applied = Applied {
                schema,
                versions: &migrated.versions,
                at: migrated.at,
            };
            records.push((
                batch[*i].0.tenant,
                applied,
                migrated.before.as_slice(),
                &migrated.outcome,
            ));
        }
        match self
            .catalog
            .record_migrated_batch(txn, claim.rollout, claim.worker, &records)
            .await
        {
            Ok(held) => held,
            Err(error) => {
                tracing::debug!(%error, "a rollout batch could not be recorded");
                false
            }
        }
    }

    /// One tenant of a batch: its lock and its migration; its outcome, the versions to record
    /// and their time. `None` when nothing was left to apply.
    async fn migrate_in_batch(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        target: &Target,
        claim: &RolloutClaim<'_>,
    ) -> Result<Option<Migrated>, Error> {
        let claim = RolloutClaim {
            started: Instant::now(),
            ..claim.clone()
        };
        let name = required(&storage.schema, "schema")?;
        let before = self.mirrored_versions(claim.from.as_deref())?;
        let names: Vec<String> = before.iter().map(|(version, _)| version.clone()).collect();
        self.catalog
            .lock_tenant_schema(txn, name, &lock_key(storage))
            .await
            .map_err(db_error)?;
        let run = Run::Migrate(target.clone());
        let (report, unrecorded) = self
            .migrate(txn, storage, &run, true, Some(before), None)
            .await?;
        if unrecorded.is_empty() {
            return Ok(None);
        }
        let (outcome, at) = migrated(&report, &claim);
        Ok(Some(Migrated {
            outcome,
            before: names,
            versions: unrecorded,
            at,
        }))
    }
}
