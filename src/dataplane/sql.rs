//! The SQL every strategy shares: per-storage advisory locks, identifier quoting, and small
//! helpers. Identifiers here come from parsed storage names, and are quoted all the same.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement};

use super::Storage;
pub(super) use crate::db::sqlstate;
use crate::db::{SHARED_MARK, STORAGE_MARK, db_error};
use crate::domain::{Error, Isolation};
pub(super) use crate::sql::{Ident, Literal};

/// Serialises runs on one tenant's storage, across connections and replicas, until the
/// transaction ends. Shared tenants share one schema, hence one lock.
pub(super) async fn lock(txn: &DatabaseTransaction, storage: &Storage) -> Result<(), Error> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        [lock_key(storage).into()],
    ))
    .await
    .map(|_| ())
    .map_err(db_error)
}

/// [`lock`] as a statement of its own, the key inlined, for a batch of statements.
pub(super) fn lock_sql(storage: &Storage) -> String {
    format!(
        "SELECT pg_advisory_xact_lock(hashtextextended({}, 0))",
        Literal::new(&lock_key(storage))
    )
}

pub(super) fn lock_key(storage: &Storage) -> String {
    match (storage.isolation, &storage.schema) {
        (Isolation::Shared, Some(schema)) => format!("tenant-plane:schema:{schema}"),
        _ => format!("tenant-plane:tenant:{}", storage.tenant),
    }
}

/// The comment the control plane puts on the `kind` (SCHEMA, DATABASE or ROLE) it makes for
/// the tenant of `storage`; the one schema of every SHARED tenant carries the shared mark.
pub(super) fn mark(kind: &str, storage: &Storage) -> String {
    match (storage.isolation, kind) {
        (Isolation::Shared, "SCHEMA") => SHARED_MARK.to_owned(),
        _ => format!("{STORAGE_MARK}{}", storage.tenant),
    }
}

/// `COMMENT ON <kind> <name>` with the mark of `storage`'s tenant.
pub(super) fn mark_sql(kind: &str, name: &str, storage: &Storage) -> String {
    format!(
        "COMMENT ON {kind} {} IS {}",
        Ident::new(name),
        Literal::new(&mark(kind, storage))
    )
}

/// Reads the comment on an object of each kind, and whether the control plane's role owns it
/// (a role has no owner: the comment alone, which only a CREATEROLE role may set, counts).
fn describe(kind: &str) -> &'static str {
    match kind {
        "SCHEMA" => {
            "SELECT obj_description(oid, 'pg_namespace') AS mark, \
               nspowner = current_user::regrole AS ours FROM pg_namespace WHERE nspname = $1"
        }
        "DATABASE" => {
            "SELECT shobj_description(oid, 'pg_database') AS mark, \
               datdba = current_user::regrole AS ours FROM pg_database WHERE datname = $1"
        }
        _ => {
            "SELECT shobj_description(oid, 'pg_authid') AS mark, true AS ours \
             FROM pg_roles WHERE rolname = $1"
        }
    }
}

/// Whether the `kind` (SCHEMA, DATABASE or ROLE) `name` exists, refusing one that does but
/// does not carry the mark of `storage`'s tenant, or is owned by another role: it was not made
/// by the control plane for this tenant, so it is neither adopted nor dropped. A ROLE made before roles were marked
/// (no comment at all) is taken as the tenant's.
pub(super) async fn check_mark<C: ConnectionTrait>(
    conn: &C,
    kind: &str,
    name: &str,
    storage: &Storage,
) -> Result<bool, Error> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            describe(kind),
            [name.into()],
        ))
        .await
        .map_err(db_error)?;
    let Some(row) = row else {
        return Ok(false);
    };
    let found: Option<String> = row.try_get("", "mark").map_err(db_error)?;
    // A comment is set by whoever owns the object: only one the control plane owns counts.
    let ours: bool = row.try_get("", "ours").map_err(db_error)?;
    let expected = mark(kind, storage);
    match found {
        Some(found) if found == expected && ours => Ok(true),
        None if kind == "ROLE" => Ok(true),
        _ => Err(Error::FailedPrecondition {
            subject: format!("tenants/{}", storage.tenant),
            message: format!(
                "{} {name} exists but was not made by tenant-plane for this tenant (it lacks \
                 the comment '{expected}'): it is neither adopted nor dropped",
                kind.to_lowercase(),
            ),
        }),
    }
}

pub(super) async fn exec<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<(), Error> {
    conn.execute_unprepared(sql)
        .await
        .map(|_| ())
        .map_err(db_error)
}

pub(super) fn required<'a>(value: &'a Option<String>, what: &str) -> Result<&'a str, Error> {
    value
        .as_deref()
        .ok_or_else(|| Error::Internal(format!("tenant storage has no {what} name")))
}

pub(super) fn not_provisioned(storage: &Storage) -> Error {
    Error::FailedPrecondition {
        subject: format!("tenants/{}", storage.tenant),
        message: "the tenant's storage is not provisioned".into(),
    }
}

/// A failed read of a version table: a missing table means the storage was never provisioned,
/// or is gone.
pub(super) fn missing_table(e: DbErr, storage: &Storage) -> Error {
    // A version table missing, or no schema to make one in (SQLSTATE 3F000, when the tenant's
    // schema is not there): the tenant's storage is not provisioned.
    if matches!(
        sqlstate(&e).as_deref(),
        Some(UNDEFINED_TABLE | INVALID_SCHEMA_NAME)
    ) {
        not_provisioned(storage)
    } else {
        db_error(e)
    }
}

pub(super) fn io_error(e: std::io::Error) -> Error {
    Error::Internal(format!("tenant file storage: {e}"))
}

pub(super) fn remove_sqlite_files(path: &std::path::Path) -> Result<(), Error> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(())
}

/// SQLSTATE 42501: the statement needs a privilege its role lacks.
pub(super) const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE 42P01: no such table.
pub(super) const UNDEFINED_TABLE: &str = "42P01";

/// SQLSTATE 3F000: no such schema (or none on the `search_path` to create in).
const INVALID_SCHEMA_NAME: &str = "3F000";

/// Which of the version tables of `sets` exist, in the schema on the `search_path` (or the
/// tenant's database), read in one statement that makes nothing; `None` when `schema` is given
/// and does not exist.
pub(super) async fn existing_tables(
    txn: &DatabaseTransaction,
    schema: Option<&str>,
    sets: &[super::TenantMigrations],
) -> Result<Option<Vec<bool>>, Error> {
    let backend = txn.get_database_backend();
    let exists = |i: usize, table: &str| match backend {
        DbBackend::Sqlite => format!(
            "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = {}) AS t{i}",
            Literal::new(table)
        ),
        _ => format!(
            "CAST(CASE WHEN to_regclass({}) IS NULL THEN 0 ELSE 1 END AS bigint) AS t{i}",
            Literal::new(&Ident::new(table).to_string())
        ),
    };
    let mut columns: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, set)| exists(i, set.table()))
        .collect();
    if let Some(schema) = schema {
        columns.push(format!(
            "CAST(CASE WHEN to_regnamespace({}) IS NULL THEN 0 ELSE 1 END AS bigint) AS s",
            Literal::new(&Ident::new(schema).to_string())
        ));
    }
    if columns.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let row = txn
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT {}", columns.join(", ")),
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::Internal("a SELECT without FROM returned no row".into()))?;
    if schema.is_some() && row.try_get::<i64>("", "s").map_err(db_error)? == 0 {
        return Ok(None);
    }
    (0..sets.len())
        .map(|i| {
            row.try_get::<i64>("", &format!("t{i}"))
                .map(|n| n > 0)
                .map_err(db_error)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
