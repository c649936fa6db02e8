//! A component's tenant migrations as a value (the compiled sample set, a set pushed over the
//! API, or a test's own), with the version table it keeps in each tenant's storage, and the
//! arithmetic of "how many steps to reach this version".

use std::sync::Arc;

use migration::sea_orm_migration::{MigrationTrait, SchemaManager};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement};

use super::plan::{self, Batch};
use crate::domain::{ComponentId, Error, version_table};
use crate::sql::{Ident, Literal};

/// Produces the tenant migrations, oldest first. A function because sea-orm-migration consumes
/// the boxed migrations on every run.
pub type MigrationSource = Arc<dyn Fn() -> Vec<Box<dyn MigrationTrait>> + Send + Sync>;

/// One component's tenant migrations.
#[derive(Clone)]
pub struct TenantMigrations {
    component: Arc<str>,
    table: Arc<str>,
    source: MigrationSource,
    names: Arc<Vec<String>>,
    /// A pushed component's scripts, for the dry run to show; `None` for a compiled one.
    scripts: Option<Arc<Vec<SqlMigration>>>,
}

impl std::fmt::Debug for TenantMigrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantMigrations")
            .field("component", &self.component)
            .field("latest", &self.latest())
            .finish()
    }
}

impl PartialEq for TenantMigrations {
    fn eq(&self, other: &Self) -> bool {
        self.component == other.component && self.names == other.names
    }
}

impl TenantMigrations {
    /// The compiled component ("sample"), made of `source`.
    pub fn new(source: MigrationSource) -> Self {
        Self::component(&ComponentId::sample(), source)
    }

    /// The component `component`, made of `source`; its versions go in the component's version
    /// table ([`version_table`]).
    pub fn component(component: &ComponentId, source: MigrationSource) -> Self {
        let names = source().iter().map(|m| m.name().to_owned()).collect();
        Self {
            component: component.as_str().into(),
            table: version_table(component).into(),
            source,
            names: Arc::new(names),
            scripts: None,
        }
    }

    /// A pushed component: each migration runs its SQL scripts (those for the tenants' backend,
    /// chosen by the caller).
    pub fn pushed(component: &ComponentId, migrations: Vec<SqlMigration>) -> Self {
        let migrations = Arc::new(migrations);
        let scripts = Arc::clone(&migrations);
        let mut set = Self::component(
            component,
            Arc::new(move || {
                migrations
                    .iter()
                    .map(|m| Box::new(m.clone()) as Box<dyn MigrationTrait>)
                    .collect()
            }),
        );
        set.scripts = Some(scripts);
        set
    }

    /// A pushed component's migrations as the SQL scripts they run, oldest first; `None` for a
    /// compiled component, whose statements are known only by recording them.
    pub fn scripts(&self) -> Option<&[SqlMigration]> {
        self.scripts.as_deref().map(Vec::as_slice)
    }

    /// The sample tenant schema of the `migration` crate.
    pub fn builtin() -> Self {
        Self::new(Arc::new(migration::tenant::migrations))
    }

    /// The component's id.
    pub fn id(&self) -> &str {
        &self.component
    }

    /// The component's version table in each tenant's storage.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Every migration's version, oldest first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn latest(&self) -> Option<&str> {
        self.names.last().map(String::as_str)
    }

    pub fn position(&self, version: &str) -> Option<usize> {
        self.names.iter().position(|n| n == version)
    }

    /// Checks a requested target version, naming `field` when it is unknown.
    pub fn check_version(&self, version: &str, field: &str) -> Result<usize, Error> {
        self.position(version).ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "'{version}' is not a migration of component '{}'",
                    self.component
                ),
            )
        })
    }
}

/// A pushed migration: its statements, run as one script (one round trip) on the tenant's
/// transaction, with no savepoint of its own.
#[derive(Debug, Clone)]
pub struct SqlMigration {
    pub version: String,
    pub up: String,
    /// Empty when the migration cannot be reverted.
    pub down: String,
}

impl migration::sea_orm_migration::MigrationName for SqlMigration {
    fn name(&self) -> &str {
        &self.version
    }
}

#[migration::sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for SqlMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&self.up)
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if self.down.trim().is_empty() {
            return Err(DbErr::Migration(format!(
                "migration {} has no down script: it cannot be reverted",
                self.version
            )));
        }
        manager
            .get_connection()
            .execute_unprepared(&self.down)
            .await
            .map(|_| ())
    }
}

impl TenantMigrations {
    /// Creates the component's version table, if it is missing, in the schema on the
    /// `search_path` (or the tenant's database): the shape sea-orm-migration gives it.
    pub fn install_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\"version\" varchar NOT NULL PRIMARY KEY, \"applied_at\" bigint NOT NULL)",
            Ident::new(&self.table)
        )
    }

    /// Takes from every role but the owner what it may do to the component's version table
    /// (PostgreSQL) but read it. A version table made after the tenant's role got the schema's
    /// default privileges (a component new to the tenant's plan) was granted writes by them: a
    /// tenant role that could write its version table could make the control plane skip or
    /// repeat a migration.
    pub fn keep_to_owner_sql(&self) -> String {
        format!(
            "DO $keep$ DECLARE r record; BEGIN \
               FOR r IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a \
                        WHERE c.oid = to_regclass({table}) AND a.grantee <> c.relowner \
                          AND a.privilege_type <> 'SELECT' LOOP \
                 EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s FROM %s', \
                   {table}, CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END); \
               END LOOP; \
             END $keep$",
            table = Literal::new(&Ident::new(&self.table).to_string())
        )
    }

    /// Writes the version rows of applied migrations, in one statement, as PostgreSQL text
    /// with its values inlined (empty when there are none), into the version table in `schema`.
    pub fn record_sql(&self, schema: &str, versions: &[String], applied_at: i64) -> String {
        if versions.is_empty() {
            return String::new();
        }
        format!(
            "INSERT INTO {}.{} (version, applied_at) VALUES {}",
            Ident::new(schema),
            Ident::new(&self.table),
            rows(versions, applied_at)
        )
    }

    /// [`Self::record_sql`], which fails unless the version table holds exactly `before`
    /// (bytewise sorted) when it runs: for a migration run on top of the versions the catalog
    /// mirrors, without reading the version table first. A version table that holds anything
    /// else fails the statement (its `version` would be NULL), and with it the transaction.
    pub fn record_checked_sql(
        &self,
        schema: &str,
        versions: &[String],
        applied_at: i64,
        before: &[String],
    ) -> String {
        if versions.is_empty() {
            return String::new();
        }
        let table = format!("{}.{}", Ident::new(schema), Ident::new(&self.table));
        let expected = before
            .iter()
            .map(|v| Literal::new(v).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let rows = versions
            .iter()
            .map(|v| format!("({})", Literal::new(v)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {table} (version, applied_at) \
             SELECT CASE WHEN (SELECT coalesce(array_agg(version::text ORDER BY version COLLATE \"C\"), \
                                  '{{}}'::text[]) FROM {table}) = ARRAY[{expected}]::text[] \
                    THEN v.version END, {applied_at} \
             FROM (VALUES {rows}) AS v(version)"
        )
    }

    /// The version tables of `sets` in the schema on the `search_path` (or the tenant's
    /// database), in one statement: each set's rows (version, Unix seconds), oldest first.
    pub async fn applied_of(
        txn: &DatabaseTransaction,
        sets: &[&TenantMigrations],
    ) -> Result<Vec<Vec<(String, i64)>>, DbErr> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let backend = txn.get_database_backend();
        let collate = if backend == DbBackend::Postgres {
            " COLLATE \"C\""
        } else {
            ""
        };
        let sql = sets
            .iter()
            .enumerate()
            .map(|(i, set)| {
                format!(
                    "SELECT CAST({i} AS bigint) AS set_index, CAST(version AS text) AS version, applied_at FROM {}",
                    Ident::new(&set.table)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows = txn
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT set_index, version, applied_at FROM ({sql}) AS v ORDER BY set_index, version{collate}"),
            ))
            .await?;
        let mut applied = vec![Vec::new(); sets.len()];
        for row in rows {
            let index: i64 = row.try_get("", "set_index")?;
            let slot = usize::try_from(index)
                .ok()
                .and_then(|i| applied.get_mut(i))
                .ok_or_else(|| DbErr::Custom(format!("version table index {index}")))?;
            slot.push((
                row.try_get::<String>("", "version")?,
                row.try_get::<i64>("", "applied_at")?,
            ));
        }
        Ok(applied)
    }

    /// Applies migrations `from..to` inside `txn`. On PostgreSQL, migrations that only change
    /// the schema go into `batch`, after what is there, and are left there for the caller to
    /// send with what it adds (see [`plan`]); one that must run statement by statement sends the
    /// batch first. [`Self::record`] or [`Self::record_sql`] writes their version rows. The
    /// caller's transaction is the unit of failure: no savepoint per migration, nothing
    /// half-applied survives an error.
    pub async fn up(
        &self,
        txn: &DatabaseTransaction,
        from: usize,
        to: usize,
        batch: &mut Batch,
    ) -> Result<(), DbErr> {
        let batched = txn.get_database_backend() == DbBackend::Postgres;
        let manager = SchemaManager::new(txn);
        for migration in self.span(from, to) {
            let recorded = if batched {
                plan::record(migration.as_ref()).await
            } else {
                None
            };
            match recorded {
                Some(statements) => statements
                    .iter()
                    .for_each(|statement| batch.push(statement)),
                None => {
                    batch.send(txn).await?;
                    migration.up(&manager).await?;
                }
            }
        }
        Ok(())
    }

    /// Migrations `from..to`, oldest first.
    pub(super) fn span(
        &self,
        from: usize,
        to: usize,
    ) -> impl Iterator<Item = Box<dyn MigrationTrait>> {
        (self.source)()
            .into_iter()
            .skip(from)
            .take(to.saturating_sub(from))
    }

    /// Writes the version rows of applied migrations, in one statement, into the version table
    /// of the tenant's database (or the schema on the `search_path`).
    pub async fn record(
        &self,
        txn: &DatabaseTransaction,
        versions: &[String],
        applied_at: i64,
    ) -> Result<(), DbErr> {
        if versions.is_empty() {
            return Ok(());
        }
        txn.execute_unprepared(&format!(
            "INSERT INTO {} (version, applied_at) VALUES {}",
            Ident::new(&self.table),
            rows(versions, applied_at)
        ))
        .await
        .map(|_| ())
    }

    /// Reverts migrations `to..from`, newest first, inside `txn`.
    pub async fn down(
        &self,
        txn: &DatabaseTransaction,
        from: usize,
        to: usize,
    ) -> Result<(), DbErr> {
        let manager = SchemaManager::new(txn);
        let migrations: Vec<_> = self.span(to, from).collect();
        for migration in migrations.into_iter().rev() {
            migration.down(&manager).await?;
            txn.execute_unprepared(&format!(
                "DELETE FROM {} WHERE version = {}",
                Ident::new(&self.table),
                Literal::new(migration.name())
            ))
            .await?;
        }
        Ok(())
    }
}

/// `(version, applied_at)` rows of an INSERT, their values inlined.
fn rows(versions: &[String], applied_at: i64) -> String {
    versions
        .iter()
        .map(|v| format!("({}, {applied_at})", Literal::new(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a migration should leave a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Apply everything pending.
    Latest,
    /// Up to and including this version (up), or back to it, keeping it applied (down).
    Up(usize),
    Down(usize),
    /// Revert the last applied migration.
    DownOne,
}

/// The number of migrations to apply (positive) or revert (negative) to go from `applied`
/// migrations to `target`, with `total` migrations known.
pub fn steps(applied: usize, total: usize, target: &Target) -> i64 {
    let goal = match target {
        Target::Latest => total,
        Target::Up(index) => (*index + 1).max(applied),
        Target::Down(index) => (*index + 1).min(applied),
        Target::DownOne => applied.saturating_sub(1),
    };
    goal as i64 - applied as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_reach_the_target_and_never_overshoot() {
        assert_eq!(steps(0, 4, &Target::Latest), 4);
        assert_eq!(steps(4, 4, &Target::Latest), 0);
        assert_eq!(steps(1, 4, &Target::Up(2)), 2);
        assert_eq!(steps(3, 4, &Target::Up(0)), 0, "up never goes down");
        assert_eq!(steps(4, 4, &Target::Down(1)), -2);
        assert_eq!(steps(1, 4, &Target::Down(2)), 0, "down never goes up");
        assert_eq!(steps(3, 4, &Target::DownOne), -1);
        assert_eq!(steps(0, 4, &Target::DownOne), 0);
    }

    #[test]
    fn the_builtin_set_is_the_sample_schema_in_order() {
        let set = TenantMigrations::builtin();
        assert_eq!(set.names().len(), 5);
        assert!(set.names()[0].ends_with("create_users"));
        assert!(set.names()[3].ends_with("create_audit_log"));
        assert!(
            set.latest()
                .is_some_and(|v| v.ends_with("tenant_scoped_keys"))
        );
        assert!(set.check_version("nope", "target_version").is_err());
    }
}
