//! Per-RPC context: a request id (the caller's `x-request-id`, or a new UUIDv7), a tracing span
//! named after the method, and one log line per finished call with its status and latency.
//! The id is echoed in the `x-request-id` response header and quoted in error details.
//! The span continues the caller's W3C trace (`traceparent`) when spans are exported, and each
//! finished call is counted in the RPC metrics ([`crate::metrics`]).
//! The layer looks the path up in the method table ([`super::methods`]) and leaves the entry in
//! the request's extensions, so the layers inside do not look it up again.

use std::{
    borrow::Cow,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use super::methods::{self, Lookup};
use crate::auth::Actor;

tokio::task_local! {
    static REQUEST_ID: String;
    static ACTOR: Actor;
}

const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest caller-supplied request id kept; longer ones are replaced by a fresh id.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The current RPC's request id, or a fresh one outside an RPC.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| uuid::Uuid::now_v7().to_string())
}

/// Who makes the current RPC, as recorded in the audit log: `admin:<name>`, `service:<name>`,
/// `api-key:<key id>`, `cert:<subject>`, or `anonymous` when authentication is off.
/// Outside an RPC (background jobs) it is `system`.
/// The text is made here, when asked for (an audit row is written), not when the call starts.
pub fn actor() -> String {
    ACTOR
        .try_with(ToString::to_string)
        .unwrap_or_else(|_| "system".to_owned())
}

/// Runs `work` with `actor` as the current RPC's actor (set by the authentication layer).
pub async fn with_actor<F: Future>(actor: Actor, work: F) -> F::Output {
    ACTOR.scope(actor, work).await
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
        let id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= MAX_REQUEST_ID_LEN
                    && v.bytes().all(|b| b.is_ascii_graphic())
            })
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
        let known = methods::known(request.uri().path());
        request.extensions_mut().insert(Lookup(known));
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
        // Made now so that the id itself can move into the task-local without a copy.
        let id_header = HeaderValue::from_str(&id).ok();
        Box::pin(
            REQUEST_ID.scope(id, async move {
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
                    if let Some(value) = id_header {
                        response.headers_mut().insert(REQUEST_ID_HEADER, value);
                    }
                    response
                })
            })
            .instrument(span),
        )
    }
}
