//! The catalog: the control plane's own tables (tenants, plans, idempotency records), kept in
//! one PostgreSQL schema, pinned on every catalog connection ([`pinned`]; `public` by
//! default), or in the embedded SQLite file.
//!
//! This is the only module that imports sea-orm. It hands out domain types, and it classifies
//! database errors once: a lost or exhausted connection is [`Error::Unavailable`], anything
//! unexpected is [`Error::Internal`]; unique violations are turned into domain answers where the
//! query that can raise them is made.

mod api_keys;
pub mod audit;
mod auth_tokens;
pub mod cache;
pub mod component_mirror;
pub mod components;
mod drift;
pub mod entity;
pub mod fleet;
mod hot;
mod members;
mod notices;
pub mod pinned;
mod plans;
pub mod pooler;
pub mod provisioning;
mod quota;
mod quota_batch;
mod requests;
mod role_login;
mod rollout_pg;
mod rollout_work;
mod rollouts;
mod storage_names;
mod tenants;
mod unit;

use std::{num::NonZeroUsize, sync::Arc, time::Duration};

use migration::catalog::Migrator;
use migration::sea_orm_migration::MigratorTrait;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
    TransactionTrait,
};

pub use audit::{AuditEvent, AuditQuery};
pub use auth_tokens::StoredToken;
pub use cache::{CatalogCache, Change, PlanRules};
pub use components::RegisteredMigration;
pub use drift::{DriftFinding, DriftRecord};
pub use members::{Added, Changed};
pub use notices::{NoticeTally, UNRECOGNISED_LOG_EVERY};
pub use plans::PlanDefaults;
pub use quota::{Usage, UsageKey};
pub use quota_batch::BatchWrite;
pub use requests::RequestRecord;
pub use role_login::{lock_tenant_row, settle_login};
pub use rollout_work::{Claim, Event, Outcome};
pub use rollouts::{Candidate, NewTarget};
pub use tenants::{ListQuery, NewTenant};
pub use unit::UnitOfWork;

use crate::clock::Clock;
pub use crate::db::{Backend, PoolUsage};
pub(crate) use crate::db::{IDLE_BEFORE_PING, db_error, is_unique_violation, pool_usage, sqlstate};
use crate::domain::{CatalogSchema, Error};

/// Key of the PostgreSQL advisory lock taken while the catalog is migrated, so replicas that
/// start together apply each migration once (an arbitrary constant: "tpcatalg" in ASCII).
const CATALOG_MIGRATION_LOCK: i64 = 0x7470_6361_7461_6c67;

/// Changes a slow watcher may fall behind by before it is told to start afresh.
const FEED_CAPACITY: usize = 4096;

/// How long an SQLite writer waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a start waits before trying again a step SQLite refused as locked.
const SQLITE_BUSY_RETRY: Duration = Duration::from_millis(20);

/// Runs `attempt` again while SQLite refuses it at once as locked ([`crate::db::is_sqlite_busy`]),
/// for at most [`SQLITE_BUSY_TIMEOUT`]: what the busy timeout does for a single statement.
async fn while_sqlite_busy<T, F>(mut attempt: impl FnMut() -> F) -> Result<T, sea_orm::DbErr>
where
    F: std::future::Future<Output = Result<T, sea_orm::DbErr>>,
{
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    loop {
        match attempt().await {
            Err(e) if crate::db::is_sqlite_busy(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(SQLITE_BUSY_RETRY).await;
            }
            done => return done,
        }
    }
}

/// Handle to the catalog: one bounded connection pool shared by every use case, and on
/// PostgreSQL a small one of the rollout workers' own.
#[derive(Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    /// PostgreSQL: the rollout workers' pool. Their DDL makes every session that next begins a
    /// transaction work through its cache invalidations and rebuild what it had cached, and
    /// sqlx hands idle connections out in turn, so on the shared pool a rollout would touch
    /// every session of it; here it touches a few, and never waits for the hot path's.
    rollouts: Option<DatabaseConnection>,
    /// Rollout transactions at once (TENANT_PLANE_ROLLOUT_CONNECTIONS).
    rollout_lanes: u32,
    backend: Backend,
    url: Arc<str>,
    cache: Arc<CatalogCache>,
    /// Every change this process makes or hears of, for watchers (WatchTenantChanges).
    feed: tokio::sync::broadcast::Sender<Change>,
    /// How many rollouts this process has ended (or cancelled), for its watchers to see the end
    /// at once rather than at their next poll.
    endings: Arc<tokio::sync::watch::Sender<u64>>,
    /// PostgreSQL: the quoted schema of the catalog's tables and a dot (`"public".`), for
    /// statements that run while a tenant's schema is on the `search_path`.
    qualifier: Option<Arc<str>>,
    /// PostgreSQL: the schema of the catalog's tables, the only one on every catalog
    /// connection's `search_path`.
    schema: CatalogSchema,
    /// What time it is: every time this module writes or compares (row times, leases, the
    /// cache's ages) is read from here, so a test can move it.
    clock: Clock,
}

/// Pool settings for [`Catalog::connect`].
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// Connections of the rollout workers' pool (PostgreSQL), and the most rollout
    /// transactions at once (both backends).
    pub rollout_connections: u32,
    pub acquire_timeout: Duration,
    /// Tenants (and as many slugs and API keys) kept in memory for the hot path.
    pub cache_capacity: NonZeroUsize,
    /// PostgreSQL: the schema of the catalog's tables (TENANT_PLANE_CATALOG_SCHEMA), pinned on
    /// every catalog connection.
    pub catalog_schema: CatalogSchema,
}

impl Catalog {
    /// Connects to `url` (postgres:// or sqlite://) with one bounded pool; times are read from
    /// `clock`.
    pub async fn connect(url: &str, pool: &PoolSettings, clock: Clock) -> Result<Self, Error> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(Error::invalid(
                "database_url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        };
        let schema = &pool.catalog_schema;
        let options = pool_options(
            url,
            pool.max_connections,
            pool.acquire_timeout,
            schema,
            None,
        );
        let db = match backend {
            Backend::Postgres => Database::connect(options).await,
            // Replicas opening one new catalog file together: one of them finds it locked.
            Backend::Sqlite => while_sqlite_busy(|| Database::connect(options.clone())).await,
        }
        .map_err(pinned::connect_error)?;
        // SQLite has one writer at a time: a second pool would only wait on the first.
        let rollouts = match backend {
            Backend::Postgres => {
                let mut options = pool_options(
                    url,
                    pool.rollout_connections.max(1),
                    pool.acquire_timeout,
                    schema,
                    // Told apart in pg_stat_activity: "<application name> rollouts".
                    Some(" rollouts"),
                );
                // No connection until a rollout needs one: the shared pool has just shown
                // the database is there.
                options.connect_lazy(true);
                Some(Database::connect(options).await.map_err(db_error)?)
            }
            Backend::Sqlite => None,
        };
        let qualifier = match backend {
            Backend::Postgres => Some(format!("{}.", schema.quoted()).into()),
            Backend::Sqlite => None,
        };
        Ok(Self {
            db,
            rollouts,
            rollout_lanes: pool.rollout_connections.max(1),
            backend,
            url: url.into(),
            cache: Arc::new(CatalogCache::new(pool.cache_capacity, clock.clone())),
            feed: tokio::sync::broadcast::channel(FEED_CAPACITY).0,
            endings: Arc::new(tokio::sync::watch::Sender::new(0)),
            qualifier,
            schema: schema.clone(),
            clock,
        })
    }

    /// The clock this catalog, and everything built on it, reads the time from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Now, by [`Catalog::clock`], at the catalog's precision (microseconds), so a value
    /// returned by a write equals the value a later read returns.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the catalog migrations, idempotently, in one transaction. On PostgreSQL an
    /// advisory lock serialises replicas starting at once (on SQLite the write lock does), and
    /// a start whose catalog schema is not where this database's catalog is refuses.
    pub async fn migrate(&self) -> Result<(), Error> {
        if self.backend == Backend::Sqlite {
            // A start that read the migrations table before another start wrote it cannot wait
            // for the write lock (SQLite refuses at once): it begins again, and finds the work
            // done.
            let once = || async {
                let txn = self.db.begin().await?;
                Migrator::up(&txn, None).await?;
                txn.commit().await
            };
            return while_sqlite_busy(once).await.map_err(db_error);
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        if self.backend == Backend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [CATALOG_MIGRATION_LOCK.into()],
            ))
            .await
            .map_err(db_error)?;
            pinned::settle(&txn, &self.schema).await?;
        }
        Migrator::up(&txn, None).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }

    /// A cheap round trip, used by readiness checks.
    pub async fn ping(&self) -> Result<(), Error> {
        self.db.ping().await.map_err(db_error)
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(self) -> Result<(), Error> {
        if let Some(rollouts) = self.rollouts {
            rollouts.close().await.map_err(db_error)?;
        }
        self.db.close().await.map_err(db_error)
    }

    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The rollout workers' pool (the shared one on SQLite): for their claims and the
    /// transactions that migrate their targets, one connection at a time each.
    pub(crate) fn rollout_conn(&self) -> &DatabaseConnection {
        self.rollouts.as_ref().unwrap_or(&self.db)
    }

    /// How many rollout transactions this process may run at once: its rollout pool's size
    /// (on SQLite, where they share the one pool, as many).
    pub(crate) fn rollout_lanes(&self) -> u32 {
        self.rollout_lanes
    }

    /// The catalog pool's connections now, for the metrics endpoint.
    pub fn pool_usage(&self) -> PoolUsage {
        pool_usage(&self.db)
    }

    /// The rollout pool's connections now (none on SQLite), for the metrics endpoint.
    pub fn rollout_pool_usage(&self) -> PoolUsage {
        self.rollouts.as_ref().map(pool_usage).unwrap_or_default()
    }
}

/// A bounded pool of at most `max` connections to `url`, opened as they are needed. On
/// PostgreSQL each connection starts with `search_path` set to the catalog's `schema` alone
/// (after any `options` in the URL, so it wins), and `name_suffix` is added to its
/// application name.
fn pool_options(
    url: &str,
    max: u32,
    acquire_timeout: Duration,
    schema: &CatalogSchema,
    name_suffix: Option<&'static str>,
) -> ConnectOptions {
    let mut options = ConnectOptions::new(url);
    let search_path = schema.as_str().to_owned();
    options
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .connect_timeout(acquire_timeout)
        .sqlx_logging(false)
        // A ping before every use would double the round trips of the hot path; only a
        // connection idle long enough to have been dropped by a proxy is checked first.
        .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
        .map_sqlx_postgres_opts(move |opts| {
            let opts = opts.options([("search_path", &search_path)]);
            match name_suffix {
                Some(suffix) => {
                    let name = format!(
                        "{}{suffix}",
                        opts.get_application_name().unwrap_or("tenant-plane")
                    );
                    opts.application_name(&name)
                }
                None => opts,
            }
        })
        .map_sqlx_sqlite_opts(|opts| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
        });
    options
}
