//! [`TenantDb`]: tenant-scoped database access on one shared pool.
//!
//! `TenantDb` owns its pool and offers no way to run a statement on it: no `Deref` to a
//! connection, no accessor, no `ConnectionTrait`. The only door is [`TenantDb::begin`], which
//! takes the tenant and returns a [`TenantTxn`] already inside the tenant's data:
//!
//! | isolation | what `begin` does |
//! |---|---|
//! | SCHEMA | a transaction on the shared pool with the tenant's schema as its `search_path` |
//! | SHARED | the same with the shared schema, and `tenant_plane.tenant_id` set to the tenant, which the row-level security policies read |
//! | DATABASE | a transaction on the tenant's own PostgreSQL database or SQLite file, through a bounded LRU of small pools |
//!
//! The database quotes the schema name itself (`quote_ident`), and every name and value is a
//! bound parameter, so this crate builds no SQL text out of names.
//!
//! Both settings are transaction-local (`set_config(..., true)`, i.e. `SET LOCAL`): when the
//! transaction ends the connection goes back to the pool with no tenant on it, so the next
//! borrower cannot inherit one. The same holds for the next client of a server session behind a
//! transaction-pooling PgBouncer (see [`TenantDbSettings::transaction_pooler`] for its prepared
//! statements).
//!
//! A query that forgets the tenant does not compile:
//!
//! ```compile_fail
//! use sea_orm::ConnectionTrait;
//!
//! async fn dangerous(db: &tenant_plane_client::TenantDb) {
//!     // TenantDb is not a connection: there is nothing to run this on.
//!     db.execute_unprepared("DELETE FROM users").await;
//! }
//! ```
//!
//! SHARED isolation relies on row-level security, which PostgreSQL superusers bypass: connect
//! with an ordinary role.

use std::{
    num::NonZeroUsize,
    path::PathBuf,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use lru::LruCache;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, ExecResult, QueryResult, Statement, TransactionTrait,
};

use crate::names::{Isolation, TenantId};
use crate::{Error, TenantContext};

/// The session setting the row-level security policies of SHARED tenants' tables read: the
/// control plane writes `current_setting('tenant_plane.tenant_id')` into every policy it makes,
/// and [`TenantDb::begin`] sets it to the tenant's id. It is part of the control plane's
/// contract, like the `x-tenant-id` header, rather than something to ask for per request:
/// the policies already installed in every tenant's tables name it, so it cannot change without
/// rewriting them, and a tenant's API answer (`DataLocation.row_filter_tenant_id`) carries only
/// the value to set. The control plane's tests of SHARED tenants through [`TenantDb`] see their
/// rows only through this setting, so they fail if the two ever differ.
pub const ROW_FILTER_SETTING: &str = "tenant_plane.tenant_id";

/// How tenant databases (DATABASE isolation) are reached.
#[derive(Debug, Clone)]
pub struct TenantDbSettings {
    /// Most tenant-database pools kept open at once, least recently used closed first: open
    /// connections are bounded by this times `connections_per_database`, never by the number of
    /// tenants. Default 8.
    pub tenant_databases: NonZeroUsize,
    /// Connections in each tenant-database pool. Default 2: a tenant's database serves one
    /// request while the next acquires.
    pub connections_per_database: u32,
    /// How long `begin` waits for a tenant-database connection. Default 5 s.
    pub acquire_timeout: Duration,
    /// The directory holding tenants' SQLite files (the control plane's `<data dir>/tenants`),
    /// when the shared pool is SQLite. Unset: SQLite tenants are refused.
    pub sqlite_dir: Option<PathBuf>,
    /// Whether the PostgreSQL URL goes through a transaction-pooling PgBouncer older than 1.21
    /// (or one without `max_prepared_statements`), where the client connections' named prepared
    /// statements meet on one server session and collide ("prepared statement \"sqlx_s_1\"
    /// already exists"). Set, statements are not cached, and every transaction begins with
    /// `DEALLOCATE ALL`, so each finds the session free of others' statements. Leave it off
    /// with a direct connection or PgBouncer's own prepared-statement support (which an SQL
    /// `DEALLOCATE ALL` would confuse). Default off.
    pub transaction_pooler: bool,
}

impl Default for TenantDbSettings {
    fn default() -> Self {
        Self {
            tenant_databases: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            connections_per_database: 2,
            acquire_timeout: Duration::from_secs(5),
            sqlite_dir: None,
            transaction_pooler: false,
        }
    }
}

/// Tenant-scoped access to the tenants' data. Share it (it is cheap to put in an `Arc`).
pub struct TenantDb {
    shared: DatabaseConnection,
    /// The shared pool's options, the template for tenant databases on the same server.
    options: ConnectOptions,
    settings: TenantDbSettings,
    /// Tenant-database pools by database name or file.
    databases: Mutex<LruCache<String, DatabaseConnection>>,
}

impl TenantDb {
    /// Opens the shared pool. It is never handed out: see the module documentation.
    pub async fn connect(
        mut options: ConnectOptions,
        settings: TenantDbSettings,
    ) -> Result<Self, Error> {
        if settings.transaction_pooler {
            options.map_sqlx_postgres_opts(|o| o.statement_cache_capacity(0));
        }
        let shared = Database::connect(options.clone()).await?;
        Ok(Self {
            shared,
            options,
            databases: Mutex::new(LruCache::new(settings.tenant_databases)),
            settings,
        })
    }

    /// A transaction inside `tenant`'s data. Refused unless the tenant is ACTIVE, so a context
    /// kept past a suspension fails loudly here too.
    #[tracing::instrument(skip_all, fields(tenant = %tenant.id))]
    pub async fn begin(&self, tenant: &TenantContext) -> Result<TenantTxn, Error> {
        if !tenant.is_active() {
            return Err(Error::NotServed {
                slug: tenant.slug.as_str().to_owned(),
                state: tenant.state,
            });
        }
        let backend = self.shared.get_database_backend();
        let txn = match (tenant.isolation, backend) {
            (Isolation::Schema, DbBackend::Postgres) => {
                let txn = self.open(&self.shared).await?;
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT set_config('search_path', quote_ident($1), true)",
                    [required(&tenant.schema, "schema")?.into()],
                ))
                .await?;
                txn
            }
            (Isolation::Shared, DbBackend::Postgres) => {
                let txn = self.open(&self.shared).await?;
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT set_config('search_path', quote_ident($1), true), \
                     set_config($2, $3, true)",
                    [
                        required(&tenant.schema, "schema")?.into(),
                        ROW_FILTER_SETTING.into(),
                        tenant.id.to_string().into(),
                    ],
                ))
                .await?;
                txn
            }
            (Isolation::Database, _) => {
                let database = required(&tenant.database, "database")?;
                self.open(&self.tenant_database(database).await?).await?
            }
            (isolation, _) => {
                return Err(Error::Unsupported(format!(
                    "{} isolation on a {backend:?} connection",
                    isolation.as_str()
                )));
            }
        };
        Ok(TenantTxn {
            txn,
            tenant: tenant.id,
        })
    }

    /// A transaction on `pool`; behind a transaction pooler, on a session cleared of prepared
    /// statements (see [`TenantDbSettings::transaction_pooler`]).
    async fn open(&self, pool: &DatabaseConnection) -> Result<DatabaseTransaction, Error> {
        let txn = pool.begin().await?;
        if self.settings.transaction_pooler && txn.get_database_backend() == DbBackend::Postgres {
            txn.execute_unprepared("DEALLOCATE ALL").await?;
        }
        Ok(txn)
    }

    /// Closes the shared pool and every tenant-database pool.
    pub async fn close(self) -> Result<(), Error> {
        let pools: Vec<DatabaseConnection> = {
            let mut databases = self.lock();
            std::iter::from_fn(|| databases.pop_lru().map(|(_, pool)| pool)).collect()
        };
        for pool in pools {
            pool.close().await?;
        }
        self.shared.close().await?;
        Ok(())
    }

    /// The pool of a tenant database, opened on first use.
    async fn tenant_database(&self, database: &str) -> Result<DatabaseConnection, Error> {
        if let Some(pool) = self.lock().get(database) {
            return Ok(pool.clone());
        }
        let mut options = match self.shared.get_database_backend() {
            DbBackend::Postgres => {
                let mut options = self.options.clone();
                let name = database.to_owned();
                options.map_sqlx_postgres_opts(move |o| o.database(&name));
                options
            }
            DbBackend::Sqlite => {
                let dir = self.settings.sqlite_dir.as_ref().ok_or_else(|| {
                    Error::Unsupported("no directory of tenant SQLite files is configured".into())
                })?;
                // mode=rw: a missing file is an error, never a fresh empty database.
                let path = dir.join(database);
                let mut options =
                    ConnectOptions::new(format!("sqlite://{}?mode=rw", path.display()));
                options.map_sqlx_sqlite_opts(|o| {
                    o.foreign_keys(true).busy_timeout(Duration::from_secs(10))
                });
                options
            }
            other => {
                return Err(Error::Unsupported(format!("tenant databases on {other:?}")));
            }
        };
        options
            .max_connections(self.settings.connections_per_database)
            .min_connections(0)
            .acquire_timeout(self.settings.acquire_timeout)
            .sqlx_logging(false);
        let pool = Database::connect(options).await?;
        let evicted = self.lock().push(database.to_owned(), pool.clone());
        if let Some((name, old)) = evicted
            && name != database
        {
            // Closed once its last transaction ends, without holding up this request.
            tokio::spawn(async move {
                let _ = old.close().await;
            });
        }
        Ok(pool)
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<String, DatabaseConnection>> {
        // Every use is one or two LruCache calls, which leave it consistent.
        self.databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A transaction inside one tenant's data. Use it wherever sea-orm takes a connection
/// (`Entity::find().all(&txn)`); it rolls back when dropped uncommitted.
pub struct TenantTxn {
    txn: DatabaseTransaction,
    tenant: TenantId,
}

impl TenantTxn {
    /// The tenant this transaction is scoped to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub async fn commit(self) -> Result<(), Error> {
        Ok(self.txn.commit().await?)
    }

    pub async fn rollback(self) -> Result<(), Error> {
        Ok(self.txn.rollback().await?)
    }
}

#[sea_orm::prelude::async_trait::async_trait]
impl ConnectionTrait for TenantTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}

impl std::fmt::Debug for TenantTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTxn")
            .field("tenant", &self.tenant)
            .finish()
    }
}

fn required<'a>(name: &'a Option<String>, what: &str) -> Result<&'a str, Error> {
    name.as_deref()
        .ok_or_else(|| Error::Malformed(format!("the tenant has no {what} name")))
}
