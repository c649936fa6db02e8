//! The authentication settings of `tenant-plane serve`: tokens, TLS and mutual TLS.

use std::path::PathBuf;

use clap::Args;

use super::Role;

#[derive(Debug, Clone, Args)]
pub struct AuthSettings {
    /// Turn authentication off: every caller may do everything, as an anonymous actor. For
    /// local experiments only; a warning is logged at every start.
    #[arg(long, env = "TENANT_PLANE_INSECURE")]
    pub insecure: bool,

    /// Lets --insecure serve on an address other than loopback: say so only when every host
    /// that can reach the address may do everything. Without it, --insecure with a
    /// non-loopback listen address refuses to start.
    #[arg(long, env = "TENANT_PLANE_INSECURE_TRUSTED_NETWORK")]
    pub insecure_trusted_network: bool,

    /// Bearer tokens, as ROLE:NAME:SHA256 entries separated by commas, where ROLE is admin or
    /// service and SHA256 is the hex SHA-256 of the token (`tenant-plane token` makes one).
    /// With none here nor in the tokens file, the first start creates an admin token, prints it
    /// once and keeps only its hash in the catalog.
    #[arg(
        long,
        env = "TENANT_PLANE_AUTH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_tokens: Vec<String>,

    /// A file of bearer tokens: one ROLE:NAME:SHA256 entry per line; blank lines and lines
    /// starting with # are skipped.
    #[arg(long, env = "TENANT_PLANE_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// PEM certificate chain of the server. With --tls-key, the server speaks only TLS.
    #[arg(long, env = "TENANT_PLANE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the server certificate.
    #[arg(long, env = "TENANT_PLANE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM certificates of the authorities that sign client certificates (mutual TLS). A client
    /// that presents a certificate they signed is identified by its subject; clients without
    /// one may still use a bearer token.
    #[arg(long, env = "TENANT_PLANE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Role of a client identified by its certificate.
    #[arg(
        long,
        env = "TENANT_PLANE_TLS_CLIENT_ROLE",
        value_enum,
        default_value = "service"
    )]
    pub tls_client_role: Role,

    /// Client certificate subjects (as shown in the audit log, e.g. "CN=ops,O=Example")
    /// that are admins, separated by semicolons.
    #[arg(long, env = "TENANT_PLANE_TLS_ADMIN_SUBJECTS", value_delimiter = ';')]
    pub tls_admin_subjects: Vec<String>,
}

/// `tenant-plane token`: make a bearer token and the entry that configures it.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The token's role.
    #[arg(long, value_enum, default_value = "service")]
    pub role: Role,
    /// The token's name, as the audit log shows its actor (`<role>:<name>`).
    #[arg(long)]
    pub name: String,
}

/// `admin` or `service` on the command line. Written out rather than derived: the role is a
/// domain type, and the domain does not depend on the command line's crate.
impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::Admin, Role::Service]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            Role::Admin => "Everything",
            Role::Service => {
                "Resolution, quotas, reading tenants, plans, members and migration status, Envoy \
                 checks"
            }
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}
