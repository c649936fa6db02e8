//! [`TenantLayer`]: finds, resolves and admits the tenant of every request before the handler
//! runs, for tonic servers and anything else built on `http` and tower.
//!
//! The tenant is taken from, in order:
//! 1. the `x-tenant-id` header (gRPC metadata), an id or a slug, as the Envoy ext_authz adapter
//!    sets it;
//! 2. the host's subdomain: the first label of a host name of three labels or more
//!    (`acme.app.example.com` → `acme`);
//! 3. the path, `/tenants/{slug}/...`.
//!
//! Refusals are gRPC statuses: `UNAUTHENTICATED` when nothing names a tenant, `NOT_FOUND` for an
//! unknown one, `FAILED_PRECONDITION` for a suspended, deleted or failed one, `UNAVAILABLE` while
//! it is still provisioning or when the control plane cannot be reached. An admitted request
//! carries its [`TenantContext`] in its extensions and runs with it as
//! [`TenantContext::current`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response, header::HOST};
use tonic::Status;
use tower::{Layer, Service};

use crate::names::{Slug, TenantId};
use crate::{Error, TenantContext, TenantResolver};

/// The header (gRPC metadata key) naming the tenant, by id or slug.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// How a request names its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantKey {
    Id(TenantId),
    Slug(Slug),
}

impl TenantKey {
    /// An id or a slug; `None` for text that can be neither, and so names no tenant.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        TenantId::parse(text)
            .map(Self::Id)
            .or_else(|| Slug::parse(text).ok().map(Self::Slug))
    }

    /// The tenant a request names, or `Err` with what it named when that cannot be a tenant.
    /// `Ok(None)` when the request names none.
    pub fn of_request<B>(request: &Request<B>) -> Result<Option<Self>, Error> {
        if let Some(value) = request.headers().get(TENANT_HEADER) {
            let text = value.to_str().unwrap_or_default();
            return Self::parse(text)
                .map(Some)
                .ok_or_else(|| Error::NotFound(format!("'{}'", text.escape_debug())));
        }
        let host = request
            .uri()
            .host()
            .or_else(|| request.headers().get(HOST)?.to_str().ok());
        if let Some(slug) = host.and_then(subdomain) {
            return Ok(Some(Self::Slug(slug)));
        }
        Ok(request
            .uri()
            .path()
            .strip_prefix("/tenants/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|slug| Slug::parse(slug).ok())
            .map(Self::Slug))
    }
}

impl fmt::Display for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "tenants/{id}"),
            Self::Slug(slug) => write!(f, "tenants/{}", slug.as_str()),
        }
    }
}

/// The first label of a host of three labels or more, when it is a slug (so `127.0.0.1` and
/// `www.example.com` name no tenant).
fn subdomain(host: &str) -> Option<Slug> {
    let host = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 3 {
        return None;
    }
    Slug::parse(&labels[0].to_ascii_lowercase()).ok()
}

/// Wraps a service so that only requests of a served tenant reach it.
#[derive(Clone)]
pub struct TenantLayer {
    resolver: TenantResolver,
}

impl TenantLayer {
    pub fn new(resolver: TenantResolver) -> Self {
        Self { resolver }
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// The service [`TenantLayer`] builds.
#[derive(Clone)]
pub struct TenantService<S> {
    inner: S,
    resolver: TenantResolver,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> Service<Request<B>> for TenantService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is not ready; the one polled ready goes with this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let resolver = self.resolver.clone();
        // Read before the first await: the body need not be `Sync`.
        let key = TenantKey::of_request(&request);
        Box::pin(async move {
            let tenant = match admit(&resolver, key).await {
                Ok(tenant) => tenant,
                Err(error) => return Ok(Status::from(error).into_http()),
            };
            request.extensions_mut().insert(tenant.clone());
            // The tenant is current both while the inner service builds its future (some do
            // their work in `call`) and while that future runs.
            let future = tenant.clone().sync_scope(|| inner.call(request));
            tenant.scope(future).await
        })
    }
}

/// The served tenant `key` names.
async fn admit(
    resolver: &TenantResolver,
    key: Result<Option<TenantKey>, Error>,
) -> Result<TenantContext, Error> {
    let key = key?.ok_or(Error::NoTenant)?;
    let tenant = resolver.resolve(&key).await?;
    if !tenant.is_active() {
        return Err(Error::NotServed {
            slug: tenant.slug.as_str().to_owned(),
            state: tenant.state,
        });
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(request: Request<()>) -> Option<TenantKey> {
        TenantKey::of_request(&request).unwrap()
    }

    fn slug(text: &str) -> Option<TenantKey> {
        Some(TenantKey::Slug(Slug::parse(text).unwrap()))
    }

    #[test]
    fn the_header_wins_over_the_host_and_the_path() {
        let request = Request::builder()
            .uri("http://beta.app.example.com/tenants/gamma/x")
            .header(TENANT_HEADER, "alpha")
            .body(())
            .unwrap();
        assert_eq!(key(request), slug("alpha"));
    }

    #[test]
    fn the_header_may_carry_an_id() {
        let id = TenantId::from(uuid::Uuid::now_v7());
        let request = Request::builder()
            .header(TENANT_HEADER, id.to_string())
            .body(())
            .unwrap();
        assert_eq!(key(request), Some(TenantKey::Id(id)));
    }

    #[test]
    fn a_subdomain_names_the_tenant_when_the_host_has_three_labels() {
        let request = |host: &str| Request::builder().header(HOST, host).body(()).unwrap();
        assert_eq!(key(request("beta.app.example.com:8443")), slug("beta"));
        assert_eq!(key(request("example.com")), None);
        assert_eq!(key(request("127.0.0.1:50051")), None);
    }

    #[test]
    fn the_path_names_the_tenant_last() {
        let request = Request::builder()
            .uri("http://127.0.0.1/tenants/gamma/messages")
            .body(())
            .unwrap();
        assert_eq!(key(request), slug("gamma"));
        let grpc = Request::builder()
            .uri("/tenant.v1.TenantService/GetTenant")
            .body(())
            .unwrap();
        assert_eq!(key(grpc), None);
    }

    #[test]
    fn a_header_that_cannot_name_a_tenant_is_not_found_rather_than_ignored() {
        let request = Request::builder()
            .uri("http://beta.app.example.com/")
            .header(TENANT_HEADER, "'; DROP TABLE x")
            .body(())
            .unwrap();
        let refused = TenantKey::of_request(&request).unwrap_err();
        assert_eq!(Status::from(refused).code(), tonic::Code::NotFound);
    }
}
