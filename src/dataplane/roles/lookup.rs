//! Looking a tenant's role up before provisioning grants it anything: whether it exists, and
//! that it can do no more than a tenant role.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult, Statement};

use super::super::Storage;
use super::super::sql::lock;
use crate::db::db_error;
use crate::domain::Error;

/// What provisioning finds before granting, read in one round trip.
pub(in crate::dataplane) struct Found {
    /// Whether the role must be made.
    pub(in crate::dataplane) missing: bool,
    /// The first schema on the `search_path`.
    pub(super) schema: Option<String>,
}

/// Starts a provisioning in the catalog database: takes the tenant's lock, then reads whether
/// its schema `schema` exists and looks its role up. A role of the tenant's name that can do
/// more than a tenant role is refused, as by [`find_role`].
///
/// Two statements, so two round trips: the lookup must read what committed while the lock was
/// waited for (a provisioning that waited for another one of the same tenant must find the
/// schema and role that one made), and a statement reads the catalogs as they were when it
/// began. The lookup, a statement of its own, begins after the lock is held; `to_regrole`
/// reads the session's catalog cache, which takes in other sessions' changes when a
/// transaction first locks a relation, as the lookup does `pg_namespace`.
pub(in crate::dataplane) async fn provision_enter(
    txn: &DatabaseTransaction,
    storage: &Storage,
    schema: &str,
) -> Result<(bool, Found), Error> {
    lock(txn, storage).await?;
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema_present, \
               to_regrole(quote_ident($2)) IS NOT NULL AS role_present",
            [schema.into(), storage.role.as_str().into()],
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::Internal("starting a provisioning returned nothing".into()))?;
    let found = found_in(txn, storage, &row, "role_present", None).await?;
    Ok((row.try_get("", "schema_present").map_err(db_error)?, found))
}

/// The role lookup in `row` (the role's presence in column `present`), after refusing an
/// existing role that can do more than a tenant role.
async fn found_in(
    txn: &DatabaseTransaction,
    storage: &Storage,
    row: &QueryResult,
    present: &str,
    schema: Option<String>,
) -> Result<Found, Error> {
    let present: bool = row.try_get("", present).map_err(db_error)?;
    if present {
        refuse_privileged(txn, storage).await?;
    }
    Ok(Found {
        missing: !present,
        schema,
    })
}

/// Looks the tenant's role up. A role of that name that can do more than a tenant role (a
/// superuser, say) is refused rather than granted the tenant's data.
///
/// Its attributes are read (from the `pg_roles` view, whose plan costs more than the rest of
/// the lookup, and is made afresh after every schema made anywhere) only if the role exists:
/// a tenant provisioned for the first time has none yet.
pub(super) async fn find_role(
    txn: &DatabaseTransaction,
    storage: &Storage,
) -> Result<Found, Error> {
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT r.present, current_schema()::text AS schema \
             FROM (SELECT to_regrole(quote_ident($1)) IS NOT NULL AS present) AS r",
            [storage.role.as_str().into()],
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::Internal("looking the tenant role up returned nothing".into()))?;
    let schema = row.try_get("", "schema").map_err(db_error)?;
    found_in(txn, storage, &row, "present", schema).await
}

/// Refuses an existing role of the tenant's name that can do more than a tenant role.
async fn refuse_privileged(txn: &DatabaseTransaction, storage: &Storage) -> Result<(), Error> {
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls \
               AS privileged \
             FROM pg_roles WHERE rolname = $1",
            [storage.role.as_str().into()],
        ))
        .await
        .map_err(db_error)?;
    let privileged = match row {
        Some(row) => row.try_get("", "privileged").map_err(db_error)?,
        None => false,
    };
    if privileged {
        return Err(Error::FailedPrecondition {
            subject: storage.role.to_string(),
            message: format!(
                "role {} exists with more privileges than a tenant role; not granting it \
                 tenant data",
                storage.role
            ),
        });
    }
    Ok(())
}
