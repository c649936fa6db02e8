//! Every setting of the control plane. Each is a command-line flag and an environment variable,
//! with its default documented in `tenant-plane serve --help` and in the README.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, ValueEnum};

mod commands;

pub use commands::{
    Cli, Command, DriftArgs, HealthArgs, MigrateAction, MigrateArgs, MigrationsAction,
    MigrationsArgs, PlanArgs, PushArgs, RehearseArgs, ServerArgs,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationSetting {
    /// A PostgreSQL schema per tenant (PostgreSQL only).
    Schema,
    /// A database per tenant: a PostgreSQL database, or an SQLite file in embedded mode.
    Database,
    /// Shared tables with a tenant_id column (row-level security on PostgreSQL).
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TenantIdSource {
    /// The first label of the Host header: acme.example.com -> acme.
    Subdomain,
    /// The x-tenant-id header.
    Header,
    /// The path: /tenants/{slug}/...
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// An address to listen on, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        text.parse()
            .map(Self::On)
            .map_err(|e| format!("'{text}' is neither an address (host:port) nor off: {e}"))
    }
}

/// Settings of `tenant-plane serve`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Catalog database URL. Unset: an embedded SQLite catalog under --data-dir.
    /// PostgreSQL: postgres://user:password@host:5432/db
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// PostgreSQL schema of the catalog's own tables, pinned on every catalog connection (never
    /// taken from the role's search_path, which a tenant's schema could shadow). A start refuses
    /// when the database's catalog is in another schema.
    #[arg(long, env = "TENANT_PLANE_CATALOG_SCHEMA", default_value = "public")]
    pub catalog_schema: String,

    /// Address the gRPC server listens on.
    #[arg(long, env = "TENANT_PLANE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Directory of the embedded SQLite catalog and of the per-tenant SQLite files.
    #[arg(long, env = "TENANT_PLANE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Maximum connections in the one shared catalog pool (every tenant shares it).
    #[arg(long, env = "TENANT_PLANE_POOL_SIZE", default_value_t = 10)]
    pub pool_size: u32,

    /// Connections of the rollout workers' own pool (PostgreSQL catalogs), beside the shared one:
    /// their claims, and the transactions that migrate SCHEMA tenants, run there, so a rollout of
    /// them never takes the hot path's connections, and
    /// its DDL's cache invalidations are worked through by these few sessions instead of by
    /// every pooled one. A replica runs at most this many rollout transactions at once (on
    /// SQLite too, in the shared pool).
    #[arg(long, env = "TENANT_PLANE_ROLLOUT_CONNECTIONS", default_value_t = 2)]
    pub rollout_connections: u32,

    /// Most connections kept open to tenant databases (database-per-tenant isolation), shared by
    /// all tenants in LRU order: connections never grow with the number of tenants.
    #[arg(long, env = "TENANT_PLANE_TENANT_CONNECTIONS", default_value_t = 8)]
    pub tenant_connections: u32,

    /// Tenants kept in memory for ResolveTenant, quota decisions and Envoy checks (least
    /// recently used first out; as many slugs and API keys again).
    #[arg(long, env = "TENANT_PLANE_CACHE_CAPACITY", default_value_t = 50_000)]
    pub cache_capacity: u32,

    /// How often every tenant's storage is measured for the storage_bytes gauge, in seconds;
    /// 0 turns the measuring off (MeasureStorage still measures on demand).
    #[arg(
        long,
        env = "TENANT_PLANE_STORAGE_MEASURE_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub storage_measure_interval_secs: u64,

    /// How often every tenant's storage is checked for drift from its applied migrations, in
    /// seconds (daily by default; the first check one interval after the start); 0 turns the
    /// job off (MigrationService.CheckDrift still checks on demand). Each replica runs its own.
    #[arg(
        long,
        env = "TENANT_PLANE_DRIFT_CHECK_INTERVAL_SECS",
        default_value_t = 86_400
    )]
    pub drift_check_interval_secs: u64,

    /// Concurrency of a rollout that does not choose one (tenants migrated at once, per replica).
    #[arg(long, env = "TENANT_PLANE_ROLLOUT_CONCURRENCY", default_value_t = 8)]
    pub rollout_concurrency: u32,

    /// Highest concurrency a rollout may ask for (tenants in progress at once, per replica; a
    /// replica's rollout transactions, each of up to eight tenants, are bounded by
    /// TENANT_PLANE_ROLLOUT_CONNECTIONS too).
    #[arg(
        long,
        env = "TENANT_PLANE_ROLLOUT_MAX_CONCURRENCY",
        default_value_t = 16
    )]
    pub rollout_max_concurrency: u32,

    /// Seconds a replica keeps a claimed rollout target without renewing it; after that another
    /// replica may take it over (the first one is presumed dead).
    #[arg(long, env = "TENANT_PLANE_ROLLOUT_LEASE_SECS", default_value_t = 30)]
    pub rollout_lease_secs: u64,

    /// Milliseconds between looks for rollout work and events.
    #[arg(long, env = "TENANT_PLANE_ROLLOUT_POLL_MS", default_value_t = 250)]
    pub rollout_poll_ms: u64,

    /// Milliseconds a ConsumeQuota that goes to the catalog waits for its batch's answer before
    /// it is answered UNAVAILABLE (its lane is stuck or gone; the consumption may or may not
    /// have been counted, and is never admitted without being counted).
    #[arg(long, env = "TENANT_PLANE_QUOTA_DEADLINE_MS", default_value_t = 10_000)]
    pub quota_deadline_ms: u64,

    /// Seconds to wait for a free pool connection before answering UNAVAILABLE.
    #[arg(
        long,
        env = "TENANT_PLANE_POOL_ACQUIRE_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub pool_acquire_timeout_secs: u64,

    /// Log format.
    #[arg(
        long,
        env = "TENANT_PLANE_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: LogFormat,

    /// Log level or filter (tracing EnvFilter syntax, e.g. "info,tenant_plane=debug").
    #[arg(long, env = "TENANT_PLANE_LOG", default_value = "info")]
    pub log_level: String,

    /// Address of the Prometheus endpoint (plain HTTP, `GET /metrics`), or `off`. It has no
    /// authentication: keep it on loopback or a private interface. Port 0 picks a free port.
    #[arg(
        long,
        env = "TENANT_PLANE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: Listen,

    /// Seconds in-flight RPCs get to finish after SIGTERM/SIGINT before the server stops.
    #[arg(long, env = "TENANT_PLANE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Days a deleted tenant's data is kept before it may be purged (its purge_time).
    #[arg(long, env = "TENANT_PURGE_RETENTION_DAYS", default_value_t = 30)]
    pub purge_retention_days: u32,

    /// Seconds between passes of the purge job, which drops the storage of deleted tenants
    /// whose purge time has passed. 0 turns the job off (purge with DeprovisionTenant only).
    #[arg(long, env = "TENANT_PURGE_INTERVAL_SECS", default_value_t = 3600)]
    pub purge_interval_secs: u64,

    /// Days an audit event is kept; the audit pruning job deletes older ones. 0 keeps them
    /// forever.
    #[arg(long, env = "TENANT_PLANE_AUDIT_RETENTION_DAYS", default_value_t = 400)]
    pub audit_retention_days: u32,

    /// Seconds between passes of the audit pruning job (the first runs at start). 0 turns the
    /// job off.
    #[arg(
        long,
        env = "TENANT_PLANE_AUDIT_PRUNE_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub audit_prune_interval_secs: u64,

    /// Isolation of new tenants. Unset: schema on PostgreSQL, database (one SQLite file per
    /// tenant) in embedded mode. A plan's default isolation takes precedence.
    #[arg(long, env = "TENANT_ISOLATION_STRATEGY", value_enum)]
    pub tenant_isolation_strategy: Option<IsolationSetting>,

    /// Where HTTP callers (the Envoy ext_authz adapter) carry the tenant first; the other
    /// sources are tried after it.
    #[arg(
        long,
        env = "TENANT_ID_SOURCE",
        value_enum,
        default_value = "subdomain"
    )]
    pub tenant_id_source: TenantIdSource,

    /// Where HTTP callers (the Envoy ext_authz adapter) may name their tenant *without
    /// credentials*, for public pages: any of subdomain, header, path, comma-separated. Empty
    /// (the default): a request that names a tenant must carry that tenant's API key, or it is
    /// refused with 401, so no anonymous client reaches or is billed to a tenant.
    #[arg(
        long,
        env = "TENANT_ANONYMOUS_SOURCES",
        value_enum,
        value_delimiter = ','
    )]
    pub tenant_anonymous_sources: Vec<TenantIdSource>,

    /// Count requests without credentials (as TENANT_ANONYMOUS_SOURCES lets through) against
    /// the quotas of the tenant they name, in the Envoy rate-limit adapter. Off by default, so
    /// an anonymous client cannot spend a tenant's api_calls_per_minute.
    #[arg(long, env = "TENANT_ANONYMOUS_QUOTA", default_value_t = false, action = clap::ArgAction::Set)]
    pub tenant_anonymous_quota: bool,

    /// Prefix of every tenant schema and database name.
    #[arg(long, env = "TENANT_DATABASE_PREFIX", default_value = "tenant_")]
    pub tenant_database_prefix: String,

    /// Provision a tenant's storage as part of CreateTenant. When false, tenants stay
    /// PROVISIONING until ProvisionTenant is called.
    #[arg(long, env = "TENANT_AUTO_PROVISION", default_value_t = true, action = clap::ArgAction::Set)]
    pub tenant_auto_provision: bool,

    /// Plan of tenants created without one.
    #[arg(long, env = "TENANT_DEFAULT_PLAN", default_value = "free")]
    pub tenant_default_plan: String,

    /// Users limit of the default plan, written when that plan is first created.
    #[arg(long, env = "TENANT_MAX_USERS", default_value_t = 100)]
    pub tenant_max_users: i64,

    /// Storage limit (GiB) of the default plan, written when that plan is first created.
    #[arg(long, env = "TENANT_MAX_STORAGE_GB", default_value_t = 10)]
    pub tenant_max_storage_gb: i64,

    /// Messages-per-day limit of the default plan, written when that plan is first created.
    #[arg(long, env = "TENANT_MAX_MESSAGES_PER_DAY", default_value_t = 1000)]
    pub tenant_max_messages_per_day: i64,

    /// Authentication: tokens, TLS and mutual TLS.
    #[command(flatten)]
    pub auth: crate::auth::AuthSettings,

    /// The clock the server takes the time from: the system clock, unless a test or an
    /// embedding program sets another (no flag sets it).
    #[arg(skip)]
    pub clock: crate::clock::Clock,
}

/// Parses `args` as the flags of `serve` alone (environment variables apply).
fn parse_config(args: &[&str]) -> Config {
    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        config: Config,
    }
    Only::parse_from(args).config
}

impl Config {
    /// The settings as if given no flags: defaults, overridden by environment variables.
    pub fn from_env() -> Self {
        parse_config(&["tenant-plane"])
    }

    pub fn pool_acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.pool_acquire_timeout_secs)
    }

    pub fn quota_deadline(&self) -> Duration {
        Duration::from_millis(self.quota_deadline_ms.max(1))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// A configuration for tests and embedding: embedded SQLite under `data_dir`, port 0.
    pub fn for_tests(data_dir: PathBuf, database_url: Option<String>) -> Self {
        let mut config = parse_config(&[
            "tenant-plane",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        config.data_dir = data_dir;
        config.database_url = database_url;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_override_defaults() {
        let cli = Cli::parse_from([
            "tenant-plane",
            "serve",
            "--tenant-database-prefix",
            "t_",
            "--tenant-auto-provision",
            "false",
        ]);
        let Some(Command::Serve(config)) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(config.tenant_database_prefix, "t_");
        assert!(!config.tenant_auto_provision);
        assert_eq!(config.listen.port(), 50051);
    }

    #[test]
    fn the_metrics_endpoint_takes_an_address_or_off() {
        let on = |args: &[&str]| parse_config(args).metrics_listen;
        assert_eq!(
            on(&["tenant-plane"]),
            Listen::On("127.0.0.1:9464".parse().expect("address"))
        );
        assert_eq!(
            on(&["tenant-plane", "--metrics-listen", "OFF"]),
            Listen::Off
        );
        assert_eq!(
            on(&["tenant-plane", "--metrics-listen", "0.0.0.0:9100"]),
            Listen::On("0.0.0.0:9100".parse().expect("address"))
        );
        assert!("9464".parse::<Listen>().is_err());
    }
}
