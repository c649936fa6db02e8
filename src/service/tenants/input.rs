//! What the tenant use cases take: names and lookups, and inputs as callers sent them, with
//! the checks that turn them into domain values.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::{Error, FieldViolation, Isolation, Labels, Slug, TenantId, TenantState};

/// Longest display name accepted.
pub(super) const MAX_DISPLAY_NAME: usize = 200;

/// How a request names a tenant: "tenants/{id}" or "tenants/{slug}".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRef {
    Id(TenantId),
    Slug(Slug),
}

impl TenantRef {
    pub fn parse(name: &str, field: &str) -> Result<Self, Error> {
        let key = name.strip_prefix("tenants/").ok_or_else(|| {
            Error::invalid(field, "must be \"tenants/{id}\" or \"tenants/{slug}\"")
        })?;
        if let Some(id) = TenantId::parse(key) {
            return Ok(Self::Id(id));
        }
        Slug::parse(key).map(Self::Slug).map_err(|why| {
            Error::invalid(
                field,
                format!("is neither a tenant id nor a valid slug: the slug {why}"),
            )
        })
    }
}

impl std::fmt::Display for TenantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "tenants/{id}"),
            Self::Slug(slug) => write!(f, "tenants/{slug}"),
        }
    }
}

/// An isolation as sent by a caller, before it is checked.
#[derive(Debug, Clone, Copy)]
pub enum IsolationInput {
    Unspecified,
    Known(Isolation),
    Unknown(i32),
}

/// An AIP-155 request id with a hash of the request it came with.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub id: Uuid,
    pub request_hash: String,
}

#[derive(Debug, Clone)]
pub struct CreateTenantInput {
    pub slug: String,
    pub display_name: String,
    pub plan: String,
    pub isolation: IsolationInput,
    pub labels: BTreeMap<String, String>,
    pub request: Option<RequestKey>,
    pub validate_only: bool,
    /// A user id to make the tenant's first member, with role OWNER; empty for none.
    pub owner_user_id: String,
    /// Problems the transport already found (e.g. output-only fields set); reported together
    /// with the ones found here, so the caller sees every invalid field at once.
    pub violations: Vec<FieldViolation>,
}

#[derive(Debug, Clone, Default)]
pub struct ListTenantsInput {
    pub page_size: i32,
    pub page_token: String,
    pub states: Vec<TenantState>,
    pub plan: String,
    pub labels: BTreeMap<String, String>,
    pub show_deleted: bool,
    /// Only tenants at this (component, version); an empty version means none applied.
    pub component_version: Option<(String, String)>,
}

/// The changes of an UpdateTenant: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateTenantInput {
    pub display_name: Option<String>,
    pub plan: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub limit_overrides: Option<BTreeMap<String, i64>>,
}

/// What ResolveTenant looks a tenant up by.
#[derive(Debug, Clone)]
pub enum Lookup {
    Id(String),
    Slug(String),
    Host(String),
    /// A tenant API key's secret.
    ApiKey(String),
}

/// Where a tenant's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLocation {
    pub isolation: Isolation,
    pub schema_name: Option<String>,
    pub database_name: Option<String>,
    pub row_filter_tenant_id: Option<String>,
    /// The tenant's least-privilege PostgreSQL login role.
    pub role_name: Option<String>,
}

/// Display names of tenants and plans: bounded, and printable in logs and consoles.
pub(in crate::service) fn check_display_name(
    name: &str,
    field: &str,
    violations: &mut Vec<FieldViolation>,
) {
    if name.chars().count() > MAX_DISPLAY_NAME {
        violations.push(FieldViolation::new(
            field,
            format!("must be at most {MAX_DISPLAY_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        violations.push(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
}

pub(super) fn parse_labels(
    labels: &BTreeMap<String, String>,
    field: &str,
    violations: &mut Vec<FieldViolation>,
) -> Option<Labels> {
    Labels::parse(labels)
        .map_err(|errors| {
            for (key, why) in errors {
                let field = if key.is_empty() {
                    field.to_owned()
                } else {
                    format!("{field}[{key}]")
                };
                violations.push(FieldViolation::new(field, why));
            }
        })
        .ok()
}

/// The slug in a host name: its first label ("acme.example.com:443" -> acme).
pub(super) fn slug_of_host(host: &str) -> Result<Slug, Error> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let first = host
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    Slug::parse(&first).map_err(|why| {
        Error::invalid(
            "host",
            format!("its first label is not a tenant slug: the slug {why}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_accept_ids_and_slugs() {
        let id = TenantId::new();
        assert_eq!(
            TenantRef::parse(&format!("tenants/{id}"), "name").unwrap(),
            TenantRef::Id(id)
        );
        assert!(matches!(
            TenantRef::parse("tenants/acme", "name").unwrap(),
            TenantRef::Slug(_)
        ));
        for bad in [
            "acme",
            "tenants/",
            "tenants/Acme",
            "tenant/acme",
            "tenants/acme/x",
        ] {
            assert!(TenantRef::parse(bad, "name").is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_resolve_by_their_first_label() {
        assert_eq!(slug_of_host("acme.example.com").unwrap().as_str(), "acme");
        assert_eq!(
            slug_of_host("Acme.example.com:8443").unwrap().as_str(),
            "acme"
        );
        assert_eq!(slug_of_host("acme").unwrap().as_str(), "acme");
        assert!(slug_of_host("").is_err());
        assert!(slug_of_host("'; drop table tenants;--.example.com").is_err());
    }
}
