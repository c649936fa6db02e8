//! Which RPCs the audit log records, and the tower layer that opens each audited call's row and
//! completes it when the call has ended (see `store::audit` for how a row commits with its
//! change).
//!
//! Every RPC the server offers is in exactly one of three lists — [`MUTATING`], [`METERING`],
//! [`READ_ONLY`] — and a test walks the method table (`grpc::methods`) to keep it so: a new RPC
//! cannot be left out of the audit log without someone deciding that it should be. The table
//! copies each method's list from here once; the layer reads it from the table's entry. Only
//! [`MUTATING`] RPCs are recorded. Metering (quota consumption and usage reports, Envoy's rate
//! limit) counts usage on the hot path, thousands of times a second; it changes no
//! configuration and is not recorded.
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

use super::methods::{self, Method};
use super::status::code_name;
use crate::service::AuditLog;

/// RPCs that change the control plane's configuration: each call is recorded.
pub const MUTATING: &[&str] = &[
    "tenant.v1.TenantService/CreateTenant",
    "tenant.v1.TenantService/UpdateTenant",
    "tenant.v1.TenantService/DeleteTenant",
    "tenant.v1.TenantService/UndeleteTenant",
    "tenant.v1.TenantService/SuspendTenant",
    "tenant.v1.TenantService/ResumeTenant",
    "tenant.v1.TenantService/CreateApiKey",
    "tenant.v1.TenantService/RevokeApiKey",
    "tenant.v1.TenantService/RotateTenantCredentials",
    "tenant.v1.MembershipService/AddMember",
    "tenant.v1.MembershipService/UpdateMember",
    "tenant.v1.MembershipService/RemoveMember",
    "tenant.v1.ProvisioningService/ProvisionTenant",
    "tenant.v1.ProvisioningService/DeprovisionTenant",
    "tenant.v1.MigrationService/MigrateTenant",
    "tenant.v1.MigrationService/StartRollout",
    "tenant.v1.MigrationService/CancelRollout",
    "tenant.v1.PlanService/UpsertPlan",
];

/// RPCs that count usage on the hot path: not recorded.
pub const METERING: &[&str] = &[
    "tenant.v1.QuotaService/ConsumeQuota",
    "tenant.v1.QuotaService/ReportUsage",
    "tenant.v1.QuotaService/MeasureStorage",
    "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
];

/// RPCs that change nothing: not recorded.
pub const READ_ONLY: &[&str] = &[
    "tenant.v1.TenantService/GetTenant",
    "tenant.v1.TenantService/ListTenants",
    "tenant.v1.TenantService/ResolveTenant",
    "tenant.v1.TenantService/WatchTenantChanges",
    "tenant.v1.TenantService/ListApiKeys",
    "tenant.v1.MembershipService/GetMember",
    "tenant.v1.MembershipService/ListMembers",
    "tenant.v1.MembershipService/ListTenantsForUser",
    "tenant.v1.ProvisioningService/GetProvisioningStatus",
    "tenant.v1.MigrationService/ListMigrations",
    "tenant.v1.MigrationService/GetMigrationStatus",
    "tenant.v1.MigrationService/GetRollout",
    "tenant.v1.MigrationService/ListRollouts",
    "tenant.v1.MigrationService/WatchRollout",
    "tenant.v1.PlanService/ListPlans",
    "tenant.v1.PlanService/GetPlan",
    "tenant.v1.QuotaService/CheckQuota",
    "tenant.v1.QuotaService/GetUsage",
    "tenant.v1.AuditService/ListAuditEvents",
    "envoy.service.auth.v3.Authorization/Check",
];

/// The list an RPC is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// [`MUTATING`]: recorded.
    Mutating,
    /// [`METERING`]: not recorded.
    Metering,
    /// [`READ_ONLY`]: not recorded.
    ReadOnly,
}

/// The list `action` ("tenant.v1.TenantService/CreateTenant") is in, if any.
pub fn class(action: &str) -> Option<Class> {
    if MUTATING.contains(&action) {
        Some(Class::Mutating)
    } else if METERING.contains(&action) {
        Some(Class::Metering)
    } else if READ_ONLY.contains(&action) {
        Some(Class::ReadOnly)
    } else {
        None
    }
}

/// Whether calls of `action` ("tenant.v1.TenantService/CreateTenant") are recorded.
pub fn is_audited(action: &str) -> bool {
    MUTATING.contains(&action)
}

/// The action a call of `path` is recorded under, if it is recorded: read from `method`, the
/// path's entry in the method table, or, for a path nobody serves (`None`), from [`MUTATING`]
/// with the path's leading slashes trimmed.
pub fn audited_action<'a>(method: Option<&'static Method>, path: &'a str) -> Option<&'a str> {
    match method {
        Some(method) => (method.class() == Some(Class::Mutating)).then(|| method.action()),
        None => {
            let action = path.trim_start_matches('/');
            is_audited(action).then_some(action)
        }
    }
}

/// Longest failure message kept: a few words, not a report.
const MAX_MESSAGE: usize = 200;

/// Records every call of a [`MUTATING`] RPC in the audit log.
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

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Take the service that was driven to readiness, leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let scope = match audited_action(methods::of(&request), request.uri().path()) {
            Some(action) => self.log.scope(action),
            None => return Box::pin(inner.call(request)),
        };
        let log = self.log.clone();
        Box::pin(async move {
            let result = scope.clone().run(inner.call(request)).await;
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
                log.finish(&scope, code_name(code), message.as_deref())
                    .await;
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
    use std::collections::BTreeSet;

    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn every_rpc_is_audited_metered_or_read_only_and_only_one_of_them() {
        let lists = [MUTATING, METERING, READ_ONLY];
        let mut classified = BTreeSet::new();
        for list in lists {
            for rpc in list {
                assert!(classified.insert(*rpc), "{rpc} is classified twice");
            }
        }
        // Health and reflection are tonic's, change nothing and are left out of the lists.
        for method in methods::all().filter(|m| !m.service().starts_with("grpc.")) {
            let rpc = method.action();
            assert!(
                classified.contains(rpc),
                "{rpc} is served but not classified: add it to MUTATING (recorded), METERING or READ_ONLY in grpc/audit_layer.rs"
            );
        }
    }

    #[test]
    fn every_classified_rpc_is_served() {
        for rpc in MUTATING.iter().chain(METERING).chain(READ_ONLY) {
            assert!(
                methods::known(&format!("/{rpc}")).is_some(),
                "{rpc} is classified but not served"
            );
        }
    }

    #[test]
    fn unserved_paths_are_recorded_as_before() {
        let create = "/tenant.v1.TenantService/CreateTenant";
        let action = "tenant.v1.TenantService/CreateTenant";
        assert_eq!(audited_action(methods::known(create), create), Some(action));
        assert_eq!(audited_action(None, create), Some(action));
        assert_eq!(
            audited_action(None, "//tenant.v1.TenantService/CreateTenant"),
            Some(action)
        );
        let get = "/tenant.v1.TenantService/GetTenant";
        assert_eq!(audited_action(methods::known(get), get), None);
        assert_eq!(audited_action(None, "/tenant.v1.TenantService/Nope"), None);
    }

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
