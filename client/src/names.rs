//! The names and states of a tenant as this client reads them from the control plane's API.
//!
//! These are the API's own terms, not the control plane's internals: an id is a UUID, a slug
//! follows the rules `CreateTenant` enforces, and a state or isolation is one of the API's enum
//! values. The slug rules are repeated here so that [`TenantLayer`](crate::TenantLayer) can tell
//! whether a subdomain or a path names a tenant at all without a call (`www.example.com` names
//! none); the control plane stays the authority, and its tests check that both sides agree.

use std::fmt;

use uuid::Uuid;

/// The longest slug, and the longest schema or database name the control plane derives:
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_NAME_BYTES: usize = 63;

/// Slugs `CreateTenant` refuses because they would be confusing or dangerous as a subdomain or
/// storage name; none of them can name a tenant.
const RESERVED_SLUGS: &[&str] = &[
    "shared",
    "public",
    "www",
    "api",
    "admin",
    "default",
    "template0",
    "template1",
    "postgres",
];

/// A tenant id: the UUID in the tenant's name `tenants/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Uuid);

impl TenantId {
    pub fn parse(text: &str) -> Option<Self> {
        Uuid::try_parse(text).ok().map(Self)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for TenantId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant slug: a DNS label (RFC 1123) that starts with a letter, is not a UUID and is not
/// reserved, as `CreateTenant` requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    /// The slug, or why `text` cannot be one.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.len() > MAX_NAME_BYTES {
            return Err(format!("must be at most {MAX_NAME_BYTES} characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("may contain only lowercase letters a-z, digits and hyphens".into());
        }
        if !text.as_bytes()[0].is_ascii_lowercase() {
            return Err("must start with a lowercase letter".into());
        }
        if text.ends_with('-') {
            return Err("must not end with a hyphen".into());
        }
        if text.contains("--") {
            return Err("must not contain two hyphens in a row".into());
        }
        if TenantId::parse(text).is_some() {
            return Err("must not be a UUID".into());
        }
        if RESERVED_SLUGS.contains(&text) || text.starts_with("pg-") {
            return Err(format!("'{text}' is reserved"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a tenant's data lives (the API's `Isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// A PostgreSQL schema of its own.
    Schema,
    /// A PostgreSQL database or SQLite file of its own.
    Database,
    /// Rows in the schema SHARED tenants share, filtered by row-level security.
    Shared,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schema => "schema",
            Self::Database => "database",
            Self::Shared => "shared",
        }
    }
}

/// A tenant's lifecycle state (the API's `Tenant.State`). Only an ACTIVE tenant is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantState {
    Provisioning,
    Active,
    Suspended,
    Deleted,
    Failed,
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Deleted => "DELETED",
            Self::Failed => "FAILED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slug_is_a_lowercase_dns_label_that_is_not_reserved() {
        assert!(Slug::parse("acme-2").is_ok());
        for bad in [
            "",
            "Acme",
            "2acme",
            "acme-",
            "a--b",
            "www",
            "pg-x",
            "a b",
            "a190f1f4-8a5e-7c3b-9d2e-1f2a3b4c5d6e",
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Slug::parse(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn a_tenant_id_is_a_uuid() {
        let id = Uuid::now_v7();
        assert_eq!(TenantId::parse(&id.to_string()), Some(TenantId::from(id)));
        assert_eq!(TenantId::parse("acme"), None);
    }
}
