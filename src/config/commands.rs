//! The command line: `serve` (the default), `migrate`, `migrations`, `health` and `token`, each
//! with its arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::Config;

#[derive(Debug, Parser)]
#[command(
    name = "tenant-plane",
    version,
    about = "gRPC control plane for multi-tenant SaaS databases"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (the default when no command is given).
    Serve(Box<Config>),
    /// Ask a running server whether it is SERVING (grpc.health.v1); exit 0 if so, 1 if not.
    /// Used by the container health check.
    Health(HealthArgs),
    /// Inspect and run tenant migrations directly against the catalog, like
    /// `alembic -x tenant=...`: `migrate --tenant acme [--component billing]
    /// status|up|down|history`, or `migrate --all [--component billing] [--concurrency N]` to
    /// roll a component's latest version out to every tenant whose plan lists it.
    Migrate(Box<MigrateArgs>),
    /// A component's migrations on a running server, over gRPC with a token: `migrations push
    /// --component billing --dir ./db/tenant` registers a directory's new migrations (what an
    /// application's CI runs); `migrations list` shows the registry.
    Migrations(Box<MigrationsArgs>),
    /// Make a bearer token: prints the token (give it to the caller) and its ROLE:NAME:SHA256
    /// entry (add it to TENANT_PLANE_AUTH_TOKENS or the tokens file). Nothing is stored.
    Token(crate::auth::TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The tenant (slug or id) to act on.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub tenant: Option<String>,
    /// Roll the component's latest version (or --to) out to every tenant whose plan lists
    /// it, with a progress display.
    #[arg(long)]
    pub all: bool,
    /// The component to act on, by id: `sample` (the compiled one) or one registered with
    /// `migrations push`. One that is not registered is refused; so are `up` and `down` of
    /// one the tenant's plan does not list.
    #[arg(long, default_value = crate::domain::SAMPLE)]
    pub component: String,
    /// Tenants migrated at once with --all (default: TENANT_PLANE_ROLLOUT_CONCURRENCY).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Target version with --all, one of the component's migrations (default: its latest).
    #[arg(long, requires = "all")]
    pub to: Option<String>,
    #[command(subcommand)]
    pub action: Option<MigrateAction>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MigrateAction {
    /// The tenant's version and its pending migrations (the default).
    Status,
    /// Apply pending migrations, all of them or up to --to.
    Up {
        #[arg(long)]
        to: Option<String>,
    },
    /// Revert the last migration, or back to --to (which stays applied).
    Down {
        #[arg(long)]
        to: Option<String>,
    },
    /// Every applied migration with the time it was applied.
    History,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Address of the server to ask.
    #[arg(long, env = "TENANT_PLANE_LISTEN", default_value = "127.0.0.1:50051")]
    pub addr: SocketAddr,
    /// Service to ask about; empty means the whole server.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct MigrationsArgs {
    #[command(subcommand)]
    pub action: MigrationsAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MigrationsAction {
    /// Push a directory of migrations (NNNN_name.up.sql, and optional .down.sql,
    /// .up.sqlite.sql, .down.sqlite.sql) to a component, creating the component if needed.
    /// Exits 0 when pushed, 1 when the server refuses the migrations (a lint error, a changed
    /// history), 2 on any other error.
    Push(PushArgs),
    /// Show what MigrateTenant would run in one tenant, statement by statement, with lint
    /// notes; touches nothing. Exits 0, or 1 when a statement fails the lint as it stands now.
    Plan(PlanArgs),
    /// Rehearse a rollout of a component: its pending migrations run on a sample of real
    /// tenants in transactions that are rolled back. Exits 0 when every tenant rehearsed would
    /// succeed, 1 when one would fail.
    Rehearse(RehearseArgs),
    /// Check tenants' storage against what their migrations produce. Exits 0 when every tenant
    /// checked is clean, 1 when one drifted or could not be checked.
    Drift(DriftArgs),
    /// List the components, or one component's migrations.
    List {
        /// The component whose migrations to list; every component when left out.
        #[arg(long)]
        component: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The component's id, a DNS label such as `billing`.
    #[arg(long)]
    pub component: String,
    /// The directory of the component's migration files.
    #[arg(long)]
    pub dir: PathBuf,
    /// The component's description, when the push creates it.
    #[arg(long)]
    pub description: Option<String>,
    /// The component's owner (a team or service), when the push creates it.
    #[arg(long)]
    pub owner: Option<String>,
    /// Let statements that lose data (DROP TABLE, DROP COLUMN, TRUNCATE, a column type
    /// change) through the lint.
    #[arg(long)]
    pub allow_destructive: bool,
    /// Lint and check the history only; register nothing.
    #[arg(long)]
    pub validate_only: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The tenant, by slug or id.
    #[arg(long)]
    pub tenant: String,
    /// The component; `sample` when left out.
    #[arg(long)]
    pub component: Option<String>,
    /// The version to migrate to; the latest when left out.
    #[arg(long)]
    pub to: Option<String>,
    /// Plan a migration down instead of up.
    #[arg(long)]
    pub down: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RehearseArgs {
    /// The component; `sample` when left out.
    #[arg(long)]
    pub component: Option<String>,
    /// The version to migrate to; the latest when left out.
    #[arg(long)]
    pub to: Option<String>,
    /// How many tenants to rehearse (the server's default, 5, when left out; at most 50).
    #[arg(long)]
    pub sample: Option<i32>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    /// The tenant to check, by slug or id; every tenant with storage when left out.
    #[arg(long)]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Where the server is and how to call it.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's gRPC address: http://host:port, or https://host:port with --ca-cert.
    #[arg(
        long,
        env = "TENANT_PLANE_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// A bearer token of the admin or service role.
    #[arg(long, env = "TENANT_PLANE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The PEM of the CA that signed an https:// server's certificate.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Seconds to wait for the connection, and for each call.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}
