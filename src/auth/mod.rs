//! Who the caller is: bearer tokens, client certificates under mutual TLS, the admin token
//! made at first start, and the settings for them.
//!
//! Every RPC but health and reflection needs credentials: a bearer token with a role (admin or
//! service), a tenant API key (its own tenant only), or a client certificate under mutual TLS.
//! The authentication layer (`grpc::auth_layer`) authenticates each call into a [`Caller`] and
//! applies the method's access rule from the policy table (`grpc::policy`); the few RPCs a
//! tenant key may make check, before anything is looked up, that the tenant they name is the
//! key's own ([`require_tenant`]). This module knows nothing of gRPC's layers: `grpc` uses it,
//! never the other way round.

mod bootstrap;
mod settings;
pub mod tls;
mod tokens;

use std::sync::Arc;

use uuid::Uuid;

pub use bootstrap::{ADMIN_TOKEN_FILE, Bootstrapped, load_tokens, save_admin_token};
pub use settings::{AuthSettings, TokenArgs};
pub use tokens::{TOKEN_PREFIX, TokenSet, hash_token, new_token};

/// A caller's role, and who holds one: defined with the call's context in `domain`, where the
/// audit log's actor is.
pub use crate::domain::{Actor, CallerRole as Role, Principal};
use crate::domain::{Error, Slug, TenantId};
use crate::service::TenantRef;

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
/// Calls that did not pass through the authentication layer (none in the server) are not
/// restricted.
pub fn require_tenant(extensions: &http::Extensions, target: &TenantRef) -> Result<(), Error> {
    match extensions.get::<Caller>() {
        Some(caller) if !caller.reaches(target) => Err(Error::other_tenant()),
        _ => Ok(()),
    }
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
