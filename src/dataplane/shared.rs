//! SHARED isolation (PostgreSQL): every shared tenant's rows live in one schema,
//! `<prefix>shared`, migrated once for all of them. Each table gets a `tenant_id` column that
//! defaults to the session setting `tenant_plane.tenant_id`, and a row-level security policy
//! (forced, so the tables' owner is bound too) that shows and accepts only the rows of the
//! tenant named by that setting. Superusers bypass row-level security: applications must
//! connect with an ordinary role.
//!
//! Each shared tenant's own login role (see `roles`) is bound tighter: a table of the schema,
//! [`ROLES_TABLE`], maps each such role to its tenant, and two more policies per table let a
//! mapped role see and write its tenant's rows (without the setting) and never another's
//! (whatever it sets the setting to). Roles that are not mapped (the control plane, an
//! application's own role) are not affected by them.
//!
//! Row-level security does not apply to key checks or sequences. Migrations of this schema run
//! one at a time, each followed by [`secure`], inside `migration::tenant::shared_schema`, so a
//! migration knows where it runs and finds `tenant_id` on every earlier table to key on (the
//! sample schema's keys all include it). [`secure`] also takes SELECT on the schema's sequences
//! from mapped roles granted it by older versions: the sequences count every tenant's rows.

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionTrait,
};

use super::TenantMigrations;
use super::plan::Batch;
use super::roles::relations_in_schema;
use super::sql::{Ident, Literal, exec};
use crate::db::db_error;
use crate::domain::{Error, TenantId};

/// The session setting the policies read.
pub const TENANT_SETTING: &str = "tenant_plane.tenant_id";

/// The table mapping each shared tenant's login role to its tenant. Everyone may read it, and
/// row-level security shows each role only its own row.
pub(super) const ROLES_TABLE: &str = "tenant_plane_roles";

/// The permissive policy that shows a mapped role its tenant's rows; its restrictive twin,
/// [`ROLE_ONLY_POLICY`], keeps it from every other tenant's.
const ROLE_ROWS_POLICY: &str = "tenant_role_rows";
const ROLE_ONLY_POLICY: &str = "tenant_role_only";

/// A table of the shared schema, as [`secure`] finds it.
struct SharedTable {
    name: String,
    secured: bool,
    has_column: bool,
    role_policies: bool,
}

/// Tables of the shared schema that hold tenant rows (all but the version and role tables),
/// found through the index of `pg_depend` ([`relations_in_schema`]): `pg_class` has no index
/// on a relation's schema, and reading it whole would cost what every tenant's tables add.
async fn tenant_tables(txn: &DatabaseTransaction, schema: &str) -> Result<Vec<SharedTable>, Error> {
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT c.relname AS name, c.relrowsecurity AS secured, \
                   EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' \
                           AND NOT a.attisdropped) AS has_column, \
                   EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2) \
                     AS role_policies \
                 FROM ({relations}) AS r JOIN pg_class c ON c.oid = r.oid \
                 WHERE c.relkind = 'r' AND left(c.relname, 16) <> 'seaql_migrations' AND c.relname <> $1 \
                 ORDER BY c.oid",
                relations = relations_in_schema(&Literal::new(&Ident::new(schema))),
            ),
            [ROLES_TABLE.into(), ROLE_ONLY_POLICY.into()],
        ))
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            Ok(SharedTable {
                name: r.try_get::<String>("", "name").map_err(db_error)?,
                secured: r.try_get::<bool>("", "secured").map_err(db_error)?,
                has_column: r.try_get::<bool>("", "has_column").map_err(db_error)?,
                role_policies: r.try_get::<bool>("", "role_policies").map_err(db_error)?,
            })
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
        .filter(|table| table.has_column)
        .map(|table| table.name)
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
    ensure_roles_table(txn, schema).await?;
    revoke_sequence_reads(txn, schema).await?;
    // The tenant of the role running the query; NULL for a role that is not a tenant's.
    let role_tenant = format!(
        "(SELECT r.tenant_id FROM {} r WHERE r.role_name = CAST(current_user AS text))",
        roles_table(schema)
    );
    for table in tenant_tables(txn, schema).await? {
        let qualified = format!("{}.{}", Ident::new(schema), Ident::new(&table.name));
        if !table.has_column {
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
        if !table.secured {
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
        if !table.role_policies {
            let own = format!("tenant_id = {role_tenant}");
            let only = format!("tenant_id = COALESCE({role_tenant}, tenant_id)");
            exec(
                txn,
                &format!(
                    "CREATE POLICY {ROLE_ROWS_POLICY} ON {qualified} USING ({own}) WITH CHECK ({own}); \
                     CREATE POLICY {ROLE_ONLY_POLICY} ON {qualified} AS RESTRICTIVE \
                       USING ({only}) WITH CHECK ({only})"
                ),
            )
            .await?;
        }
    }
    Ok(())
}

/// Applies migrations `from..to` of the component `migrations` to the shared schema `schema`,
/// after the statements in `batch`, one at a time, each followed by [`secure`]: so a migration finds the `tenant_id`
/// column on every table an earlier one made, and can key on it (the migrations run as
/// `migration::tenant::in_shared_schema`).
pub(super) async fn up(
    txn: &DatabaseTransaction,
    migrations: &TenantMigrations,
    schema: &str,
    from: usize,
    to: usize,
    batch: &mut Batch,
    failed: &impl Fn(DbErr) -> Error,
) -> Result<(), Error> {
    for next in from..to {
        migration::tenant::shared_schema(async {
            migrations.up(txn, next, next + 1, batch).await?;
            batch.send(txn).await
        })
        .await
        .map_err(failed)?;
        secure(txn, schema).await?;
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
        .map(|table| table.name)
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
                        Ident::new(schema),
                        Ident::new(&table)
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

/// Takes SELECT on the shared schema's sequences from the tenant roles that still hold it
/// (roles granted before tenant roles got USAGE only): the sequences count every tenant's rows,
/// so reading one (`SELECT last_value`) tells a tenant how much the others write. USAGE
/// (`nextval`, and `currval` of this session's own values) stays.
///
/// The holders are read from the sequences' own privileges (found through `pg_depend`, as
/// [`tenant_tables`] finds the tables), not by asking, for every mapped role, whether it may
/// read each sequence: that read the role table whole and each sequence's privileges once per
/// role. Roles made now never hold SELECT, so there is nothing to revoke once older roles
/// have lost it.
async fn revoke_sequence_reads(txn: &DatabaseTransaction, schema: &str) -> Result<(), Error> {
    let rows = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT c.oid::regclass::text AS sequence, pg_get_userbyid(a.grantee)::text AS role_name \
                 FROM ({relations}) AS r JOIN pg_class c ON c.oid = r.oid, \
                   LATERAL aclexplode(c.relacl) AS a \
                 WHERE c.relkind = 'S' AND a.privilege_type = 'SELECT' \
                   AND EXISTS (SELECT 1 FROM {roles} t \
                               WHERE t.role_name = pg_get_userbyid(a.grantee)::text)",
                relations = relations_in_schema(&Literal::new(&Ident::new(schema))),
                roles = roles_table(schema),
            ),
        ))
        .await
        .map_err(db_error)?;
    let schema = Ident::new(schema);
    let mut sql = String::new();
    for row in rows {
        let sequence: String = row.try_get("", "sequence").map_err(db_error)?;
        let role = Ident::new(&row.try_get::<String>("", "role_name").map_err(db_error)?);
        sql.push_str(&format!(
            "REVOKE SELECT ON SEQUENCE {sequence} FROM {role}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA {schema} \
               REVOKE SELECT ON SEQUENCES FROM {role}; "
        ));
    }
    if sql.is_empty() {
        return Ok(());
    }
    exec(txn, &sql).await
}

/// Creates [`ROLES_TABLE`] if it is missing.
async fn ensure_roles_table(txn: &DatabaseTransaction, schema: &str) -> Result<(), Error> {
    let table = roles_table(schema);
    if has_roles_table(txn, &table).await? {
        return Ok(());
    }
    exec(
        txn,
        &format!(
            "CREATE TABLE {table} (role_name text PRIMARY KEY, tenant_id uuid NOT NULL); \
             ALTER TABLE {table} ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY own_role ON {table} USING (role_name = CAST(current_user AS text)); \
             GRANT SELECT ON {table} TO PUBLIC"
        ),
    )
    .await
}

/// Removes a tenant role from [`ROLES_TABLE`], if the schema has one.
pub(super) async fn forget_role(
    txn: &DatabaseTransaction,
    schema: &str,
    role: &str,
) -> Result<(), Error> {
    let table = roles_table(schema);
    if !has_roles_table(txn, &table).await? {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("DELETE FROM {table} WHERE role_name = $1"),
        [role.into()],
    ))
    .await
    .map(|_| ())
    .map_err(db_error)
}

fn roles_table(schema: &str) -> String {
    format!("{}.{}", Ident::new(schema), Ident::new(ROLES_TABLE))
}

async fn has_roles_table(txn: &DatabaseTransaction, table: &str) -> Result<bool, Error> {
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_class WHERE oid = to_regclass($1)",
            [table.into()],
        ))
        .await
        .map_err(db_error)?;
    Ok(row.is_some())
}
