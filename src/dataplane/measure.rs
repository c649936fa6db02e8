//! How many bytes a tenant's data takes, measured where it lives: the relations of its schema
//! (tables, indexes and TOAST), its database, its SQLite file (with the write-ahead log), or its
//! rows in the shared tables.

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

use super::roles::relations_in_schema;
use super::sql::Ident;
use super::{DataPlane, Storage, TENANT_SETTING, shared};
use crate::db::{Backend, db_error};
use crate::domain::{Error, Isolation};

/// The bytes of the relations of the schema named `$1`, found through `pg_depend`'s index
/// ([`relations_in_schema`]) rather than by reading the whole of `pg_class`, which holds every
/// tenant's relations.
fn schema_bytes() -> String {
    format!(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint AS bytes \
         FROM ({}) AS r JOIN pg_class c ON c.oid = r.oid \
         WHERE c.relkind IN ('r', 'm', 'p')",
        relations_in_schema("to_regnamespace(quote_ident($1))")
    )
}

impl DataPlane {
    /// Measures the tenant's storage; 0 when it has none (not provisioned, or purged).
    pub async fn storage_bytes(&self, storage: &Storage) -> Result<i64, Error> {
        let conn = &self.catalog_db;
        let scalar = |sql: String, value: String| {
            Statement::from_sql_and_values(DbBackend::Postgres, sql, [value.into()])
        };
        match (storage.isolation, self.backend) {
            (Isolation::Schema, Backend::Postgres) => {
                let Some(schema) = &storage.schema else {
                    return Ok(0);
                };
                let row = conn
                    .query_one_raw(scalar(schema_bytes(), schema.clone()))
                    .await
                    .map_err(db_error)?;
                bytes(row)
            }
            (Isolation::Database, Backend::Postgres) => {
                let Some(database) = &storage.database else {
                    return Ok(0);
                };
                let row = conn
                    .query_one_raw(scalar(
                        "SELECT COALESCE((SELECT pg_database_size(datname) FROM pg_database WHERE datname = $1), 0)::bigint AS bytes".into(),
                        database.clone(),
                    ))
                    .await
                    .map_err(db_error)?;
                bytes(row)
            }
            (Isolation::Database, Backend::Sqlite) => {
                let Some(file) = &storage.database else {
                    return Ok(0);
                };
                let path = self.file_path(file);
                let mut total = 0u64;
                for suffix in ["", "-wal"] {
                    let mut name = path.clone().into_os_string();
                    name.push(suffix);
                    match tokio::fs::metadata(&name).await {
                        Ok(meta) => total += meta.len(),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::Internal(format!("measuring {file}: {e}"))),
                    }
                }
                Ok(i64::try_from(total).unwrap_or(i64::MAX))
            }
            (Isolation::Shared, Backend::Postgres) => {
                let Some(schema) = &storage.schema else {
                    return Ok(0);
                };
                // The tenant's rows only, seen through its own row-level security policy.
                let txn = conn.begin().await.map_err(db_error)?;
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT set_config($1, $2, true)",
                    [TENANT_SETTING.into(), storage.tenant.to_string().into()],
                ))
                .await
                .map_err(db_error)?;
                let mut total = 0i64;
                for table in shared::tenant_table_names(&txn, schema).await? {
                    let sql = format!(
                        "SELECT COALESCE(SUM(pg_column_size(t.*)), 0)::bigint AS bytes FROM {}.{} t WHERE t.tenant_id = $1::uuid",
                        Ident::new(schema),
                        Ident::new(&table)
                    );
                    let row = txn
                        .query_one_raw(scalar(sql, storage.tenant.to_string()))
                        .await
                        .map_err(db_error)?;
                    total = total.saturating_add(bytes(row)?);
                }
                txn.rollback().await.map_err(db_error)?;
                Ok(total)
            }
            (Isolation::Schema | Isolation::Shared, Backend::Sqlite) => Err(Error::Internal(
                "schema or shared isolation in an SQLite catalog".into(),
            )),
        }
    }
}

fn bytes(row: Option<sea_orm::QueryResult>) -> Result<i64, Error> {
    match row {
        Some(row) => row.try_get::<i64>("", "bytes").map_err(db_error),
        None => Ok(0),
    }
}
