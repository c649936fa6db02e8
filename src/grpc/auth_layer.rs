//! The authentication layer: credentials -> [`Caller`] -> the method's access rule -> the RPC.
//! The rule is read from the path's entry in the method table ([`super::methods`]), which the
//! context layer leaves in the request's extensions, with the rule of the policy table
//! ([`super::policy`]). The caller is left in the request's extensions for the layers and
//! handlers inside (the audit layer names the call's actor from it).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use super::context;
use super::methods::{self, Method};
use super::policy::Access;
use super::status::code_name;
use crate::auth::tls::CertificateRoles;
use crate::auth::{Caller, Role, TokenSet, bearer};
use crate::domain::{Actor, CallContext, Error, Principal, SECRET_PREFIX};
use crate::metrics::AuthRefusals;
use crate::service::{AuditLog, Tenants};
use crate::telemetry::throttle::Throttle;

/// Refusals for want of credentials are logged at most once per this interval (with how many
/// were not): the metric counts each one.
pub const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

static REFUSAL_LOG: Throttle = Throttle::new(REFUSAL_LOG_EVERY);

/// Authenticates every RPC but the public ones and refuses what the caller's role may not do.
#[derive(Clone)]
pub struct AuthLayer {
    inner: Arc<Authenticator>,
}

struct Authenticator {
    /// `--insecure`: everyone is an anonymous admin.
    insecure: bool,
    tokens: TokenSet,
    certificates: Option<CertificateRoles>,
    tenants: Tenants,
    /// Where refused attempts at changes by authenticated callers are recorded.
    audit: AuditLog,
    /// Where refusals for want of valid credentials are counted instead.
    refusals: AuthRefusals,
}

impl AuthLayer {
    /// Accepts `tokens`, client certificates mapped by `certificates` (under mutual TLS), and
    /// the tenant API keys `tenants` knows.
    pub fn new(
        tokens: TokenSet,
        certificates: Option<CertificateRoles>,
        tenants: Tenants,
        audit: AuditLog,
        refusals: AuthRefusals,
    ) -> Self {
        Self {
            inner: Arc::new(Authenticator {
                insecure: false,
                tokens,
                certificates,
                tenants,
                audit,
                refusals,
            }),
        }
    }

    /// Lets every call through as an anonymous admin.
    pub fn insecure(tenants: Tenants, audit: AuditLog) -> Self {
        Self {
            inner: Arc::new(Authenticator {
                insecure: true,
                tokens: TokenSet::default(),
                certificates: None,
                tenants,
                audit,
                refusals: AuthRefusals::default(),
            }),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: self.inner.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B, RB> Service<Request<B>> for Authenticated<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Take the service that was driven to readiness, leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let method = methods::of(&request);
            // A path nobody serves has no entry: its rule comes from its text (a public
            // prefix, else admin-only).
            let access = methods::access(method, request.uri().path());
            if access == Access::Public {
                return inner.call(request).await;
            }
            let presented = auth.presented(&request);
            let anonymous = matches!(presented, Presented::Missing);
            let caller = match auth.authenticate(presented).await {
                Ok(caller) => caller,
                Err(Error::Unauthenticated { reason, message }) => {
                    return Ok(auth.turn_away(method, anonymous, reason, message));
                }
                Err(e) => {
                    let actor = if anonymous {
                        Actor::Anonymous
                    } else {
                        Actor::Unauthenticated
                    };
                    return Ok(auth.refuse(refused(&request), method, actor, e).await);
                }
            };
            if let Err(e) = permit(&caller, access, request.uri().path()) {
                return Ok(auth
                    .refuse(refused(&request), method, caller.actor(), e)
                    .await);
            }
            request.extensions_mut().insert(caller);
            inner.call(request).await
        })
    }
}

/// The credentials a request brings, read before anything is awaited.
enum Presented {
    /// Authentication is off.
    Nothing,
    Certificate(Arc<Principal>),
    Secret(String),
    Missing,
    Malformed(Error),
}

impl Authenticator {
    /// The refusal of a call without valid credentials: counted and logged at a bounded rate,
    /// not written to the audit log, since anyone who reaches the port can make such calls as
    /// fast as they like (refusals of authenticated callers are recorded by [`Self::refuse`]).
    fn turn_away<RB: Default>(
        &self,
        method: Option<&'static Method>,
        anonymous: bool,
        reason: &'static str,
        message: String,
    ) -> Response<RB> {
        let (service, name) = method.map_or(("unknown", "unknown"), |m| (m.service(), m.method()));
        self.refusals.record(service, name, reason);
        if let Some(held_back) = REFUSAL_LOG.admit() {
            tracing::warn!(
                grpc.service = service,
                grpc.method = name,
                reason,
                anonymous,
                not_logged_since = held_back,
                "call refused for want of valid credentials"
            );
        }
        Status::from(Error::Unauthenticated { reason, message }).into_http()
    }

    /// The refusal of `request` (whose entry in the method table is `method`), recorded in the
    /// audit log when the call was an attempt at a change: who tried what, and why it was
    /// refused.
    async fn refuse<RB: Default>(
        &self,
        (path, request_id): (&str, String),
        method: Option<&'static Method>,
        actor: Actor,
        error: Error,
    ) -> Response<RB> {
        let status = Status::from(error);
        if let Some(action) = methods::audited_action(method, path) {
            let outcome = code_name(status.code());
            let ctx = CallContext::rpc(request_id, actor, Some(self.audit.row(action)));
            self.audit
                .finish(&ctx, outcome, Some(status.message()))
                .await;
        }
        status.into_http()
    }

    fn presented<B>(&self, request: &Request<B>) -> Presented {
        if self.insecure {
            return Presented::Nothing;
        }
        if let Some(principal) = self
            .certificates
            .as_ref()
            .and_then(|c| c.principal(request.extensions()))
        {
            return Presented::Certificate(principal);
        }
        match credential(request.headers()) {
            Ok(Some(secret)) => Presented::Secret(secret.to_owned()),
            Ok(None) => Presented::Missing,
            Err(e) => Presented::Malformed(e),
        }
    }

    async fn authenticate(&self, presented: Presented) -> Result<Caller, Error> {
        let secret = match presented {
            Presented::Nothing => return Ok(Caller::Anonymous),
            Presented::Certificate(principal) => return Ok(Caller::Certificate(principal)),
            Presented::Malformed(e) => return Err(e),
            Presented::Missing => {
                return Err(Error::Unauthenticated {
                    reason: "CREDENTIALS_MISSING",
                    message: "this RPC needs credentials: an `authorization: Bearer <token>` \
                              header (a token or a tenant API key), or a client certificate"
                        .into(),
                });
            }
            Presented::Secret(secret) => secret,
        };
        if secret.starts_with(SECRET_PREFIX) {
            return match self.tenants.authenticate_api_key(&secret).await? {
                Some((key, tenant)) => Ok(Caller::TenantKey {
                    key,
                    tenant: tenant.id,
                    slug: tenant.slug.clone(),
                }),
                None => Err(invalid("the API key is unknown, revoked or expired")),
            };
        }
        self.tokens
            .find(&secret)
            .map(Caller::Token)
            .ok_or_else(|| invalid("the bearer token is not valid"))
    }
}

/// The path and request id of a refused request, taken before anything is awaited.
fn refused<B>(request: &Request<B>) -> (&str, String) {
    (
        request.uri().path(),
        context::request_id(request.extensions()),
    )
}

fn invalid(message: &str) -> Error {
    Error::Unauthenticated {
        reason: "CREDENTIALS_INVALID",
        message: message.to_owned(),
    }
}

/// The secret of `authorization: Bearer <secret>`, or of `x-api-key`.
fn credential(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| invalid("the authorization header is not text"))?;
        return bearer(value)
            .map(Some)
            .ok_or_else(|| invalid("the authorization header must be `Bearer <token>`"));
    }
    match headers.get(super::API_KEY_HEADER) {
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| invalid("the x-api-key header is not text")),
        None => Ok(None),
    }
}

/// Whether `caller` may call a method of `access`. Tenant keys pass for their own-tenant RPCs,
/// whose handlers then check the tenant named.
fn permit(caller: &Caller, access: Access, path: &str) -> Result<(), Error> {
    match (access, caller.role()) {
        (Access::Public, _) | (_, Some(Role::Admin)) => Ok(()),
        (Access::OwnTenant | Access::Service, Some(Role::Service)) | (Access::OwnTenant, None) => {
            Ok(())
        }
        (Access::Admin, Some(Role::Service)) => Err(Error::PermissionDenied(format!(
            "the service role may not call {path}: it needs the admin role"
        ))),
        (_, None) => Err(Error::PermissionDenied(format!(
            "an API key may not call {path}: it may only read its own tenant, its usage and \
             its quotas"
        ))),
    }
}
