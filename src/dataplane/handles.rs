//! Connections to tenant databases (DATABASE isolation: a PostgreSQL database or an SQLite
//! file per tenant). A bounded LRU of single-connection pools: the number of open connections
//! depends on the configured capacity, never on the number of tenants.

use std::{num::NonZeroUsize, sync::Mutex, time::Duration};

use lru::LruCache;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::db::{IDLE_BEFORE_PING, PoolUsage, db_error, pool_usage};
use crate::domain::Error;

/// How long an idle tenant connection is kept before the pool closes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an SQLite tenant file waits for another writer.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TenantHandles {
    cache: Mutex<LruCache<String, DatabaseConnection>>,
    acquire_timeout: Duration,
}

/// How to reach one tenant database.
pub enum Address<'a> {
    /// A PostgreSQL database on the catalog's server: the catalog URL with another database.
    Postgres {
        catalog_url: &'a str,
        database: &'a str,
    },
    /// An SQLite file.
    Sqlite { path: &'a std::path::Path },
}

impl Address<'_> {
    fn key(&self) -> String {
        match self {
            Self::Postgres { database, .. } => format!("pg:{database}"),
            Self::Sqlite { path } => format!("sqlite:{}", path.display()),
        }
    }
}

impl TenantHandles {
    pub fn new(capacity: NonZeroUsize, acquire_timeout: Duration) -> Self {
        Self {
            cache: Mutex::new(LruCache::new(capacity)),
            acquire_timeout,
        }
    }

    /// A connection to the tenant database, opened on first use.
    pub async fn get(&self, address: Address<'_>) -> Result<DatabaseConnection, Error> {
        let key = address.key();
        if let Some(conn) = self.lock().get(&key) {
            return Ok(conn.clone());
        }
        let conn = self.open(&address).await?;
        let evicted = self.lock().push(key.clone(), conn.clone());
        if let Some((old_key, old)) = evicted
            && old_key != key
        {
            close_later(old);
        }
        Ok(conn)
    }

    /// Closes and forgets the connection to a tenant database (before it is dropped or removed).
    pub async fn forget(&self, address: Address<'_>) {
        let removed = self.lock().pop(&address.key());
        if let Some(conn) = removed {
            let _ = conn.close().await;
        }
    }

    /// Connections open to tenant databases now; `max` is the most kept at once.
    pub fn usage(&self) -> PoolUsage {
        let cache = self.lock();
        let open = cache
            .iter()
            .map(|(_, conn)| pool_usage(conn))
            .fold(PoolUsage::default(), |sum, one| sum + one);
        PoolUsage {
            max: u32::try_from(cache.cap().get()).unwrap_or(u32::MAX),
            ..open
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, DatabaseConnection>> {
        // A panic while holding this lock cannot leave the cache inconsistent: every operation
        // on it is a single LruCache call.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn open(&self, address: &Address<'_>) -> Result<DatabaseConnection, Error> {
        let mut options = match address {
            Address::Postgres {
                catalog_url,
                database,
            } => {
                let database = (*database).to_owned();
                let mut options = ConnectOptions::new(*catalog_url);
                options.map_sqlx_postgres_opts(move |o| o.database(&database));
                options
            }
            Address::Sqlite { path } => {
                let mut options =
                    ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
                options.map_sqlx_sqlite_opts(|o| {
                    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                    o.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(SQLITE_BUSY_TIMEOUT)
                        .foreign_keys(true)
                });
                options
            }
        };
        options
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(IDLE_TIMEOUT)
            .acquire_timeout(self.acquire_timeout)
            .sqlx_logging(false)
            .test_before_acquire_if_idle_for(IDLE_BEFORE_PING);
        Database::connect(options).await.map_err(db_error)
    }
}

/// Closes an evicted pool once its last user is done, without blocking the caller.
fn close_later(conn: DatabaseConnection) {
    tokio::spawn(async move {
        let _ = conn.close().await;
    });
}
