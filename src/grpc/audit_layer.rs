//! The tower layer that gives each call of an audited RPC its audit row, and completes the
//! row when the call has ended (see `store::audit` for how a row commits with its change).
//!
//! Which RPCs are recorded, and under which action, is the policy table's to say
//! ([`super::policy`]); the layer reads it from the method table's entry. For a recorded call
//! it makes the call's [`CallContext`] — its request id, its actor and a fresh [`AuditRow`] —
//! and leaves it in the request's extensions, where the handler takes it
//! ([`super::context::call_context`]) and passes it to the use case; the layer keeps a clone to
//! complete the row afterwards.
//!
//! The layer sits inside the authentication layer, so the actor is known when a refusal is
//! written; calls the authentication layer itself refuses never reach it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tower::{Layer, Service};

use super::context;
use super::methods;
use super::status::code_name;
use crate::domain::CallContext;
use crate::service::AuditLog;

/// Longest failure message kept: a few words, not a report.
const MAX_MESSAGE: usize = 200;

/// Records every call of a recorded RPC in the audit log.
#[derive(Clone)]
pub struct AuditLayer {
    log: AuditLog,
}

impl AuditLayer {
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audited {
            inner,
            log: self.log.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Audited<S> {
    inner: S,
    log: AuditLog,
}

impl<S, B, RB> Service<Request<B>> for Audited<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
    RB: Send,
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
        let Some(action) = methods::audited_action(methods::of(&request), request.uri().path())
        else {
            return Box::pin(inner.call(request));
        };
        let extensions = request.extensions();
        let ctx = CallContext::rpc(
            context::request_id(extensions),
            context::actor(extensions),
            Some(self.log.row(action)),
        );
        request.extensions_mut().insert(ctx.clone());
        let log = self.log.clone();
        Box::pin(async move {
            let result = inner.call(request).await;
            // A unary call's error is in its headers (trailers-only); a success has none there.
            let ended = result.as_ref().ok().map(|response| {
                match Status::from_header_map(response.headers()) {
                    Some(status) if status.code() != Code::Ok => {
                        (status.code(), Some(failure_message(&status)))
                    }
                    _ => (Code::Ok, None),
                }
            });
            if let Some((code, message)) = ended {
                log.finish(&ctx, code_name(code), message.as_deref()).await;
            }
            result
        })
    }
}

/// Why a call failed, in a few words: the invalid fields, or the caller's message, but never the
/// text of an internal or database error (a failed migration's message carries its SQL error).
fn failure_message(status: &Status) -> String {
    match status.code() {
        Code::InvalidArgument => {
            let fields: Vec<String> = status
                .get_details_bad_request()
                .map(|bad| bad.field_violations.into_iter().map(|v| v.field))
                .into_iter()
                .flatten()
                .filter(|field| !field.is_empty())
                .collect();
            if fields.is_empty() {
                "invalid argument".to_owned()
            } else {
                short(&format!("invalid {}", fields.join(", ")))
            }
        }
        Code::Internal | Code::Unknown | Code::DataLoss => "internal error".to_owned(),
        Code::Unavailable => "a service the call needs is unavailable".to_owned(),
        Code::FailedPrecondition
            if status
                .get_details_precondition_failure()
                .is_some_and(|p| p.violations.iter().any(|v| v.r#type == "MIGRATION")) =>
        {
            "tenant migration failed; the tenant is left at its previous version".to_owned()
        }
        _ => short(status.message()),
    }
}

fn short(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn failure_messages_name_fields_and_hide_internal_text() {
        let mut bad = ErrorDetails::new();
        bad.add_bad_request_violation("tenant.slug", "must be lowercase; got 'DROP TABLE'");
        bad.add_bad_request_violation("tenant.plan", "unknown plan");
        let status = Status::with_error_details(Code::InvalidArgument, "invalid request", bad);
        assert_eq!(failure_message(&status), "invalid tenant.slug, tenant.plan");

        let internal = Status::internal("relation \"tenants\" does not exist: SELECT * FROM x");
        assert_eq!(failure_message(&internal), "internal error");

        let migration = Status::with_error_details(
            Code::FailedPrecondition,
            "tenant migration failed (syntax error at or near \"CREAT\")",
            ErrorDetails::with_precondition_failure_violation("MIGRATION", "m", "d"),
        );
        assert!(!failure_message(&migration).contains("CREAT"));

        let stale = Status::aborted("etag mismatch: tenant acme has changed; read it again");
        assert_eq!(failure_message(&stale), stale.message());
        assert_eq!(short(&"é".repeat(300)).chars().count(), MAX_MESSAGE + 1);
    }

    #[test]
    fn outcomes_are_google_rpc_code_names() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
