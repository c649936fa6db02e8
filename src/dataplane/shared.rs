//! SHARED isolation (PostgreSQL): every shared tenant's rows live in one schema,
//! `<prefix>shared`, migrated once for all of them. Each table gets a `tenant_id` column that
//! defaults to the session setting `tenant_plane.tenant_id`, and a row-level security policy
//! (forced, so the tables' owner is bound too) that shows and accepts only the rows of the
//! tenant named by that setting. Superusers bypass row-level security: applications must
//! connect with an ordinary role.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait};

use super::sql::{exec, quote};
use crate::domain::{Error, TenantId};
use crate::store::db_error;

/// The session setting the policies read.
pub const TENANT_SETTING: &str = "tenant_plane.tenant_id";

/// Tables of the shared schema that hold tenant rows (all but the version table).
async fn tenant_tables(
    txn: &DatabaseTransaction,
    schema: &str,
) -> Result<Vec<(String, bool, bool)>, Error> {
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT c.relname AS name, c.relrowsecurity AS secured, \
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' \
                       AND NOT a.attisdropped) AS has_column \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'seaql_migrations' \
             ORDER BY c.oid",
            [schema.into()],
        ))
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "name").map_err(db_error)?,
                r.try_get::<bool>("", "secured").map_err(db_error)?,
                r.try_get::<bool>("", "has_column").map_err(db_error)?,
            ))
        })
        .collect()
}

/// Names of the shared schema's tables that hold tenant rows.
pub(super) async fn tenant_table_names(
    txn: &DatabaseTransaction,
    schema: &str,
) -> Result<Vec<String>, Error> {
    Ok(tenant_tables(txn, schema)
        .await?
        .into_iter()
        .filter(|(_, _, has_column)| *has_column)
        .map(|(name, ..)| name)
        .collect())
}

/// Gives every table of the shared schema its tenant column, index and policy (idempotent:
/// run after every migration, so tables added by later migrations are covered too).
pub async fn secure(txn: &DatabaseTransaction, schema: &str) -> Result<(), Error> {
    // NULLIF: once set in a session, a reset setting reads as '' rather than NULL.
    let current = format!("NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid");
    // Adding a column evaluates its default once, for rows that exist: give the setting a value
    // (the nil UUID, matching no tenant) for the rest of this transaction.
    exec(
        txn,
        &format!(
            "SELECT set_config('{TENANT_SETTING}', '{}', true)",
            uuid::Uuid::nil()
        ),
    )
    .await?;
    for (table, secured, has_column) in tenant_tables(txn, schema).await? {
        let qualified = format!("{}.{}", quote(schema), quote(&table));
        if !has_column {
            exec(
                txn,
                &format!(
                    "ALTER TABLE {qualified} ADD COLUMN tenant_id uuid NOT NULL \
                     DEFAULT (current_setting('{TENANT_SETTING}'))::uuid"
                ),
            )
            .await?;
            exec(txn, &format!("CREATE INDEX ON {qualified} (tenant_id)")).await?;
        }
        if !secured {
            exec(
                txn,
                &format!("ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY"),
            )
            .await?;
            exec(
                txn,
                &format!("ALTER TABLE {qualified} FORCE ROW LEVEL SECURITY"),
            )
            .await?;
            exec(
                txn,
                &format!(
                    "CREATE POLICY tenant_isolation ON {qualified} \
                     USING (tenant_id = {current}) WITH CHECK (tenant_id = {current})"
                ),
            )
            .await?;
        }
    }
    Ok(())
}

/// Deletes one tenant's rows from every shared table. Tables are tried in passes, so rows
/// referenced by other tables' rows go after them whatever the foreign keys' order.
pub async fn delete_rows(
    txn: &DatabaseTransaction,
    schema: &str,
    tenant: TenantId,
) -> Result<(), Error> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config($1, $2, true)",
        [TENANT_SETTING.into(), tenant.to_string().into()],
    ))
    .await
    .map_err(db_error)?;
    let mut left: Vec<String> = tenant_tables(txn, schema)
        .await?
        .into_iter()
        .map(|(name, ..)| name)
        .collect();
    while !left.is_empty() {
        let before = left.len();
        let mut blocked = Vec::new();
        let mut last_error = None;
        for table in left {
            let savepoint = txn.begin().await.map_err(db_error)?;
            let deleted = savepoint
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    format!(
                        "DELETE FROM {}.{} WHERE tenant_id = $1",
                        quote(schema),
                        quote(&table)
                    ),
                    [tenant.as_uuid().into()],
                ))
                .await;
            match deleted {
                Ok(_) => savepoint.commit().await.map_err(db_error)?,
                Err(e) => {
                    savepoint.rollback().await.map_err(db_error)?;
                    last_error = Some(e);
                    blocked.push(table);
                }
            }
        }
        if blocked.len() == before {
            return Err(
                last_error.map_or_else(|| Error::Internal("purging shared rows".into()), db_error)
            );
        }
        left = blocked;
    }
    Ok(())
}
