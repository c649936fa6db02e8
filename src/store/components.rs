//! Queries on `components` and `component_migrations`: the registry of application-owned
//! tenant migrations.
//!
//! ## What is stored
//! A row per component, and per migration its version, its place in the component's history
//! (`position`, from 0 with no gap), its four scripts, the checksum the server computed, and
//! the lint's notes. Rows of `component_migrations` are only ever inserted: a history is
//! append-only, and the unique `(component, position)` index is what keeps two concurrent
//! pushes of different tails from both landing, even if the row lock of [`lock_component`]
//! were skipped.
//!
//! The compiled component ("sample") has no row here: its migrations ship inside the server.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
    sea_query::{Expr, OnConflict},
};

use super::entity::{component, component_migration};
use super::{Catalog, audit, db_error, is_unique_violation};
use crate::domain::{
    CallContext, Component, ComponentId, ComponentMigration, Error, LintNote, MigrationBody,
    MigrationVersion,
};

/// Rows per insert statement: 13 parameters each stays far below PostgreSQL's 65,535 and
/// SQLite's 32,766 bound parameters.
const INSERT_CHUNK: usize = 500;

/// A registered migration, as the data plane runs it in a tenant's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredMigration {
    pub version: MigrationVersion,
    pub up_sql: String,
    pub down_sql: String,
    pub sqlite_up_sql: String,
    pub sqlite_down_sql: String,
    pub checksum: String,
}

/// The registered migrations of each of `components`, oldest first, in one query. Every
/// component asked about has an entry; one that is not registered (or is the compiled
/// "sample", whose migrations are not stored here) has an empty list.
pub async fn migrations_of<C: ConnectionTrait>(
    conn: &C,
    components: &[ComponentId],
) -> Result<BTreeMap<ComponentId, Vec<RegisteredMigration>>, Error> {
    let mut found: BTreeMap<ComponentId, Vec<RegisteredMigration>> =
        components.iter().map(|c| (c.clone(), Vec::new())).collect();
    if components.is_empty() {
        return Ok(found);
    }
    let rows = component_migration::Entity::find()
        .filter(component_migration::Column::Component.is_in(components.iter().map(|c| c.as_str())))
        .order_by_asc(component_migration::Column::Component)
        .order_by_asc(component_migration::Column::Position)
        .all(conn)
        .await
        .map_err(db_error)?;
    for row in rows {
        let component =
            ComponentId::parse(&row.component).map_err(|_| corrupt(&row, "component"))?;
        let version =
            MigrationVersion::parse(&row.version).map_err(|_| corrupt(&row, "version"))?;
        found
            .entry(component)
            .or_default()
            .push(RegisteredMigration {
                version,
                up_sql: row.up_sql,
                down_sql: row.down_sql,
                sqlite_up_sql: row.sqlite_up_sql,
                sqlite_down_sql: row.sqlite_down_sql,
                checksum: row.checksum,
            });
    }
    Ok(found)
}

/// Locks `component`'s row in `txn` until it ends, so pushes to one component take turns:
/// `SELECT ... FOR UPDATE` on PostgreSQL; on SQLite a write to the row, which takes the
/// database's one write lock at once (a read first could not wait for it later). `false` when
/// the component does not exist.
pub async fn lock_component<C: ConnectionTrait>(
    txn: &C,
    component: &ComponentId,
) -> Result<bool, Error> {
    match txn.get_database_backend() {
        DbBackend::Sqlite => {
            let touched = component::Entity::update_many()
                .col_expr(component::Column::Id, Expr::col(component::Column::Id))
                .filter(component::Column::Id.eq(component.as_str()))
                .exec(txn)
                .await
                .map_err(db_error)?;
            Ok(touched.rows_affected == 1)
        }
        _ => Ok(component::Entity::find_by_id(component.as_str().to_owned())
            .lock_exclusive()
            .one(txn)
            .await
            .map_err(db_error)?
            .is_some()),
    }
}

/// `component`'s history as (version, checksum), oldest first.
pub async fn history<C: ConnectionTrait>(
    conn: &C,
    component: &ComponentId,
) -> Result<Vec<(MigrationVersion, String)>, Error> {
    let rows: Vec<(String, String)> = component_migration::Entity::find()
        .select_only()
        .column(component_migration::Column::Version)
        .column(component_migration::Column::Checksum)
        .filter(component_migration::Column::Component.eq(component.as_str()))
        .order_by_asc(component_migration::Column::Position)
        .into_tuple()
        .all(conn)
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(version, checksum)| {
            MigrationVersion::parse(&version)
                .map(|v| (v, checksum))
                .map_err(|_| {
                    Error::Internal(format!(
                        "catalog row of migration {component}/{version} has an invalid version"
                    ))
                })
        })
        .collect()
}

/// Registers `migrations` (their `index` is their position) of `component` in `txn`, sets the
/// component's `update_time`, and records the call's audit row. A concurrent push that got a
/// position or version first fails the push with ABORTED.
pub async fn register<C: ConnectionTrait>(
    txn: &C,
    ctx: &CallContext,
    component: &ComponentId,
    migrations: &[ComponentMigration],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    for chunk in migrations.chunks(INSERT_CHUNK) {
        let rows = chunk.iter().map(|m| component_migration::ActiveModel {
            component: Set(component.as_str().to_owned()),
            version: Set(m.body.version.as_str().to_owned()),
            position: Set(i32::try_from(m.index).unwrap_or(i32::MAX)),
            description: Set(m.body.description.clone()),
            up_sql: Set(m.body.up_sql.clone()),
            down_sql: Set(m.body.down_sql.clone()),
            sqlite_up_sql: Set(m.body.sqlite_up_sql.clone()),
            sqlite_down_sql: Set(m.body.sqlite_down_sql.clone()),
            checksum: Set(m.checksum.clone()),
            destructive: Set(m.destructive),
            findings: Set(serde_json::to_value(&m.findings).unwrap_or_default()),
            create_time: Set(now),
        });
        match component_migration::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await
        {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Aborted {
                    reason: "CONCURRENT_PUSH",
                    message: format!(
                        "another push registered migrations of component {component} at the \
                         same time; push again to see where its history stands"
                    ),
                });
            }
            Err(e) => return Err(db_error(e)),
        }
    }
    component::Entity::update_many()
        .col_expr(component::Column::UpdateTime, Expr::value(Some(now)))
        .filter(component::Column::Id.eq(component.as_str()))
        .exec(txn)
        .await
        .map_err(db_error)?;
    audit::record(txn, ctx, None).await.map_err(db_error)
}

impl Catalog {
    /// Registers a component. `None` when one with its id exists already: the caller reads it
    /// and decides.
    pub async fn insert_component(
        &self,
        ctx: &CallContext,
        new: &Component,
    ) -> Result<Option<Component>, Error> {
        let now = self.now();
        let txn = self.conn().begin().await.map_err(db_error)?;
        let inserted = component::Entity::insert(component::ActiveModel {
            id: Set(new.id.as_str().to_owned()),
            description: Set(new.description.clone()),
            owner: Set(new.owner.clone()),
            create_time: Set(now),
            update_time: Set(None),
        })
        .on_conflict(
            OnConflict::column(component::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(db_error)?;
        if inserted != 1 {
            return Ok(None);
        }
        audit::record(&txn, ctx, None).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(Some(Component {
            create_time: Some(now),
            update_time: None,
            latest_version: None,
            migration_count: 0,
            ..new.clone()
        }))
    }

    /// `component`'s history as (version, checksum), oldest first, read outside any
    /// transaction.
    pub async fn component_history(
        &self,
        component: &ComponentId,
    ) -> Result<Vec<(MigrationVersion, String)>, Error> {
        history(self.conn(), component).await
    }

    pub async fn get_component(&self, id: &ComponentId) -> Result<Option<Component>, Error> {
        let Some(row) = component::Entity::find_by_id(id.as_str().to_owned())
            .one(self.conn())
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        Ok(self.with_stats(vec![row]).await?.pop())
    }

    /// At most `limit` registered components ordered by id, after `after`.
    pub async fn list_components(
        &self,
        after: Option<&ComponentId>,
        limit: u64,
    ) -> Result<Vec<Component>, Error> {
        let mut query = component::Entity::find();
        if let Some(after) = after {
            query = query.filter(component::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(component::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        self.with_stats(rows).await
    }

    /// At most `limit` of `component`'s migrations, oldest first, after position `after`.
    pub async fn list_component_migrations(
        &self,
        component: &ComponentId,
        after: Option<usize>,
        limit: u64,
    ) -> Result<Vec<ComponentMigration>, Error> {
        let mut query = component_migration::Entity::find()
            .filter(component_migration::Column::Component.eq(component.as_str()));
        if let Some(after) = after {
            query = query.filter(
                component_migration::Column::Position.gt(i32::try_from(after).unwrap_or(i32::MAX)),
            );
        }
        let rows = query
            .order_by_asc(component_migration::Column::Position)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        rows.into_iter().map(migration_to_domain).collect()
    }

    pub async fn get_component_migration(
        &self,
        component: &ComponentId,
        version: &MigrationVersion,
    ) -> Result<Option<ComponentMigration>, Error> {
        component_migration::Entity::find_by_id((
            component.as_str().to_owned(),
            version.as_str().to_owned(),
        ))
        .one(self.conn())
        .await
        .map_err(db_error)?
        .map(migration_to_domain)
        .transpose()
    }

    /// The components of `rows` with their migration count and latest version, in one query.
    /// Versions sort in the order migrations are applied, so the latest is the greatest.
    async fn with_stats(&self, rows: Vec<component::Model>) -> Result<Vec<Component>, Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let stats: Vec<(String, i64, Option<String>)> = component_migration::Entity::find()
            .select_only()
            .column(component_migration::Column::Component)
            .column_as(component_migration::Column::Version.count(), "count")
            .column_as(component_migration::Column::Version.max(), "latest")
            .filter(component_migration::Column::Component.is_in(rows.iter().map(|r| r.id.clone())))
            .group_by(component_migration::Column::Component)
            .into_tuple()
            .all(self.conn())
            .await
            .map_err(db_error)?;
        let stats: HashMap<String, (i64, Option<String>)> = stats
            .into_iter()
            .map(|(id, count, latest)| (id, (count, latest)))
            .collect();
        rows.into_iter()
            .map(|row| {
                let id = ComponentId::parse(&row.id).map_err(|_| {
                    Error::Internal(format!(
                        "catalog row of component {} has an invalid id",
                        row.id
                    ))
                })?;
                let (count, latest) = stats.get(&row.id).cloned().unwrap_or((0, None));
                Ok(Component {
                    id,
                    description: row.description,
                    owner: row.owner,
                    latest_version: latest,
                    migration_count: usize::try_from(count).unwrap_or(0),
                    create_time: Some(row.create_time),
                    update_time: row.update_time,
                })
            })
            .collect()
    }
}

fn corrupt(row: &component_migration::Model, field: &str) -> Error {
    Error::Internal(format!(
        "catalog row of migration {}/{} has an invalid {field}",
        row.component, row.version
    ))
}

fn migration_to_domain(row: component_migration::Model) -> Result<ComponentMigration, Error> {
    let component = ComponentId::parse(&row.component).map_err(|_| corrupt(&row, "component"))?;
    let version = MigrationVersion::parse(&row.version).map_err(|_| corrupt(&row, "version"))?;
    let findings: Vec<LintNote> =
        serde_json::from_value(row.findings.clone()).map_err(|_| corrupt(&row, "findings"))?;
    let index = usize::try_from(row.position).map_err(|_| corrupt(&row, "position"))?;
    Ok(ComponentMigration {
        component,
        body: MigrationBody {
            version,
            description: row.description,
            up_sql: row.up_sql,
            down_sql: row.down_sql,
            sqlite_up_sql: row.sqlite_up_sql,
            sqlite_down_sql: row.sqlite_down_sql,
        },
        checksum: row.checksum,
        index,
        destructive: row.destructive,
        findings,
        create_time: Some(row.create_time),
    })
}
