//! The components a run in a tenant's storage is of, as migration sets: the compiled one the
//! data plane holds, and pushed ones read from the catalog (their scripts for the backend the
//! tenants' storage is on).

use crate::dataplane::{COMPILED_COMPONENT, DataPlane, SqlMigration, TenantMigrations};
use crate::db::Backend;
use crate::domain::Error;
use crate::store::{Catalog, component_runs::PushedMigration};

/// The components of a plan, or one component, as the migration sets the data plane runs.
pub(super) async fn of_plan(
    catalog: &Catalog,
    dataplane: &DataPlane,
    plan: &str,
) -> Result<Vec<TenantMigrations>, Error> {
    let ids = catalog
        .plan_components(plan)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: "plan",
            name: format!("plans/{plan}"),
        })?;
    sets(catalog, dataplane, &ids).await
}

/// One component's migration set; NOT_FOUND when it is not registered.
pub(super) async fn of_component(
    catalog: &Catalog,
    dataplane: &DataPlane,
    component: &str,
) -> Result<TenantMigrations, Error> {
    if component != COMPILED_COMPONENT && !catalog.component_exists(component).await? {
        return Err(component_not_found(component));
    }
    let mut found = sets(catalog, dataplane, &[component.to_owned()]).await?;
    found.pop().ok_or_else(|| component_not_found(component))
}

/// The sets of `ids`, in their order: one query for all the pushed ones.
async fn sets(
    catalog: &Catalog,
    dataplane: &DataPlane,
    ids: &[String],
) -> Result<Vec<TenantMigrations>, Error> {
    let pushed: Vec<String> = ids
        .iter()
        .filter(|id| *id != COMPILED_COMPONENT)
        .cloned()
        .collect();
    let mut migrations = catalog.pushed_migrations(&pushed).await?;
    let sqlite = dataplane.backend() == Backend::Sqlite;
    Ok(ids
        .iter()
        .map(|id| {
            if id == COMPILED_COMPONENT {
                return dataplane.migrations().clone();
            }
            let rows = migrations.remove(id).unwrap_or_default();
            TenantMigrations::pushed(
                id,
                rows.into_iter().map(|m| for_backend(m, sqlite)).collect(),
            )
        })
        .collect())
}

/// A pushed migration as it runs on the tenants' backend: on SQLite, its SQLite scripts where
/// it has them.
fn for_backend(m: PushedMigration, sqlite: bool) -> SqlMigration {
    let pick = |own: String, general: String| {
        if sqlite && !own.trim().is_empty() {
            own
        } else {
            general
        }
    };
    SqlMigration {
        version: m.version,
        up: pick(m.sqlite_up_sql, m.up_sql),
        down: pick(m.sqlite_down_sql, m.down_sql),
    }
}

fn component_not_found(component: &str) -> Error {
    Error::NotFound {
        kind: "component",
        name: format!("components/{component}"),
    }
}
