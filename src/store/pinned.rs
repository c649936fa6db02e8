//! The catalog's schema, pinned (PostgreSQL).
//!
//! PostgreSQL's default `search_path` is `"$user", public`: a schema named like the control
//! plane's role comes before `public`. Taking the catalog's schema from the `search_path` would
//! let a tenant whose storage name equals that role (prefix `tenant_` + slug `plane` and the role
//! `tenant_plane`) move the catalog into its own schema at the next start, where the tenant's
//! role may write rows. So the schema is a setting (TENANT_PLANE_CATALOG_SCHEMA, default
//! `public`), every catalog connection starts with `search_path` set to it alone, and a start
//! refuses when the database's catalog is somewhere else.
//!
//! Where the catalog is, is recorded by the catalog itself: its version table
//! (`catalog_migrations`) is made in its schema the first time it is migrated. A start looks for
//! every schema holding `catalog_migrations` and `tenants` (tenant storage, marked as such, is
//! left out) before it migrates anything.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement};

use super::db_error;
use crate::domain::{CatalogSchema, Error};

pub use crate::db::{SHARED_MARK, STORAGE_MARK};

/// The schemas of this database that hold a tenant-plane catalog, read before migrating.
async fn catalog_schemas(txn: &DatabaseTransaction) -> Result<Vec<String>, Error> {
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT n.nspname::text AS schema \
             FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace \
             WHERE v.relname = 'catalog_migrations' AND v.relkind IN ('r', 'p') \
               AND v.relpersistence <> 't' \
               AND EXISTS (SELECT 1 FROM pg_class t \
                           WHERE t.relnamespace = n.oid AND t.relname = 'tenants' \
                             AND t.relkind IN ('r', 'p') AND t.relpersistence <> 't') \
               AND coalesce(obj_description(n.oid, 'pg_namespace'), '') NOT LIKE $1 \
             ORDER BY 1",
            ["tenant-plane %".into()],
        ))
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "schema").map_err(db_error))
        .collect()
}

/// Before the catalog is migrated (in the migration's transaction, under its lock): refuses a
/// start whose schema is not the one the database's catalog is in, and makes the schema when
/// this is the database's first catalog.
pub(super) async fn settle(txn: &DatabaseTransaction, schema: &CatalogSchema) -> Result<(), Error> {
    let found = catalog_schemas(txn).await?;
    if !found.is_empty() && !found.iter().any(|s| s == schema.as_str()) {
        return Err(Error::FailedPrecondition {
            subject: "TENANT_PLANE_CATALOG_SCHEMA".into(),
            message: format!(
                "this database's tenant-plane catalog is in schema {} but \
                 TENANT_PLANE_CATALOG_SCHEMA is '{schema}': set it to where the catalog is \
                 (an empty catalog would otherwise be made in '{schema}' and every tenant \
                 would seem gone)",
                found
                    .iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let present = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            [schema.as_str().into()],
        ))
        .await
        .map_err(db_error)?
        .is_some();
    if !present {
        // Only when missing: CREATE SCHEMA checks the CREATE privilege even where it exists.
        txn.execute_unprepared(&format!("CREATE SCHEMA {}", schema.quoted()))
            .await
            .map_err(|e| Error::FailedPrecondition {
                subject: "TENANT_PLANE_CATALOG_SCHEMA".into(),
                message: format!(
                    "the catalog's schema '{schema}' is missing and cannot be made: {e}"
                ),
            })?;
    }
    pinned_here(txn, schema).await
}

/// Refuses a connection whose `search_path` is not the catalog's schema alone: the startup
/// option that pins it was dropped on the way (a pooler that ignores startup parameters, say).
async fn pinned_here(txn: &DatabaseTransaction, schema: &CatalogSchema) -> Result<(), Error> {
    let row = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('search_path') AS schema",
        ))
        .await
        .map_err(db_error)?;
    let current: Option<String> = match row {
        Some(row) => row.try_get("", "schema").map_err(db_error)?,
        None => None,
    };
    if current.as_deref() != Some(schema.as_str()) {
        return Err(Error::FailedPrecondition {
            subject: "DATABASE_URL".into(),
            message: format!(
                "catalog connections must start with search_path set to '{schema}', but this one \
                 has {}: connect to PostgreSQL directly, not through a pooler that drops the \
                 startup option 'options'",
                current.map_or("no schema".to_owned(), |s| format!("'{s}'"))
            ),
        });
    }
    Ok(())
}

/// A failed connection, told apart when the server (a pooler, in practice: PostgreSQL takes
/// it) refused the startup parameter `options` that pins the catalog's schema.
pub(super) fn connect_error(err: sea_orm::DbErr) -> Error {
    if err
        .to_string()
        .contains("unsupported startup parameter: options")
    {
        return Error::FailedPrecondition {
            subject: "DATABASE_URL".into(),
            message: "the catalog's server refused the startup parameter 'options', which pins \
                      the catalog's search_path: DATABASE_URL goes through a connection pooler \
                      (PgBouncer) that does not pass it on; connect the control plane to \
                      PostgreSQL directly"
                .into(),
        };
    }
    db_error(err)
}
