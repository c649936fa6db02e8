//! Per-RPC context: a request id (the caller's `x-request-id`, or a new UUIDv7), a tracing span
//! named after the method, and one log line per finished call with its status and latency.
//! The id is echoed in the `x-request-id` response header and quoted in error details.
//! The span continues the caller's W3C trace (`traceparent`) when spans are exported, and each
//! finished call is counted in the RPC metrics ([`crate::metrics`]).
//! The layer looks the path up in the method table ([`super::methods`]) and leaves the entry in
//! the request's extensions, so the layers inside do not look it up again; it leaves the
//! request id there too ([`RequestId`]). Nothing is carried in task-locals: a handler builds
//! the [`CallContext`] its use case takes from the request ([`call_context`]).

use std::{
    borrow::Cow,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use super::methods::{self, Lookup};
use crate::auth::Caller;
use crate::domain::{Actor, CallContext};

const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest caller-supplied request id kept; longer ones are replaced by a fresh id.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request extension the context layer leaves: the call's request id.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The request id the context layer left in `extensions`, or a fresh one for a request that
/// did not pass through it (a layer used on its own).
pub fn request_id(extensions: &http::Extensions) -> String {
    extensions
        .get::<RequestId>()
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), |id| id.0.to_string())
}

/// Who makes the call, as the audit log records it: `admin:<name>`, `service:<name>`,
/// `api-key:<key id>`, `cert:<subject>`, or `anonymous` when authentication is off; from the
/// caller the authentication layer left in `extensions`, `system` without one.
pub fn actor(extensions: &http::Extensions) -> Actor {
    extensions
        .get::<Caller>()
        .map_or(Actor::System, Caller::actor)
}

/// The context of the call of `request`, for its use case: the one the audit layer left (with
/// the row an audited call owes), or, for a call that is not audited, its request id and actor.
pub fn call_context<T>(request: &tonic::Request<T>) -> CallContext {
    let extensions = request.extensions();
    match extensions.get::<CallContext>() {
        Some(ctx) => ctx.clone(),
        None => CallContext::rpc(request_id(extensions), actor(extensions), None),
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestContextLayer;

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestContext<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RequestContext<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Made once, shared by the extension, the span and the answer's header.
        let id: Arc<str> = match request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= MAX_REQUEST_ID_LEN
                    && v.bytes().all(|b| b.is_ascii_graphic())
            }) {
            Some(given) => Arc::from(given),
            None => {
                let mut text = uuid::Uuid::encode_buffer();
                Arc::from(&*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text))
            }
        };
        let known = methods::known(request.uri().path());
        request.extensions_mut().insert(Lookup(known));
        request.extensions_mut().insert(RequestId(Arc::clone(&id)));
        // A served method's path is in the table: only an unknown one is copied.
        let (method, (service_name, method_name)): (Cow<'static, str>, _) = match known {
            Some(m) => (Cow::Borrowed(m.path()), (m.service(), m.method())),
            None => (
                Cow::Owned(request.uri().path().to_owned()),
                methods::UNKNOWN,
            ),
        };
        // otel.name and otel.kind stay empty (and out of the logs) unless spans are exported.
        let span = tracing::info_span!(
            "rpc",
            rpc.method = %method,
            request_id = %id,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        crate::telemetry::continue_trace(&span, request.headers(), service_name, method_name);
        let finished = span.clone();
        // Take the service that was driven to readiness, leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        let id_header = HeaderValue::from_str(&id).ok();
        Box::pin(
            async move {
                let result = inner.call(request).await;
                if let Ok(response) = &result {
                    let elapsed = started.elapsed();
                    // Absent on a successful response's headers: its status is in the trailers.
                    let status = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok());
                    let code = tonic::Code::from_i32(status.unwrap_or(0));
                    let code_name = super::status::code_name(code);
                    tracing::info!(grpc.code = %code_name, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "rpc finished");
                    crate::metrics::rpc_finished(service_name, method_name, code, code_name, elapsed);
                    crate::telemetry::finish_rpc(&finished, code);
                }
                result.map(|mut response| {
                    super::status::quote_request_id(&mut response, &id);
                    if let Some(value) = id_header {
                        response.headers_mut().insert(REQUEST_ID_HEADER, value);
                    }
                    response
                })
            }
            .instrument(span),
        )
    }
}
