//! What a tenant's version tables say: read in one statement for all of a run's components,
//! checked against each component's migrations (a version this server does not know is an
//! error, never a guess), and reported after a run ([`Report`]).

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::sql::{self, existing_tables, missing_table};
use super::{DataPlane, Storage, TenantMigrations};
use crate::domain::Error;

/// A version table's rows: each applied migration, oldest first, with when it was applied.
pub type Versions = Vec<(String, DateTime<Utc>)>;

/// What one component's version table says after a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComponentReport {
    /// The component's id.
    pub component: String,
    /// Applied migrations, oldest first, with the time each was applied.
    pub applied: Versions,
    pub pending: Vec<String>,
    /// Migrations this run applied (up) or reverted (down), in the order it did so.
    pub ran: Vec<String>,
}

impl ComponentReport {
    pub fn version(&self) -> Option<&str> {
        self.applied.last().map(|(v, _)| v.as_str())
    }
}

/// What a run found and did in a tenant's storage: one report per component it ran, in the
/// order it was given them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub components: Vec<ComponentReport>,
    /// Whether this run created the tenant's storage.
    pub created: bool,
}

impl Report {
    /// The report of the run's only (or first) component: a migration or an inspection is of
    /// one component.
    pub fn first(&self) -> ComponentReport {
        self.components.first().cloned().unwrap_or_default()
    }

    /// Whether the run applied or reverted any migration.
    pub fn ran_any(&self) -> bool {
        self.components.iter().any(|c| !c.ran.is_empty())
    }

    /// How many migrations the run applied or reverted.
    pub fn ran_count(&self) -> usize {
        self.components.iter().map(|c| c.ran.len()).sum()
    }

    /// Each component's version after the run, for the catalog's mirror.
    pub fn versions(&self) -> Vec<(&str, Option<&str>)> {
        self.components
            .iter()
            .map(|c| (c.component.as_str(), c.version()))
            .collect()
    }
}

impl DataPlane {
    /// The version tables of `sets` as an inspection reads them, making none: a component
    /// whose table is missing (new to the tenant) has nothing applied. The tenant is not
    /// provisioned when `schema` is given and missing.
    pub(super) async fn versions_if_any(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        schema: Option<&str>,
        sets: &[TenantMigrations],
    ) -> Result<Vec<Versions>, Error> {
        let present = existing_tables(txn, schema, sets)
            .await?
            .ok_or_else(|| sql::not_provisioned(storage))?;
        let with: Vec<TenantMigrations> = sets
            .iter()
            .zip(&present)
            .filter(|(_, there)| **there)
            .map(|(set, _)| set.clone())
            .collect();
        let mut read = self.versions_of(txn, storage, &with).await?.into_iter();
        Ok(present
            .iter()
            .map(|there| {
                if *there {
                    read.next().unwrap_or_default()
                } else {
                    Vec::new()
                }
            })
            .collect())
    }

    /// The version tables of `sets` in the schema on the `search_path` (or the tenant's
    /// database), read in one statement, each checked against its component's migrations.
    pub(super) async fn versions_of(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        sets: &[TenantMigrations],
    ) -> Result<Vec<Versions>, Error> {
        let refs: Vec<&TenantMigrations> = sets.iter().collect();
        let tables = TenantMigrations::applied_of(txn, &refs)
            .await
            .map_err(|e| missing_table(e, storage))?;
        sets.iter()
            .zip(tables)
            .map(|(set, rows)| known_versions(set, rows))
            .collect()
    }
}

/// The versions a tenant whose catalog mirror says `version` has applied of the component
/// `set`: every migration up to it (their times unknown: the epoch). An error when the
/// component has no migration of that name.
pub(super) fn mirrored_versions(
    set: &TenantMigrations,
    version: Option<&str>,
) -> Result<Versions, Error> {
    let names = set.names();
    let applied = match version {
        None => 0,
        Some(version) => {
            set.position(version).ok_or_else(|| {
                Error::Internal(format!(
                    "the catalog has the tenant at {version} of component '{}', which this server does not know",
                    set.id()
                ))
            })? + 1
        }
    };
    Ok(names[..applied]
        .iter()
        .map(|name| (name.clone(), DateTime::default()))
        .collect())
}

/// A version table's rows (version, Unix seconds), oldest first, checked against the
/// migrations of the component `set`.
fn known_versions(set: &TenantMigrations, rows: Vec<(String, i64)>) -> Result<Versions, Error> {
    let names = set.names();
    rows.into_iter()
        .enumerate()
        .map(|(i, (version, applied_at))| {
            if names.get(i) != Some(&version) {
                return Err(Error::Internal(format!(
                    "tenant has migration {version} of component '{}' applied, which this server does not know at position {i}",
                    set.id()
                )));
            }
            Ok((
                version,
                DateTime::from_timestamp(applied_at, 0).unwrap_or_default(),
            ))
        })
        .collect()
}

/// A component's report: what its version table says after a run that `ran` these.
pub(super) fn component_report(
    set: &TenantMigrations,
    applied: Versions,
    ran: Vec<String>,
) -> ComponentReport {
    let pending = set
        .names()
        .get(applied.len()..)
        .unwrap_or_default()
        .to_vec();
    ComponentReport {
        component: set.id().to_owned(),
        applied,
        pending,
        ran,
    }
}
