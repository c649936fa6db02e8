//! The components a run in a tenant's storage is of, as migration sets: the compiled one the
//! data plane holds, and pushed ones read from the catalog (their scripts for the backend the
//! tenants' storage is on).

use crate::dataplane::{DataPlane, SqlMigration, TenantMigrations};
use crate::db::Backend;
use crate::domain::{ComponentId, Error};
use crate::store::{Catalog, RegisteredMigration, components::migrations_of};

/// The components `plan` lists, in its order, as migration sets.
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
    let ids = ids
        .iter()
        .map(|id| {
            ComponentId::parse(id).map_err(|why| {
                Error::Internal(format!("plan {plan} lists a malformed component: {why}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    sets(catalog, dataplane, &ids).await
}

/// One component's migration set, by id; NOT_FOUND when it is not registered.
pub(super) async fn of_component(
    catalog: &Catalog,
    dataplane: &DataPlane,
    component: &str,
) -> Result<TenantMigrations, Error> {
    let not_found = || Error::NotFound {
        kind: "component",
        name: format!("components/{component}"),
    };
    let id = ComponentId::parse(component).map_err(|_| not_found())?;
    if !id.is_compiled() && catalog.get_component(&id).await?.is_none() {
        return Err(not_found());
    }
    sets(catalog, dataplane, std::slice::from_ref(&id))
        .await?
        .pop()
        .ok_or_else(not_found)
}

/// The sets of `ids`, in their order: one query for all the pushed ones.
async fn sets(
    catalog: &Catalog,
    dataplane: &DataPlane,
    ids: &[ComponentId],
) -> Result<Vec<TenantMigrations>, Error> {
    let pushed: Vec<ComponentId> = ids.iter().filter(|id| !id.is_compiled()).cloned().collect();
    let mut migrations = migrations_of(catalog.conn(), &pushed).await?;
    let sqlite = dataplane.backend() == Backend::Sqlite;
    Ok(ids
        .iter()
        .map(|id| {
            if id.is_compiled() {
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
fn for_backend(m: RegisteredMigration, sqlite: bool) -> SqlMigration {
    let pick = |own: String, general: String| {
        if sqlite && !own.trim().is_empty() {
            own
        } else {
            general
        }
    };
    SqlMigration {
        version: m.version.as_str().to_owned(),
        up: pick(m.sqlite_up_sql, m.up_sql),
        down: pick(m.sqlite_down_sql, m.down_sql),
    }
}
