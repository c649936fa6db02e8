//! What a run in a tenant's storage reads of components: which components a plan lists, and
//! the migrations pushed to them, in order.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};

use super::entity::plan;
use super::{Catalog, db_error};
use crate::domain::Error;

/// One pushed migration, as a run needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedMigration {
    pub version: String,
    pub up_sql: String,
    pub down_sql: String,
    pub sqlite_up_sql: String,
    pub sqlite_down_sql: String,
}

impl Catalog {
    /// The components the plan lists, in its order; `None` when there is no such plan.
    pub async fn plan_components(&self, plan_id: &str) -> Result<Option<Vec<String>>, Error> {
        let row = plan::Entity::find_by_id(plan_id.to_owned())
            .one(self.conn())
            .await
            .map_err(db_error)?;
        row.map(|p| {
            serde_json::from_value(p.components).map_err(|e| {
                Error::Internal(format!("plan {plan_id} has malformed components: {e}"))
            })
        })
        .transpose()
    }

    /// The migrations pushed to each of `components`, oldest first, in one query; a component
    /// with none (or that does not exist) is missing from the map.
    pub async fn pushed_migrations(
        &self,
        components: &[String],
    ) -> Result<BTreeMap<String, Vec<PushedMigration>>, Error> {
        let mut found: BTreeMap<String, Vec<PushedMigration>> = BTreeMap::new();
        if components.is_empty() {
            return Ok(found);
        }
        let backend = self.conn().get_database_backend();
        let placeholders = (1..=components.len())
            .map(|i| match backend {
                DbBackend::Postgres => format!("${i}"),
                _ => "?".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .conn()
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT component, version, up_sql, down_sql, sqlite_up_sql, sqlite_down_sql \
                     FROM component_migrations WHERE component IN ({placeholders}) \
                     ORDER BY component, position"
                ),
                components.iter().map(|c| c.as_str().into()),
            ))
            .await
            .map_err(db_error)?;
        for row in rows {
            let component: String = row.try_get("", "component").map_err(db_error)?;
            found.entry(component).or_default().push(PushedMigration {
                version: row.try_get("", "version").map_err(db_error)?,
                up_sql: row.try_get("", "up_sql").map_err(db_error)?,
                down_sql: row.try_get("", "down_sql").map_err(db_error)?,
                sqlite_up_sql: row.try_get("", "sqlite_up_sql").map_err(db_error)?,
                sqlite_down_sql: row.try_get("", "sqlite_down_sql").map_err(db_error)?,
            });
        }
        Ok(found)
    }

    /// Whether a component of this id is registered (pushed components only).
    pub async fn component_exists(&self, component: &str) -> Result<bool, Error> {
        let backend = self.conn().get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "SELECT 1 AS one FROM components WHERE id = $1",
            _ => "SELECT 1 AS one FROM components WHERE id = ?",
        };
        let row = self
            .conn()
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [component.into()],
            ))
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }
}
