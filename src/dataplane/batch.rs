//! Rollout targets migrated a few to a transaction: SCHEMA tenants whose schemas are in the
//! catalog database. Each tenant is locked, migrated and recorded as it is alone (its version
//! rows, the catalog's mirror and its target's outcome); the batch commits once. A batch that
//! cannot commit whole — a migration failed, a claim was lost — is rolled back, and its tenants
//! are migrated one by one, so each failure is recorded against its own tenant.
//!
//! Tenants are taken in id order, so two batches (of two rollouts sharing tenants) take the
//! tenants' locks in the same order and never wait on each other in a cycle.

use std::time::Instant;

use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::sql::required;
use super::{DataPlane, Run, Storage, Target};
use crate::domain::{Error, Isolation};
use crate::store::{Backend, Change, Outcome};

use super::in_schema::RolloutClaim;

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
        let txn = match self.catalog.conn().begin().await {
            Ok(txn) => txn,
            Err(error) => {
                tracing::debug!(%error, "a rollout batch could not begin");
                return None;
            }
        };
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].0.tenant);
        let mut outcomes = vec![None; batch.len()];
        let mut whole = true;
        for i in order {
            let (storage, claim) = &batch[i];
            match self.migrate_in_batch(&txn, storage, &target, claim).await {
                Ok(Some(outcome)) => outcomes[i] = Some(outcome),
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
        outcomes.into_iter().collect()
    }

    /// One tenant of a batch: its lock, its migration and its record. `None` when the tenant
    /// cannot be recorded in the batch: its claim was lost, or nothing was left to apply.
    async fn migrate_in_batch(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        target: &Target,
        claim: &RolloutClaim<'_>,
    ) -> Result<Option<Outcome>, Error> {
        let claim = RolloutClaim {
            started: Instant::now(),
            ..claim.clone()
        };
        let name = required(&storage.schema, "schema")?;
        let before = self.enter(txn, storage, name).await?;
        let run = Run::Migrate(target.clone());
        let (report, unrecorded) = self.migrate(txn, storage, &run, true, Some(before)).await?;
        if unrecorded.is_empty() {
            return Ok(None);
        }
        self.record_target(txn, storage, &report, &unrecorded, &claim)
            .await
    }
}
