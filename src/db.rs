//! What the catalog ([`crate::store`]) and the tenants' storage ([`crate::dataplane`]) share
//! about talking to a database: which database it is, how its errors are classified, how busy a
//! pool is, and the marks the control plane puts on what it makes.
//!
//! Neither of the two may import the other (the data plane only runs a tenant's DDL, the store
//! only writes the catalog, and a use case in [`crate::service`] puts the two in one
//! transaction): what both need lives here, below both of them.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, RuntimeErr, Statement};

use crate::domain::{DbRoleName, Error};

/// Which database holds the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// How long a pooled connection may sit idle before it is pinged on its next use.
pub(crate) const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// The comments the control plane puts on the storage it makes, naming the tenant it belongs
/// to: provisioning adopts, and purge drops, only storage that carries its tenant's.
pub const STORAGE_MARK: &str = "tenant-plane tenant ";
/// The comment on the one schema every SHARED tenant's rows live in.
pub const SHARED_MARK: &str = "tenant-plane shared";

/// Connections of one pool at an instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Open connections, in use or idle.
    pub open: u32,
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl PoolUsage {
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

impl std::ops::Add for PoolUsage {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            open: self.open + other.open,
            idle: self.idle + other.idle,
            max: self.max + other.max,
        }
    }
}

/// What sqlx says of the pool under `db` (a closed or mock connection has none).
pub(crate) fn pool_usage(db: &DatabaseConnection) -> PoolUsage {
    fn of<DB: sea_orm::sqlx::Database>(pool: &sea_orm::sqlx::Pool<DB>) -> PoolUsage {
        PoolUsage {
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }
    }
    // The pool getters panic on the other backend: ask for the one this connection is.
    match db.get_database_backend() {
        DbBackend::Postgres => of(db.get_postgres_connection_pool()),
        DbBackend::Sqlite => of(db.get_sqlite_connection_pool()),
        _ => PoolUsage::default(),
    }
}

/// Classifies a database error that has no domain meaning at its call site.
pub(crate) fn db_error(err: DbErr) -> Error {
    let unavailable = match &err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
        ),
        _ => false,
    };
    if unavailable {
        Error::Unavailable(err.to_string())
    } else {
        Error::Internal(err.to_string())
    }
}

/// The SQLSTATE of a database error, if the database gave one: an error the database reported
/// (its statement failed and changed nothing), not one of the connection or of decoding.
pub(crate) fn sqlstate(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether `err`, from SQLite, is "database is locked" (SQLITE_BUSY or one of its extended
/// codes). SQLite answers so at once, without waiting out the busy timeout, where waiting could
/// deadlock: two connections switching a new file to WAL together, or a transaction that read
/// and then wants to write after another connection wrote. Only meaningful for SQLite errors: a
/// PostgreSQL SQLSTATE is not an SQLite result code.
pub(crate) fn is_sqlite_busy(err: &DbErr) -> bool {
    let (DbErr::Conn(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

/// SQLite's primary result code for "database is locked".
const SQLITE_BUSY: i32 = 5;

/// Whether `err` is a unique-constraint violation.
pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Ends the open sessions of a tenant's role, in whichever database they are
/// (`pg_stat_activity` is cluster-wide): after it lost LOGIN, or before it is dropped. Best
/// effort: a failure is logged, and what the caller did stands. (The control plane may: it is
/// a member of every role it made.)
pub(crate) async fn end_sessions(conn: &DatabaseConnection, role: &DbRoleName) {
    let ended = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS ended \
             FROM pg_stat_activity WHERE usename = $1",
            [role.as_str().into()],
        ))
        .await
        .and_then(|row| row.map(|r| r.try_get::<i64>("", "ended")).transpose());
    match ended {
        Ok(Some(0) | None) => {}
        Ok(Some(n)) => {
            tracing::info!(%role, sessions = n, "tenant role's sessions ended")
        }
        Err(error) => tracing::error!(
            %role,
            error = %db_error(error),
            "the tenant role's sessions could not be ended: they stay open"
        ),
    }
}
