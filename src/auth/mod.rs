//! Who may call what.
//!
//! Every RPC but health and reflection needs credentials: a bearer token with a role (admin or
//! service), a tenant API key (its own tenant only), or a client certificate under mutual TLS.
//! [`AuthLayer`] authenticates each call and applies the method table in [`rules`]; the few
//! RPCs a tenant key may make check, before anything is looked up, that the tenant they name is
//! the key's own ([`require_tenant`]).

mod bootstrap;
mod layer;
pub mod rules;
mod settings;
pub mod tls;
mod tokens;

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

pub use bootstrap::{ADMIN_TOKEN_FILE, Bootstrapped, load_tokens, save_admin_token};
pub use layer::AuthLayer;
pub use settings::{AuthSettings, TokenArgs};
pub use tokens::{TOKEN_PREFIX, TokenSet, hash_token, new_token};

use crate::domain::{Error, Slug, TenantId};
use crate::service::TenantRef;

/// A caller's role. As a command-line value it is `admin` or `service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything.
    Admin,
    /// Resolution, quotas, reading tenants, plans, members and migration status, Envoy checks.
    Service,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "admin" => Some(Self::Admin),
            "service" => Some(Self::Service),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }
}

/// A named holder of a role: a bearer token's owner, or a client certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    pub name: String,
}

/// The authenticated caller of an RPC, in the request's extensions.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off (`--insecure`).
    Anonymous,
    /// A bearer token's owner.
    Token(Arc<Principal>),
    /// A client certificate, named by its subject.
    Certificate(Arc<Principal>),
    /// A tenant API key: it reaches only its own tenant.
    TenantKey {
        key: Uuid,
        tenant: TenantId,
        slug: Slug,
    },
}

/// Who makes an RPC, as the audit log names it. Cheap to make (an `Arc` clone at most); the
/// text ([`fmt::Display`]) is written only when an audit row is.
#[derive(Debug, Clone)]
pub enum Actor {
    /// `anonymous`: authentication is off, or the call brought no credentials.
    Anonymous,
    /// `unauthenticated`: the call brought credentials that were refused.
    Unauthenticated,
    /// `<role>:<name>`: a bearer token's owner.
    Token(Arc<Principal>),
    /// `cert:<subject>`: a client certificate.
    Certificate(Arc<Principal>),
    /// `api-key:<key id>`: a tenant API key.
    ApiKey(Uuid),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("anonymous"),
            Self::Unauthenticated => f.write_str("unauthenticated"),
            Self::Token(p) => write!(f, "{}:{}", p.role.as_str(), p.name),
            Self::Certificate(p) => write!(f, "cert:{}", p.name),
            Self::ApiKey(key) => write!(f, "api-key:{key}"),
        }
    }
}

impl Caller {
    /// The actor recorded in the audit log.
    pub fn actor(&self) -> Actor {
        match self {
            Self::Anonymous => Actor::Anonymous,
            Self::Token(p) => Actor::Token(Arc::clone(p)),
            Self::Certificate(p) => Actor::Certificate(Arc::clone(p)),
            Self::TenantKey { key, .. } => Actor::ApiKey(*key),
        }
    }

    /// The caller's role; a tenant key has none.
    pub fn role(&self) -> Option<Role> {
        match self {
            Self::Anonymous => Some(Role::Admin),
            Self::Token(p) | Self::Certificate(p) => Some(p.role),
            Self::TenantKey { .. } => None,
        }
    }

    /// Whether the caller may act on `target`: roles reach every tenant, a key its own.
    pub fn reaches(&self, target: &TenantRef) -> bool {
        match (self, target) {
            (Self::TenantKey { tenant, .. }, TenantRef::Id(id)) => tenant == id,
            (Self::TenantKey { slug, .. }, TenantRef::Slug(s)) => slug == s,
            _ => true,
        }
    }
}

/// Refuses with PERMISSION_DENIED, before any lookup, a tenant key naming another tenant.
/// Calls that did not pass through [`AuthLayer`] (none in the server) are not restricted.
pub fn require_tenant(extensions: &http::Extensions, target: &TenantRef) -> Result<(), Error> {
    match extensions.get::<Caller>() {
        Some(caller) if !caller.reaches(target) => Err(other_tenant()),
        _ => Ok(()),
    }
}

/// What a tenant key asking about another tenant is told, whether that tenant exists or not.
pub fn other_tenant() -> Error {
    Error::PermissionDenied("an API key reaches only its own tenant".into())
}

/// The credential of an `authorization` header value `Bearer <credential>`: the scheme
/// (any case) and one space, then the credential with surrounding whitespace trimmed; `None`
/// for another scheme or an empty credential. Whitespace before the scheme is not skipped.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_as_the_audit_log_names_them() {
        let principal = |role, name: &str| {
            Arc::new(Principal {
                role,
                name: name.to_owned(),
            })
        };
        let key = Uuid::nil();
        let cases = [
            (Caller::Anonymous.actor(), "anonymous"),
            (Actor::Unauthenticated, "unauthenticated"),
            (
                Caller::Token(principal(Role::Admin, "ops")).actor(),
                "admin:ops",
            ),
            (
                Caller::Token(principal(Role::Service, "envoy")).actor(),
                "service:envoy",
            ),
            (
                Caller::Certificate(principal(Role::Service, "CN=edge")).actor(),
                "cert:CN=edge",
            ),
            (
                Caller::TenantKey {
                    key,
                    tenant: TenantId::from(Uuid::nil()),
                    slug: Slug::parse("acme").expect("a valid slug"),
                }
                .actor(),
                "api-key:00000000-0000-0000-0000-000000000000",
            ),
        ];
        for (actor, text) in cases {
            assert_eq!(actor.to_string(), text);
        }
    }

    #[test]
    fn bearer_takes_the_credential_of_any_case_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bEaReR  abc "), Some("abc"));
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer(" Bearer abc"), None);
        assert_eq!(bearer("Basic abc"), None);
    }
}
