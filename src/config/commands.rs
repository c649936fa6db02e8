//! The command line: `serve` (the default), `migrate` and `health`, each with its arguments.

use std::net::SocketAddr;

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
    /// `alembic -x tenant=...`: `migrate --tenant acme status|up|down|history`, or
    /// `migrate --all [--concurrency N]` to roll the latest version out to every tenant.
    Migrate(Box<MigrateArgs>),
    /// Make a bearer token: prints the token (give it to the caller) and its ROLE:NAME:SHA256
    /// entry (add it to TENANT_PLANE_AUTH_TOKENS or the tokens file). Nothing is stored.
    Token(crate::auth::TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The tenant (slug or id) to act on.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub tenant: Option<String>,
    /// Roll the latest version (or --to) out to every tenant, with a progress display.
    #[arg(long)]
    pub all: bool,
    /// Tenants migrated at once with --all (default: TENANT_PLANE_ROLLOUT_CONCURRENCY).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Target version with --all (default: the latest).
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
