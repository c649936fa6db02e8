//! Least-privilege tenant roles (PostgreSQL): one login role per tenant, which reaches that
//! tenant's data and nothing else.
//!
//! | isolation | the role may | it may not |
//! |---|---|---|
//! | schema | connect to the catalog database; use its schema; read and write rows of its tables and use their sequences (tables added by later migrations too); its `search_path` is its schema | create schemas or tables, change its version table, read the catalog's tables or any other schema |
//! | database | connect to its own database (CONNECT is revoked there from PUBLIC); read and write rows of its tables | create schemas or tables, connect to other tenants' databases, read the catalog's tables |
//! | shared | connect to the catalog database; read and write rows of the shared tables that belong to its tenant (row-level security keyed on the role itself, so setting `tenant_plane.tenant_id` to another tenant does not help it) | see or write another tenant's rows, and the rest as schema |
//!
//! No statement here reads a catalog table whose size grows with the fleet: a tenant's role
//! costs the same to make and grant in a catalog of ten tenants as in one of ten thousand
//! (docs/security.md, "Tenant roles", lists what is left). `GRANT … ON ALL TABLES IN SCHEMA`
//! reads the whole of `pg_class` (it has no index on a relation's schema), which holds every
//! tenant's relations: 6.4 ms per grant at 30,000 rows, 14 ms at 79,000, 35 ms at 139,000,
//! which took provisioning from 16 ms per tenant for a catalog's first thousand tenants to
//! 104 ms for its tenth. So in a schema of the catalog
//! database the role is made and granted before the migrations run ([`before_migrations`]):
//! the schema's default privileges grant what the migrations then create, as they create it;
//! tables already there are granted by name, found through `pg_depend`'s index
//! ([`relations_in_schema`]). CONNECT on the catalog database comes from one connect role per
//! catalog database that tenant roles are members of ([`join_connect_role`]), not from a grant
//! per role, which would lengthen the database's one privilege list by an entry per tenant.
//!
//! The role is made and granted inside the transaction that provisions the tenant, so it exists
//! exactly when the provisioning committed, and provisioning again (after a crash, or to bring an
//! older tenant up to date) grants again, changing nothing that is already right. It is created
//! LOGIN with no password, so no password authentication can succeed until
//! RotateTenantCredentials sets one. While the tenant is suspended or deleted the role is
//! NOLOGIN: the catalog changes that with the tenant's state, in the same transaction (the
//! store's `role_login`, called by the use case). The control plane makes itself a member of
//! the role, which lets it end the role's sessions and drop what the role owns when the tenant
//! is purged without being a superuser (CREATEROLE is enough).

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionTrait,
};

use super::plan::Batch;
use super::shared::{self, ROLES_TABLE};
use super::sql::{INSUFFICIENT_PRIVILEGE, Ident, Literal, check_mark, exec, lock, mark, sqlstate};
use super::{DataPlane, Storage};
use crate::db::end_sessions;
use crate::db::{Backend, db_error};
use crate::domain::{Error, Isolation, ScramVerifier};

/// The transaction-local setting that hands a password verifier to `ALTER ROLE`.
const VERIFIER_SETTING: &str = "tenant_plane.role_verifier";

mod grants;
mod lookup;

pub(super) use grants::relations_in_schema;
use grants::{CATALOG_CONNECT_LOCK, GrantStart, join_connect_role, schema_grants};
pub(super) use lookup::provision_enter;
use lookup::{Found, find_role};

/// Sends `batch`, which holds the statements that make and grant the tenant's role. Refused
/// for want of a privilege, it says what the control plane's role lacks; any other failure is
/// `failed`'s (the batch may hold the tenant's migrations too).
pub(super) async fn send_grants(
    txn: &DatabaseTransaction,
    found: &Found,
    role: &str,
    batch: &mut Batch,
    failed: impl Fn(DbErr) -> Error,
) -> Result<(), Error> {
    batch.send(txn).await.map_err(|e| {
        if sqlstate(&e).as_deref() == Some(INSUFFICIENT_PRIVILEGE) {
            Error::FailedPrecondition {
                subject: "DATABASE_URL".into(),
                message: "the control plane's database role may not create or grant tenant \
                          roles: give it CREATEROLE"
                    .into(),
            }
        } else {
            failed(e)
        }
    })?;
    if found.missing {
        tracing::info!(role, "tenant role made (it commits with the provisioning)");
    }
    Ok(())
}

/// The statement that makes the role when it is missing: LOGIN, but no password yet.
fn create_role(storage: &Storage, found: &Found) -> String {
    if found.missing {
        make_role(storage)
    } else {
        String::new()
    }
}

/// Makes the role (an error if one of its name exists), LOGIN with no password, marked as the
/// tenant's, and makes the control plane a member of it.
fn make_role(storage: &Storage) -> String {
    let role = storage.role.quoted();
    format!(
        "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT \
           NOREPLICATION NOBYPASSRLS; \
         COMMENT ON ROLE {role} IS {mark}; \
         GRANT {role} TO CURRENT_USER; ",
        mark = Literal::new(&mark("ROLE", storage)),
    )
}

/// SCHEMA or SHARED isolation: what the tenant's role needs before the migrations run in its
/// schema `schema` (a schema of the catalog database, on the `search_path`, its version table
/// made): the role itself if it is `missing`, its membership of the connect role, its
/// `search_path`, and [`schema_grants`]. `schema_made_now`: the schema was made in this
/// transaction, so it holds only the version table and no grant is looked for by name.
pub(super) fn before_migrations(
    storage: &Storage,
    schema: &str,
    missing: bool,
    schema_made_now: bool,
    version_tables: &[&str],
) -> String {
    let role = storage.role.as_str();
    format!(
        "{}{}ALTER ROLE {} SET search_path TO {}; {}",
        if missing {
            make_role(storage)
        } else {
            String::new()
        },
        join_connect_role(role),
        storage.role.quoted(),
        Ident::new(schema),
        schema_grants(
            role,
            schema,
            match (schema_made_now, missing) {
                (true, true) => GrantStart::Fresh,
                (true, false) => GrantStart::NewSchema,
                (false, _) => GrantStart::ExistingSchema,
            },
            version_tables,
        ),
    )
}

/// SCHEMA or SHARED isolation, for the batch that provisions `schema` after the tenant's
/// migrations: for SHARED, the role's row in the table the row-level security policies look
/// roles up in (the role was made and granted before the migrations, [`before_migrations`]).
pub(super) fn after_migrations(storage: &Storage, schema: &str) -> String {
    if storage.isolation != Isolation::Shared {
        return String::new();
    }
    format!(
        "REVOKE INSERT, UPDATE, DELETE ON {schema}.{roles} FROM {role}; \
         INSERT INTO {schema}.{roles} (role_name, tenant_id) VALUES ({name}, {tenant}) \
           ON CONFLICT (role_name) DO NOTHING",
        schema = Ident::new(schema),
        role = storage.role.quoted(),
        roles = Ident::new(ROLES_TABLE),
        name = Literal::new(storage.role.as_str()),
        tenant = Literal::new(&storage.tenant.to_string()),
    )
}

/// DATABASE isolation, in the transaction that provisions the tenant's own database `database`
/// (where the transaction runs): only the role, and no longer PUBLIC, may connect to it.
pub(super) async fn grant_in_database(
    txn: &DatabaseTransaction,
    storage: &Storage,
    database: &str,
) -> Result<(), Error> {
    let found = find_role(txn, storage).await?;
    let role = storage.role.quoted();
    let database = Ident::new(database);
    // The schema the migrations created the tables in.
    let schema = found
        .schema
        .as_deref()
        .ok_or_else(|| Error::Internal("the tenant database has no current schema".into()))?;
    let mut batch = Batch::default();
    batch.push(&format!(
        "{}REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC; \
         GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role}; \
         REVOKE CREATE ON SCHEMA {} FROM PUBLIC; {}",
        create_role(storage, &found),
        Ident::new(schema),
        // Every table there is granted by name, version tables read-only.
        schema_grants(
            storage.role.as_str(),
            schema,
            GrantStart::ExistingSchema,
            &[]
        )
    ));
    send_grants(txn, &found, storage.role.as_str(), &mut batch, db_error).await
}

async fn role_exists(txn: &DatabaseTransaction, storage: &Storage) -> Result<bool, Error> {
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            [storage.role.as_str().into()],
        ))
        .await
        .map_err(db_error)?;
    Ok(row.is_some())
}

impl DataPlane {
    /// Whether tenants get database roles here: on PostgreSQL; SQLite has no roles.
    pub fn has_roles(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Takes the tenant's lock in `txn`, the caller's catalog transaction, as every run in the
    /// tenant's storage does: before the caller locks the tenant's row (see
    /// [`Self::set_password`]), in the order provisioning takes them.
    pub async fn lock_tenant(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
    ) -> Result<(), Error> {
        lock(txn, storage).await
    }

    /// Gives the tenant's role the password `verifier` is made from, in `txn`, the caller's
    /// catalog transaction, which holds the tenant's lock ([`Self::lock_tenant`]) and then its
    /// row (suspending, resuming, deleting or undeleting the tenant alters the role too: they
    /// wait for each other on the row rather than fail). Only the verifier is sent, never in a
    /// statement's text, and a failure is reported without the statement, so the password is
    /// nowhere but with the caller.
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant, role = %storage.role))]
    pub async fn set_password(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        verifier: &ScramVerifier,
    ) -> Result<(), Error> {
        if !role_exists(txn, storage).await? {
            return Err(Error::FailedPrecondition {
                subject: format!("tenants/{}", storage.tenant),
                message: format!(
                    "the tenant's database role {} does not exist yet: ProvisionTenant creates it \
                     (provisioning an already provisioned tenant changes nothing else)",
                    storage.role
                ),
            });
        }
        // The verifier travels as a bound value, so the statements' text (which sqlx may log
        // and traces record as db.statement) never holds it. ALTER ROLE takes no parameters:
        // a transaction-local setting carries it to a DO block that builds the statement.
        let failed = |e| without_statement(e, "setting the tenant role's password");
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config($1, $2, true)",
            [VERIFIER_SETTING.into(), verifier.as_str().into()],
        ))
        .await
        .map_err(failed)?;
        txn.execute_unprepared(&format!(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', {}, current_setting({})); END $$",
            Literal::new(storage.role.as_str()),
            Literal::new(VERIFIER_SETTING),
        ))
        .await
        .map_err(failed)?;
        Ok(())
    }

    /// Drops the tenant's role after its storage is gone: ends its sessions, drops what it
    /// owns and every privilege it holds, then the role. Dropping a role that is already gone
    /// succeeds.
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant, role = %storage.role))]
    pub async fn drop_role(&self, storage: &Storage) -> Result<(), Error> {
        if !self.has_roles() {
            return Ok(());
        }
        let txn = self.catalog_db.begin().await.map_err(db_error)?;
        lock(&txn, storage).await?;
        if !role_exists(&txn, storage).await?
            || !check_mark(&txn, "ROLE", storage.role.as_str(), storage).await?
        {
            return txn.commit().await.map_err(db_error);
        }
        let name = storage.role.as_str();
        if let (Isolation::Shared, Some(schema)) = (storage.isolation, &storage.schema) {
            shared::forget_role(&txn, schema, name).await?;
        }
        end_sessions(&self.catalog_db, &storage.role).await;
        let role = storage.role.quoted();
        // DROP OWNED revokes a CONNECT granted on the catalog database: one at a time, as
        // granting it is (see connect_to_catalog).
        exec(
            &txn,
            &format!(
                "SELECT pg_advisory_xact_lock(hashtextextended({CATALOG_CONNECT_LOCK}, 0)); \
                 REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role}"
            ),
        )
        .await?;
        txn.commit().await.map_err(db_error)?;
        tracing::info!("tenant role dropped");
        Ok(())
    }
}

/// A database error as an [`Error`] that carries neither the statement nor the server's
/// message, only what failed and the SQLSTATE: for statements that hold secrets.
fn without_statement(err: DbErr, what: &str) -> Error {
    let code = sqlstate(&err);
    match db_error(err) {
        Error::Unavailable(_) => Error::Unavailable(format!("{what}: the connection was lost")),
        _ => Error::Internal(format!(
            "{what} failed (SQLSTATE {})",
            code.as_deref().unwrap_or("unknown")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::RuntimeErr;

    #[test]
    fn a_failed_statement_holding_a_secret_is_reported_without_it() {
        let secret = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy";
        let failures = [
            DbErr::Exec(RuntimeErr::Internal(format!(
                "syntax error in ALTER ROLE \"r\" PASSWORD '{secret}'"
            ))),
            DbErr::Conn(RuntimeErr::Internal(format!(
                "lost while sending '{secret}'"
            ))),
            DbErr::Custom(secret.into()),
        ];
        for failure in failures {
            let error = without_statement(failure, "setting the tenant role's password");
            let logged = error.to_string();
            assert!(logged.contains("password"), "says what failed: {logged}");
            let status = tonic::Status::from(error);
            for text in [logged, status.message().to_owned()] {
                assert!(!text.contains("SCRAM"), "{text}");
            }
        }
    }
}
