//! envoy.service.auth.v3.Authorization: Envoy's ext_authz filter asks, per HTTP request, which
//! tenant it is for and whether it may pass.
//!
//! ## How the tenant is found
//! 1. An API key (`x-api-key`, or `Authorization: Bearer tpk_...`) authenticates, so it decides.
//!    A path `/tenants/{key}/...` (normalised as [`super::path`] says) must name the key's own
//!    tenant, by slug or id, or the request is refused (403): the application routes by the
//!    path, which reaches it unchanged. A header or host that names a *different existing*
//!    tenant is a mismatch too; one that names no tenant at all (the `api` of
//!    `api.example.com`, a stale `x-tenant-id`) is ignored, since the headers this filter sets
//!    replace it upstream anyway.
//! 2. Without credentials, a request that names a tenant is refused (401) unless every source
//!    that names one is listed in TENANT_ANONYMOUS_SOURCES (none by default): an anonymous
//!    client must neither reach a tenant nor be billed to one. When they are, the first source
//!    that names something decides, and nothing after it: the one TENANT_ID_SOURCE names
//!    (`subdomain` by default), then the rest in the order `x-tenant-id` (id or slug), a path
//!    `/tenants/{id-or-slug}/...`, the first label of a host with three or more labels.
//!
//! Before either, a path that cannot be normalised one way only is refused (400).
//!
//! ## Answers
//! A denial is an `Ok` answer with a google.rpc code and a JSON body for the client; an `Err`
//! is kept for outages (the catalog cannot be read), so Envoy applies its `failure_mode_allow`.
//! On allow, `x-tenant-id`, `x-tenant-slug`, `x-tenant-schema` and `x-tenant-authenticated`
//! (`api-key`, `token` or `none`: how the tenant was established) are *overwritten* on the
//! upstream request, never appended to, so a client cannot smuggle its own values past the
//! filter; the API key headers are removed so secrets go no further than this check.

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, HeaderAppendAction, HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use tonic::{Code, Request, Response, Status};

use super::sources::{Claim, Identity, Source};
use super::{
    TENANT_AUTHENTICATED_HEADER, TENANT_ID_HEADER, TENANT_SCHEMA_HEADER, TENANT_SLUG_HEADER,
};
use crate::config::TenantIdSource;
use crate::domain::{Error, Tenant, TenantState};
use crate::service::{DataLocation, Lookup, Tenants};

pub struct AuthzApi {
    tenants: Tenants,
    /// Where a request's tenant is looked for first (TENANT_ID_SOURCE).
    first: TenantIdSource,
    /// Where a request without credentials may name its tenant (TENANT_ANONYMOUS_SOURCES).
    anonymous: Vec<Source>,
}

impl AuthzApi {
    pub fn new(tenants: Tenants, first: TenantIdSource, anonymous: &[TenantIdSource]) -> Self {
        Self {
            tenants,
            first,
            anonymous: anonymous.iter().copied().map(Source::from).collect(),
        }
    }
}

/// Why a request is turned away; each maps to one HTTP status and one machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denial {
    /// No API key, and nothing in the request names a tenant.
    Unidentified,
    /// No credentials, and a source TENANT_ANONYMOUS_SOURCES does not list names a tenant.
    CredentialsRequired,
    /// The request names a tenant that does not exist, and offers no credentials.
    UnknownTenant,
    /// The API key is unknown, revoked or expired.
    InvalidApiKey,
    /// The API key belongs to another tenant than the request names.
    Mismatch,
    /// The path cannot be read one way only, so which tenant it names is in doubt.
    BadPath,
    Suspended,
    Deleted,
}

impl Denial {
    /// The HTTP status, the google.rpc code, the body's code and its message.
    fn parts(self) -> (HttpStatusCode, Code, &'static str, &'static str) {
        use {Code::*, HttpStatusCode::*};
        match self {
            Self::Unidentified => (
                Unauthorized,
                Unauthenticated,
                "TENANT_UNIDENTIFIED",
                "no tenant identified: send the tenant's API key",
            ),
            Self::CredentialsRequired => (
                Unauthorized,
                Unauthenticated,
                "CREDENTIALS_REQUIRED",
                "this request names a tenant: send that tenant's API key",
            ),
            Self::UnknownTenant => (
                Unauthorized,
                Unauthenticated,
                "TENANT_UNKNOWN",
                "unknown tenant",
            ),
            Self::InvalidApiKey => (
                Forbidden,
                PermissionDenied,
                "API_KEY_INVALID",
                "the API key is unknown, revoked or expired",
            ),
            Self::Mismatch => (
                Forbidden,
                PermissionDenied,
                "TENANT_MISMATCH",
                "the API key belongs to another tenant than the one the request names",
            ),
            Self::BadPath => (
                BadRequest,
                InvalidArgument,
                "PATH_INVALID",
                "the path has a malformed or ambiguous escape, a backslash or a control character",
            ),
            Self::Suspended => (
                Forbidden,
                PermissionDenied,
                "TENANT_SUSPENDED",
                "the tenant is suspended",
            ),
            Self::Deleted => (
                Forbidden,
                PermissionDenied,
                "TENANT_DELETED",
                "the tenant is deleted",
            ),
        }
    }

    fn response(self) -> CheckResponse {
        let (http, code, reason, message) = self.parts();
        let body = serde_json::json!({ "error": message, "code": reason }).to_string();
        let mut denied = DeniedHttpResponseBuilder::new();
        denied
            .set_http_status(http)
            .add_header(
                "content-type",
                "application/json",
                Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                false,
            )
            .set_body(body);
        let mut response = CheckResponse::new();
        response.status = Some(rpc::Status {
            code: code as i32,
            message: message.to_owned(),
            details: Vec::new(),
        });
        response.set_http_response(denied);
        response
    }
}

enum Verdict {
    /// Boxed: a tenant is hundreds of bytes, a denial one.
    Allow(Box<Tenant>, DataLocation),
    Deny(Denial),
}

/// NOT_FOUND and INVALID_ARGUMENT from a lookup both mean "no such tenant or key" here.
fn names_nothing(error: &Error) -> bool {
    matches!(error, Error::NotFound { .. } | Error::InvalidArgument(_))
}

impl AuthzApi {
    async fn decide(&self, identity: &Identity) -> Result<Verdict, Error> {
        if let Some(why) = identity.bad_path {
            tracing::debug!(?why, "the path cannot be normalised");
            return Ok(Verdict::Deny(Denial::BadPath));
        }
        let (tenant, location) = match &identity.api_key {
            Some(secret) => {
                let found = match self.tenants.resolve(Lookup::ApiKey(secret.clone())).await {
                    Ok(found) => found,
                    Err(e) if names_nothing(&e) => return Ok(Verdict::Deny(Denial::InvalidApiKey)),
                    Err(e) => return Err(e),
                };
                for claim in &identity.claims {
                    if self.names_another(claim, &found.0).await? {
                        tracing::debug!(tenant = %found.0.id, ?claim, "API key and request name different tenants");
                        return Ok(Verdict::Deny(Denial::Mismatch));
                    }
                }
                found
            }
            None => {
                let Some(claim) = identity.claims.first() else {
                    return Ok(Verdict::Deny(Denial::Unidentified));
                };
                // Before any lookup, so an anonymous caller learns nothing of which tenants exist.
                if let Some(barred) = identity
                    .claims
                    .iter()
                    .find(|c| !self.anonymous.contains(&c.source))
                {
                    tracing::debug!(source = ?barred.source, "a tenant named without credentials");
                    return Ok(Verdict::Deny(Denial::CredentialsRequired));
                }
                match self.tenants.resolve(claim.lookup()).await {
                    Ok(found) => found,
                    Err(e) if names_nothing(&e) => return Ok(Verdict::Deny(Denial::UnknownTenant)),
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(match tenant.state {
            TenantState::Suspended => Verdict::Deny(Denial::Suspended),
            TenantState::Deleted => Verdict::Deny(Denial::Deleted),
            _ => Verdict::Allow(Box::new(tenant), location),
        })
    }

    /// Whether `claim` names a tenant other than `tenant`: for a path, any tenant but this
    /// one, since the application routes by it and it reaches the application unchanged; for
    /// the headers this filter overwrites, an existing other tenant.
    async fn names_another(&self, claim: &Claim, tenant: &Tenant) -> Result<bool, Error> {
        if claim.names(tenant) {
            return Ok(false);
        }
        if claim.source == Source::Path {
            return Ok(true);
        }
        match self.tenants.resolve(claim.lookup()).await {
            Ok((other, _)) => Ok(other.id != tenant.id),
            Err(e) if names_nothing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The OK answer: the tenant's headers set on the upstream request, secrets removed, and the
/// tenant in the filter's dynamic metadata for later filters (rate limit, access logs).
fn allow(tenant: &Tenant, location: &DataLocation, identity: &Identity) -> CheckResponse {
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    let authenticated = identity.authenticated.as_str();
    let mut ok = OkHttpResponseBuilder::new();
    ok.add_header(TENANT_ID_HEADER, tenant.id.to_string(), overwrite, false)
        .add_header(TENANT_SLUG_HEADER, tenant.slug.as_str(), overwrite, false)
        .add_header(TENANT_AUTHENTICATED_HEADER, authenticated, overwrite, false);
    match location
        .schema_name
        .as_ref()
        .or(location.database_name.as_ref())
    {
        Some(storage) => {
            ok.add_header(TENANT_SCHEMA_HEADER, storage.as_str(), overwrite, false);
        }
        // Nothing to set, so make sure a client's own value does not reach the application.
        None => {
            ok.remove_header(TENANT_SCHEMA_HEADER);
        }
    }
    for header in &identity.secret_headers {
        ok.remove_header(*header);
    }
    let string = |s: String| Value {
        kind: Some(Kind::StringValue(s)),
    };
    let metadata = Struct {
        fields: [
            ("tenant_id".to_owned(), string(tenant.id.to_string())),
            ("tenant_slug".to_owned(), string(tenant.slug.to_string())),
            ("authenticated".to_owned(), string(authenticated.to_owned())),
        ]
        .into_iter()
        .collect(),
    };
    let mut response = CheckResponse::new();
    response.status = Some(rpc::Status {
        code: Code::Ok as i32,
        message: String::new(),
        details: Vec::new(),
    });
    response
        .set_http_response(ok)
        .set_dynamic_metadata(Some(metadata));
    response
}

#[tonic::async_trait]
impl Authorization for AuthzApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let identity = Identity::read(request.get_ref(), self.first);
        let response = match self.decide(&identity).await? {
            Verdict::Allow(tenant, location) => allow(&tenant, &location, &identity),
            Verdict::Deny(denial) => {
                tracing::debug!(?denial, "request denied");
                denial.response()
            }
        };
        Ok(Response::new(response))
    }
}
