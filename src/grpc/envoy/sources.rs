//! What a `CheckRequest` says about its tenant: the API key it carries and the places that
//! name a tenant without proving it, read from the request attributes as Envoy sends them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;

use super::path::{BadPath, tenant_of_path};
use super::{API_KEY_HEADER, TENANT_ID_HEADER};
use crate::auth::bearer;
use crate::config::TenantIdSource;
use crate::domain::{SECRET_PREFIX, Tenant, TenantId};
use crate::service::Lookup;

/// Hosts with fewer labels than this name no tenant: `example.com` is the product itself,
/// `acme.example.com` is tenant acme.
const MIN_TENANT_HOST_LABELS: usize = 3;

/// The request headers, wherever Envoy put them: the `headers` map by default, `header_map`
/// (bytes in `raw_value`) when the filter has `encode_raw_headers: true`.
struct Headers<'a> {
    map: Option<&'a HashMap<String, String>>,
    raw: &'a [HeaderValue],
}

impl<'a> Headers<'a> {
    fn of(http: Option<&'a HttpRequest>) -> Self {
        Self {
            map: http.map(|h| &h.headers),
            raw: http
                .and_then(|h| h.header_map.as_ref())
                .map_or(&[], |m| m.headers.as_slice()),
        }
    }

    /// The value of `name` (lowercase). Repeated raw headers are joined with ",", as Envoy
    /// joins them in the map, so a doubled identifying header never parses as one tenant.
    fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        if let Some(map) = self.map
            && let Some(value) = map.get(name).or_else(|| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
        {
            return Some(Cow::Borrowed(value.as_str()));
        }
        let values: Vec<Cow<'a, str>> = self
            .raw
            .iter()
            .filter(|h| h.key.eq_ignore_ascii_case(name))
            .map(|h| {
                if h.raw_value.is_empty() {
                    Cow::Borrowed(h.value.as_str())
                } else {
                    String::from_utf8_lossy(&h.raw_value)
                }
            })
            .collect();
        match values.len() {
            0 => None,
            1 => values.into_iter().next(),
            _ => Some(Cow::Owned(values.join(","))),
        }
    }
}

/// Where a request names its tenant, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The `x-tenant-id` header: a tenant id or slug.
    Header,
    /// A path `/tenants/{id-or-slug}/...`, normalised (see [`super::path`]).
    Path,
    /// The first label of a host with at least three labels.
    Host,
}

impl From<TenantIdSource> for Source {
    fn from(source: TenantIdSource) -> Self {
        match source {
            TenantIdSource::Header => Self::Header,
            TenantIdSource::Path => Self::Path,
            TenantIdSource::Subdomain => Self::Host,
        }
    }
}

/// How an allowed request's tenant was established, as the `x-tenant-authenticated` header
/// and the rate-limit descriptor's `authenticated` entry say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authenticated {
    /// An API key in `x-api-key`.
    ApiKey,
    /// An API key as a bearer token (`Authorization: Bearer tpk_...`).
    Token,
    /// No credentials: the tenant is only named, from a source TENANT_ANONYMOUS_SOURCES allows.
    #[default]
    None,
}

impl Authenticated {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api-key",
            Self::Token => "token",
            Self::None => "none",
        }
    }
}

/// A tenant a request names without proving it is allowed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claim {
    pub source: Source,
    pub value: String,
}

impl Claim {
    pub fn lookup(&self) -> Lookup {
        match (self.source, TenantId::parse(&self.value)) {
            (Source::Host, _) | (_, None) => Lookup::Slug(self.value.clone()),
            (_, Some(_)) => Lookup::Id(self.value.clone()),
        }
    }

    /// Whether the claim plainly names `tenant`, by its id or slug, without a lookup.
    pub fn names(&self, tenant: &Tenant) -> bool {
        TenantId::parse(&self.value).is_some_and(|id| id == tenant.id)
            || self.value == tenant.slug.as_str()
    }
}

/// What a request offers to identify its tenant. Not `Debug`: it holds a secret.
#[derive(Default)]
pub(super) struct Identity {
    /// An API key's secret: it authenticates, and so decides the tenant.
    pub api_key: Option<String>,
    /// Where the API key came from; `None` without one.
    pub authenticated: Authenticated,
    /// Headers that carried one of our secrets; they are not passed upstream.
    pub secret_headers: Vec<&'static str>,
    /// Tenants the request names, in order of precedence.
    pub claims: Vec<Claim>,
    /// Why the path cannot be read one way only, if it cannot: such a request is refused,
    /// since the application might read a tenant in it that this check did not.
    pub bad_path: Option<BadPath>,
}

impl Identity {
    /// Reads what `request` offers; claims from the `first` source lead, the others follow in
    /// the default order (header, path, host).
    pub fn read(request: &CheckRequest, first: TenantIdSource) -> Self {
        let http = request
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let headers = Headers::of(http);
        let mut identity = Self::default();

        let api_key = headers
            .get(API_KEY_HEADER)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        if api_key.is_some() {
            identity.secret_headers.push(API_KEY_HEADER);
        }
        let bearer = headers
            .get("authorization")
            .and_then(|v| bearer_key(&v).map(str::to_owned));
        if bearer.is_some() {
            identity.secret_headers.push("authorization");
        }
        identity.authenticated = match (&api_key, &bearer) {
            (Some(_), _) => Authenticated::ApiKey,
            (None, Some(_)) => Authenticated::Token,
            (None, None) => Authenticated::None,
        };
        identity.api_key = api_key.or(bearer);

        if let Some(value) = headers.get(TENANT_ID_HEADER).map(|v| v.trim().to_owned())
            && !value.is_empty()
        {
            identity.claims.push(Claim {
                source: Source::Header,
                value,
            });
        }
        let path = http
            .map(|h| h.path.as_str())
            .filter(|p| !p.is_empty())
            .map(Cow::Borrowed)
            .or_else(|| headers.get(":path"));
        match path.as_deref().map(tenant_of_path) {
            Some(Ok(Some(value))) => identity.claims.push(Claim {
                source: Source::Path,
                value,
            }),
            Some(Err(why)) => identity.bad_path = Some(why),
            Some(Ok(None)) | None => {}
        }
        let host = http
            .map(|h| h.host.as_str())
            .filter(|h| !h.is_empty())
            .map(Cow::Borrowed)
            .or_else(|| headers.get(":authority"))
            .or_else(|| headers.get("host"));
        if let Some(value) = host.as_deref().and_then(tenant_of_host) {
            identity.claims.push(Claim {
                source: Source::Host,
                value,
            });
        }
        let first = Source::from(first);
        identity.claims.sort_by_key(|c| c.source != first);
        identity
    }
}

/// The secret of `Authorization: Bearer tpk_...`. Other bearer tokens (an application's own
/// JWTs, say) are not ours: they are neither checked nor removed.
fn bearer_key(authorization: &str) -> Option<&str> {
    bearer(authorization.trim()).filter(|token| token.starts_with(SECRET_PREFIX))
}

/// The first label of a host name with at least [`MIN_TENANT_HOST_LABELS`] labels, lowercased,
/// port stripped; IP addresses name no tenant.
fn tenant_of_host(host: &str) -> Option<String> {
    let host = host.trim();
    if host.starts_with('[') {
        return None;
    }
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < MIN_TENANT_HOST_LABELS || labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    Some(labels[0].to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderMap;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};

    fn request(http: HttpRequest) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    fn with_headers(pairs: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            headers: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn hosts_name_a_tenant_only_with_three_labels() {
        assert_eq!(tenant_of_host("acme.example.com").as_deref(), Some("acme"));
        assert_eq!(
            tenant_of_host("Acme.example.com:8443").as_deref(),
            Some("acme")
        );
        assert_eq!(tenant_of_host("acme.example.com.").as_deref(), Some("acme"));
        for none in [
            "example.com",
            "localhost:10000",
            "10.0.0.1",
            "[::1]:10000",
            "a..b",
            "",
        ] {
            assert_eq!(tenant_of_host(none), None, "{none}");
        }
    }

    #[test]
    fn a_key_in_x_api_key_wins_over_a_bearer_one_and_says_so() {
        let both = with_headers(&[("x-api-key", "tpk_a"), ("authorization", "Bearer tpk_b")]);
        let bearer = with_headers(&[("authorization", "Bearer tpk_b")]);
        let both = Identity::read(&request(both), TenantIdSource::Subdomain);
        let bearer = Identity::read(&request(bearer), TenantIdSource::Subdomain);
        assert_eq!(
            (both.api_key.as_deref(), both.authenticated),
            (Some("tpk_a"), Authenticated::ApiKey)
        );
        assert_eq!(
            (bearer.api_key.as_deref(), bearer.authenticated),
            (Some("tpk_b"), Authenticated::Token)
        );
        assert_eq!(
            [
                Authenticated::ApiKey,
                Authenticated::Token,
                Authenticated::None
            ]
            .map(|a| a.as_str()),
            ["api-key", "token", "none"]
        );
    }

    #[test]
    fn only_our_bearer_tokens_are_api_keys() {
        assert_eq!(bearer_key("Bearer tpk_abc"), Some("tpk_abc"));
        assert_eq!(bearer_key("bearer  tpk_abc "), Some("tpk_abc"));
        assert_eq!(bearer_key("Bearer eyJhbGciOi.x.y"), None);
        assert_eq!(bearer_key("Basic dXNlcjpwYXNz"), None);
    }

    #[test]
    fn claims_come_in_order_of_precedence() {
        let http = HttpRequest {
            path: "/tenants/globex/x".into(),
            host: "initech.example.com".into(),
            ..with_headers(&[("x-tenant-id", "acme")])
        };
        let identity = Identity::read(&request(http.clone()), TenantIdSource::Header);
        let sources: Vec<_> = identity
            .claims
            .iter()
            .map(|c| (c.source, c.value.as_str()))
            .collect();
        assert_eq!(
            sources,
            [
                (Source::Header, "acme"),
                (Source::Path, "globex"),
                (Source::Host, "initech")
            ]
        );
        assert_eq!(identity.api_key, None);
        assert_eq!(identity.authenticated, Authenticated::None);
        let subdomain_first = Identity::read(&request(http), TenantIdSource::Subdomain);
        assert_eq!(subdomain_first.claims[0].source, Source::Host);
        assert_eq!(subdomain_first.claims[1].source, Source::Header);
    }

    #[test]
    fn raw_headers_are_read_and_repeats_joined() {
        let raw = |k: &str, v: &str| HeaderValue {
            key: k.into(),
            raw_value: v.as_bytes().to_vec(),
            ..Default::default()
        };
        let http = HttpRequest {
            header_map: Some(HeaderMap {
                headers: vec![
                    raw("x-api-key", "tpk_secret"),
                    raw("x-tenant-id", "evil"),
                    raw("X-Tenant-Id", "acme"),
                ],
            }),
            ..Default::default()
        };
        let identity = Identity::read(&request(http), TenantIdSource::Subdomain);
        assert_eq!(identity.api_key.as_deref(), Some("tpk_secret"));
        assert_eq!(identity.authenticated, Authenticated::ApiKey);
        assert_eq!(identity.secret_headers, ["x-api-key"]);
        assert_eq!(identity.claims[0].value, "evil,acme");
    }

    #[test]
    fn ids_are_looked_up_as_ids_and_hosts_as_slugs() {
        let id = TenantId::new().to_string();
        let claim = |source, value: &str| Claim {
            source,
            value: value.to_owned(),
        };
        assert!(matches!(claim(Source::Header, &id).lookup(), Lookup::Id(_)));
        assert!(matches!(
            claim(Source::Path, "acme").lookup(),
            Lookup::Slug(_)
        ));
        assert!(matches!(
            claim(Source::Host, "acme").lookup(),
            Lookup::Slug(_)
        ));
    }
}
