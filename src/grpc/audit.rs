//! tenant.v1.AuditService: decode the request, call one use case, encode the answer.

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use super::{convert, policy};
use crate::domain::FieldViolation;
use crate::proto::{self, audit_service_server::AuditService};
use crate::service::{AuditLog, ListAuditEventsInput};
use crate::store::AuditEvent;

pub struct AuditApi {
    log: AuditLog,
}

impl AuditApi {
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }
}

/// A valid protobuf Timestamp, at the catalog's precision (microseconds).
fn time(
    t: Option<prost_types::Timestamp>,
    field: &str,
    violations: &mut Vec<FieldViolation>,
) -> Option<DateTime<Utc>> {
    let t = t?;
    let parsed = u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos - nanos % 1_000));
    if parsed.is_none() {
        violations.push(FieldViolation::new(field, "is not a valid time"));
    }
    parsed
}

fn wire(e: AuditEvent) -> proto::AuditEvent {
    proto::AuditEvent {
        name: format!("auditEvents/{}", e.id),
        time: Some(convert::timestamp(e.time)),
        actor: e.actor,
        action: e.action,
        tenant: e.tenant.map(|t| format!("tenants/{t}")).unwrap_or_default(),
        request_id: e.request_id,
        outcome: e.outcome,
        message: e.message.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Vec::new();
        if !request.action.is_empty()
            && policy::of_action(&request.action)
                .and_then(|p| p.audited_action())
                .is_none()
        {
            violations.push(FieldViolation::new(
                "action",
                "is not an audited RPC; name one as \"tenant.v1.TenantService/CreateTenant\"",
            ));
        }
        let start_time = time(request.start_time, "start_time", &mut violations);
        let end_time = time(request.end_time, "end_time", &mut violations);
        let input = ListAuditEventsInput {
            tenant: request.tenant,
            actor: request.actor,
            action: request.action,
            start_time,
            end_time,
            page_size: request.page_size,
            page_token: request.page_token,
            violations,
        };
        let (events, next_page_token) = self.log.list(input).await?;
        Ok(Response::new(proto::ListAuditEventsResponse {
            audit_events: events.into_iter().map(wire).collect(),
            next_page_token,
        }))
    }
}
