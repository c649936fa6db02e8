//! Servers with other migration sets, and a look inside the tenants' own storage (schemas,
//! databases, files), as the provisioning and migration tests check it.

use super::*;

use std::path::Path;

use sea_orm::ConnectOptions;

pub use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
pub use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
pub use proto::audit_service_client::AuditServiceClient;
pub use proto::membership_service_client::MembershipServiceClient;
pub use proto::migration_service_client::MigrationServiceClient;
pub use proto::provisioning_service_client::ProvisioningServiceClient;
pub use proto::quota_service_client::QuotaServiceClient;

/// For each named `async fn(Db)`, a test module running it once with `Db::Sqlite` and once with
/// `Db::Postgres`: for tests that start their own servers (another configuration or migration set).
#[macro_export]
macro_rules! on_both_dbs {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::support::Db;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Db::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Db::Postgres).await;
                }
            }
        )*
    };
}

impl TestServer {
    /// Like [`TestServer::start_with`], with `migrations` as the tenant migration set.
    pub async fn start_with_migrations(
        db: Db,
        migrations: TenantMigrations,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn,tenant_plane=info")
            .try_init();
        let database_url = match db {
            Db::Sqlite => None,
            Db::Postgres => Some(postgres::fresh_database_url().await),
        };
        Self::launch(db, database_url, migrations, adjust).await
    }

    /// A second server on this one's PostgreSQL catalog, as another replica would run.
    pub async fn replica(&self) -> Self {
        self.replica_with(|_| {}).await
    }

    /// Like [`TestServer::replica`], after `adjust` has changed its configuration.
    pub async fn replica_with(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        assert_eq!(self.db, Db::Postgres, "replicas share a PostgreSQL catalog");
        Self::launch(
            self.db,
            Some(self.catalog_url.clone()),
            TenantMigrations::builtin(),
            adjust,
        )
        .await
    }

    async fn launch(
        db: Db,
        database_url: Option<String>,
        migrations: TenantMigrations,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(data_dir.path().to_path_buf(), database_url.clone());
        config.auth.auth_tokens = token_entries();
        adjust(&mut config);
        let tls = config.auth.tls_cert.is_some();
        // The superuser's URL of the catalog database the server was configured with, as
        // `adjust` left it (a test may have it connect as another role).
        let catalog_url = match (&database_url, &config.database_url) {
            (Some(fresh), Some(configured)) => configured
                .split('?')
                .next()
                .and_then(|base| base.rsplit_once('/'))
                .map_or_else(
                    || fresh.clone(),
                    |(_, name)| postgres::with_database(fresh, name),
                ),
            _ => {
                database_url.unwrap_or_else(|| sqlite_url(data_dir.path().join("catalog.sqlite3")))
            }
        };
        let clock = config.clock.clone();
        let mut app = App::build_with(config, migrations)
            .await
            .expect("the control plane starts");
        let passes = app.job_passes();
        let listener = app.bind().await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let metrics_addr = app.metrics_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            app.run(listener, shutdown).await.expect("the server runs");
        });
        let endpoint = Channel::from_shared(format!("http://{addr}")).expect("uri");
        // A TLS server is reached by the test's own TLS channels; this one is never used.
        let channel = if tls {
            endpoint.connect_lazy()
        } else {
            endpoint.connect().await.expect("connect to the server")
        };
        Self {
            addr,
            metrics_addr,
            channel,
            catalog_url,
            db,
            clock,
            passes,
            stop: Some(stop),
            handle,
            _data_dir: data_dir,
        }
    }

    /// The server's data directory (SQLite catalog, and tenant files under `tenants/`).
    pub fn data_dir(&self) -> &Path {
        self._data_dir.path()
    }

    pub fn provisioning(&self) -> ProvisioningServiceClient<Conn> {
        ProvisioningServiceClient::new(self.conn())
    }

    pub fn migrations(&self) -> MigrationServiceClient<Conn> {
        MigrationServiceClient::new(self.conn())
    }

    pub fn quotas(&self) -> QuotaServiceClient<Conn> {
        QuotaServiceClient::new(self.conn())
    }

    pub fn members(&self) -> MembershipServiceClient<Conn> {
        MembershipServiceClient::new(self.conn())
    }

    pub fn audit(&self) -> AuditServiceClient<Conn> {
        AuditServiceClient::new(self.conn())
    }

    /// Envoy's ext_authz client, as the sidecar calls the server (with the service token).
    pub fn authz(&self) -> AuthorizationClient<Conn> {
        AuthorizationClient::new(self.conn_as(SERVICE_TOKEN))
    }

    /// Envoy's rate-limit client, as the sidecar calls the server (with the service token).
    pub fn ratelimit(&self) -> RateLimitServiceClient<Conn> {
        RateLimitServiceClient::new(self.conn_as(SERVICE_TOKEN))
    }

    /// The URL of another database on the catalog's PostgreSQL server.
    pub fn postgres_url_of(&self, database: &str) -> String {
        assert_eq!(
            self.db,
            Db::Postgres,
            "only a PostgreSQL catalog has a server"
        );
        let (base, query) = self
            .catalog_url
            .split_once('?')
            .map_or((self.catalog_url.as_str(), None), |(b, q)| (b, Some(q)));
        let (server, _catalog) = base.rsplit_once('/').expect("a database in the URL");
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{server}/{database}{query}")
    }

    /// The SQLite file of a DATABASE-isolated tenant of an SQLite catalog.
    pub fn tenant_file(&self, tenant: &proto::Tenant) -> PathBuf {
        assert!(!tenant.database_name.is_empty(), "{tenant:?} has no file");
        self.data_dir().join("tenants").join(&tenant.database_name)
    }

    /// Whether the tenant's schema, database or file exists, asked of the database itself.
    pub async fn storage_exists(&self, tenant: &proto::Tenant) -> bool {
        let (sql, name) = match (self.db, tenant.isolation()) {
            (Db::Sqlite, _) => return self.tenant_file(tenant).exists(),
            (Db::Postgres, proto::Isolation::Schema) => (
                "SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1",
                &tenant.schema_name,
            ),
            (Db::Postgres, proto::Isolation::Database) => (
                "SELECT count(*) AS n FROM pg_database WHERE datname = $1",
                &tenant.database_name,
            ),
            (_, other) => panic!("no storage to look for with {other:?} isolation"),
        };
        assert!(!name.is_empty(), "{tenant:?} names no storage");
        let db = self.catalog().await;
        let n: i64 = db
            .query_one_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                sql,
                [name.clone().into()],
            ))
            .await
            .expect("look for the storage")
            .expect("a count")
            .try_get("", "n")
            .expect("n");
        db.close().await.expect("close");
        n == 1
    }

    /// A connection on which unqualified table names resolve in the tenant's storage: its schema
    /// first on the search_path, its own database, or its file (never created if missing).
    pub async fn tenant_conn(&self, tenant: &proto::Tenant) -> DatabaseConnection {
        let mut options = match (self.db, tenant.isolation()) {
            (Db::Sqlite, _) => ConnectOptions::new(format!(
                "sqlite://{}?mode=rw",
                self.tenant_file(tenant).display()
            )),
            (Db::Postgres, proto::Isolation::Schema) => {
                let mut options = ConnectOptions::new(self.catalog_url.clone());
                options.set_schema_search_path(format!("\"{}\"", tenant.schema_name));
                options
            }
            (Db::Postgres, proto::Isolation::Database) => {
                ConnectOptions::new(self.postgres_url_of(&tenant.database_name))
            }
            (_, other) => panic!("no storage to connect to with {other:?} isolation"),
        };
        options.max_connections(1).sqlx_logging(false);
        Database::connect(options)
            .await
            .unwrap_or_else(|e| panic!("connect to the storage of {}: {e}", tenant.slug))
    }

    /// The tables in the tenant's storage, sorted; empty when the storage does not exist.
    pub async fn tenant_tables(&self, tenant: &proto::Tenant) -> Vec<String> {
        if !self.storage_exists(tenant).await {
            return Vec::new();
        }
        let sql = match self.db {
            Db::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Db::Postgres => {
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
                 WHERE table_schema = current_schema() ORDER BY name"
            }
        };
        let conn = self.tenant_conn(tenant).await;
        let names = column_of(&conn, sql).await;
        conn.close().await.expect("close");
        names
    }

    /// The versions in the tenant's own version table (`seaql_migrations`), in order applied.
    pub async fn tenant_versions(&self, tenant: &proto::Tenant) -> Vec<String> {
        let conn = self.tenant_conn(tenant).await;
        let versions = column_of(
            &conn,
            "SELECT version AS name FROM seaql_migrations ORDER BY version",
        )
        .await;
        conn.close().await.expect("close");
        versions
    }
}

/// The `name` column of every row `sql` returns.
pub async fn column_of(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.try_get::<String>("", "name").expect("name"))
        .collect()
}

/// A tenant with a slug and a plan.
pub fn new_tenant_on_plan(slug: &str, plan: &str) -> proto::Tenant {
    proto::Tenant {
        plan: plan.to_owned(),
        ..new_tenant(slug)
    }
}

/// The five migrations of the sample tenant schema, oldest first.
pub const SAMPLE_MIGRATIONS: [&str; 5] = [
    "m20261123_100001_create_users",
    "m20261123_100002_create_projects",
    "m20261123_100003_create_messages",
    "m20261123_100004_create_audit_log",
    "m20261207_100005_tenant_scoped_keys",
];

/// The tables the sample tenant schema creates, with the version table, sorted.
pub const SAMPLE_TABLES: [&str; 5] = [
    "audit_log",
    "messages",
    "projects",
    "seaql_migrations",
    "users",
];

/// The version of [`HalfMade`].
pub const HALF_MADE: &str = "m20991231_000001_fails";

/// A migration that creates a table `half_made` and then, while its switch is on, runs invalid
/// SQL: a failure that leaves a half-made change behind unless the run is rolled back.
pub struct HalfMade {
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl migration::sea_orm_migration::MigrationName for HalfMade {
    fn name(&self) -> &str {
        HALF_MADE
    }
}

#[migration::sea_orm_migration::async_trait::async_trait]
impl migration::sea_orm_migration::MigrationTrait for HalfMade {
    async fn up(
        &self,
        manager: &migration::sea_orm_migration::SchemaManager,
    ) -> Result<(), sea_orm::DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("CREATE TABLE half_made (id INTEGER PRIMARY KEY)")
            .await?;
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            db.execute_unprepared("INSERT INTO no_such_table VALUES (1)")
                .await?;
        }
        Ok(())
    }

    async fn down(
        &self,
        manager: &migration::sea_orm_migration::SchemaManager,
    ) -> Result<(), sea_orm::DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE half_made")
            .await
            .map(|_| ())
    }
}

/// The sample migrations followed by [`HalfMade`], which fails while `fail` is true.
pub fn sample_then_half_made(
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> TenantMigrations {
    TenantMigrations::new(std::sync::Arc::new(move || {
        let mut migrations = migration::tenant::migrations();
        migrations.push(Box::new(HalfMade { fail: fail.clone() }));
        migrations
    }))
}

/// Makes an application's own database user, as a service in front of SHARED tenants has one:
/// an ordinary login role (superusers bypass row-level security) that may connect to the
/// catalog database (the control plane revokes CONNECT there from PUBLIC) and use the rows of
/// the shared tables. Its name.
pub async fn shared_tables_app_role(server: &TestServer) -> String {
    let role = format!("app_{}", uuid::Uuid::now_v7().simple());
    let admin = server.catalog().await;
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!(
            "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO {role}', \
             current_database()); END $$"
        ),
        format!("GRANT USAGE ON SCHEMA tenant_shared TO {role}"),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenant_shared TO {role}"
        ),
    ] {
        admin.execute_unprepared(&sql).await.expect("grant");
    }
    role
}
