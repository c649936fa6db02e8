//! The dry run: which migrations a run toward a target would apply or revert in a tenant's
//! storage, and what each would send, found without changing anything. The tenant's version
//! table is read as an inspection reads it (no table is made, not even for a component new to
//! the tenant); a compiled migration's statements are recorded without a database
//! ([`super::plan::record_step`]); a pushed migration is its script, which the caller lints.

use super::plan::{Step, record_step};
use super::{ComponentReport, DataPlane, Storage, Target, TenantMigrations, check_target};
use crate::domain::{Error, Isolation};

/// What one planned migration would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedBody {
    /// A pushed migration's script for the tenants' backend (`up`, or `down` for a revert),
    /// run whole.
    Script(String),
    /// The statements a compiled migration sends, in order, recorded without a database.
    Recorded(Vec<String>),
    /// A compiled migration that reads, binds values or changes data, or any compiled
    /// migration on SQLite: it runs statement by statement and its statements are known only
    /// by running it.
    Unrecorded,
}

/// One migration a run would apply (or revert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMigration {
    pub version: String,
    /// Reverted, not applied.
    pub down: bool,
    pub body: PlannedBody,
}

/// What a run toward a target would do, and where the tenant is now.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    /// The component's version table now.
    pub current: ComponentReport,
    /// The migrations the run would apply (oldest first) or revert (newest first), in order.
    pub migrations: Vec<PlannedMigration>,
}

impl DataPlane {
    /// The migrations of the component `set` a run toward `target` would apply or revert in the
    /// tenant's storage, in the order it would, touching nothing; refused as the run would be
    /// (a version to go down to that is not applied, a revert of the first migration, storage
    /// that is not provisioned).
    pub async fn dry_run(
        &self,
        storage: &Storage,
        set: &TenantMigrations,
        target: &Target,
    ) -> Result<DryRun, Error> {
        let current = self.inspect(storage, set).await?;
        check_target(set.names(), &current.applied, target)?;
        let applied = current.applied.len();
        let steps = super::migrator::steps(applied, set.names().len(), target);
        let (from, to, down) = if steps >= 0 {
            (applied, applied + steps as usize, false)
        } else {
            (applied - steps.unsigned_abs() as usize, applied, true)
        };
        let mut migrations = Vec::with_capacity(to - from);
        let shared = storage.isolation == Isolation::Shared;
        let recordable = self.backend == crate::db::Backend::Postgres;
        for (offset, migration) in set.span(from, to).enumerate() {
            let index = from + offset;
            let body = match set.scripts().and_then(|scripts| scripts.get(index)) {
                Some(script) if down => PlannedBody::Script(script.down.clone()),
                Some(script) => PlannedBody::Script(script.up.clone()),
                None if !recordable => PlannedBody::Unrecorded,
                None => {
                    let step = if down { Step::Down } else { Step::Up };
                    let recorded = record_step(migration.as_ref(), step);
                    let recorded = if shared {
                        // As the shared schema runs it (see `super::shared`).
                        migration::tenant::shared_schema(recorded).await
                    } else {
                        recorded.await
                    };
                    recorded.map_or(PlannedBody::Unrecorded, PlannedBody::Recorded)
                }
            };
            migrations.push(PlannedMigration {
                version: migration.name().to_owned(),
                down,
                body,
            });
        }
        if down {
            migrations.reverse();
        }
        Ok(DryRun {
            current,
            migrations,
        })
    }
}
