//! The tenant migration set as a value (so tests and embedders can add their own migrations),
//! and the arithmetic of "how many steps to reach this version".

use std::sync::Arc;

use migration::sea_orm_migration::{
    MigrationTrait, MigratorTraitSelf, SchemaManager,
    seaql_migrations::{self, Entity as VersionTable},
};
use sea_orm::sea_query::{Alias, PostgresQueryBuilder, Query};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityName,
    EntityTrait, QueryOrder, Schema,
};

use super::plan::{self, Batch};
use crate::domain::Error;
use crate::sql::{Ident, Literal};

/// Produces the tenant migrations, oldest first. A function because sea-orm-migration consumes
/// the boxed migrations on every run.
pub type MigrationSource = Arc<dyn Fn() -> Vec<Box<dyn MigrationTrait>> + Send + Sync>;

/// The tenant migrations this server applies.
#[derive(Clone)]
pub struct TenantMigrations {
    source: MigrationSource,
    names: Arc<Vec<String>>,
}

impl TenantMigrations {
    pub fn new(source: MigrationSource) -> Self {
        let names = source().iter().map(|m| m.name().to_owned()).collect();
        Self {
            source,
            names: Arc::new(names),
        }
    }

    /// The sample tenant schema of the `migration` crate.
    pub fn builtin() -> Self {
        Self::new(Arc::new(migration::tenant::migrations))
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
                format!("'{version}' is not a known tenant migration"),
            )
        })
    }
}

impl TenantMigrations {
    /// Creates the tenant's version table if it is missing.
    pub async fn install(&self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        MigratorTraitSelf::install(self, txn).await
    }

    /// [`Self::install`] as PostgreSQL text, for a batch of statements sent as one.
    pub fn install_sql() -> String {
        let mut create = Schema::new(DbBackend::Postgres).create_table_from_entity(VersionTable);
        create.if_not_exists();
        create.to_string(PostgresQueryBuilder)
    }

    /// [`Self::record`] as PostgreSQL text, its values inlined (empty when there are none),
    /// into the version table of `schema`.
    pub fn record_sql(schema: &str, versions: &[String], applied_at: i64) -> String {
        if versions.is_empty() {
            return String::new();
        }
        Self::record_query(schema, versions, applied_at).to_string(PostgresQueryBuilder)
    }

    /// [`Self::record_sql`], which fails unless the version table holds exactly `before`
    /// (bytewise sorted) when it runs: for a migration run on top of the versions the catalog
    /// mirrors, without reading the version table first. A version table that holds anything
    /// else fails the statement (its `version` would be NULL), and with it the transaction.
    pub fn record_checked_sql(
        schema: &str,
        versions: &[String],
        applied_at: i64,
        before: &[String],
    ) -> String {
        if versions.is_empty() {
            return String::new();
        }
        let table = format!(
            "{}.{}",
            Ident::new(schema),
            Ident::new(VersionTable.table_name())
        );
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

    fn record_query(
        schema: &str,
        versions: &[String],
        applied_at: i64,
    ) -> sea_orm::sea_query::InsertStatement {
        let mut insert = Query::insert();
        insert
            .into_table((Alias::new(schema), Alias::new(VersionTable.table_name())))
            .columns([
                seaql_migrations::Column::Version,
                seaql_migrations::Column::AppliedAt,
            ]);
        for version in versions {
            insert.values_panic([version.as_str().into(), applied_at.into()]);
        }
        insert
    }

    /// The tenant's version table, oldest first.
    pub async fn applied(
        &self,
        txn: &DatabaseTransaction,
    ) -> Result<Vec<seaql_migrations::Model>, DbErr> {
        VersionTable::find()
            .order_by_asc(seaql_migrations::Column::Version)
            .all(txn)
            .await
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
    fn span(&self, from: usize, to: usize) -> impl Iterator<Item = Box<dyn MigrationTrait>> {
        (self.source)()
            .into_iter()
            .skip(from)
            .take(to.saturating_sub(from))
    }

    /// Writes the version rows of applied migrations, in one statement.
    pub async fn record(
        &self,
        txn: &DatabaseTransaction,
        versions: &[String],
        applied_at: i64,
    ) -> Result<(), DbErr> {
        if versions.is_empty() {
            return Ok(());
        }
        let rows = versions
            .iter()
            .map(|version| seaql_migrations::ActiveModel {
                version: Set(version.clone()),
                applied_at: Set(applied_at),
            });
        VersionTable::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
        Ok(())
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
            VersionTable::delete_by_id(migration.name().to_owned())
                .exec(txn)
                .await?;
        }
        Ok(())
    }
}

#[migration::sea_orm_migration::async_trait::async_trait]
impl MigratorTraitSelf for TenantMigrations {
    fn migrations(&self) -> Vec<Box<dyn MigrationTrait>> {
        (self.source)()
    }
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
