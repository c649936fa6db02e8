//! tenant.v1.PlanService: decode the request, call one use case, encode the answer.

use tonic::{Request, Response, Status};

use super::context::call_context;
use super::{convert, request_key};
use crate::domain::{Error, FieldViolation, Metering, Plan, PlanLimit, QuotaKind};
use crate::proto::{self, plan_service_server::PlanService};
use crate::service::{
    IsolationInput, PlanFields, PlanLimitInput, Plans, UpsertPlanInput, parse_plan_name,
};

pub struct PlanApi {
    plans: Plans,
}

impl PlanApi {
    pub fn new(plans: Plans) -> Self {
        Self { plans }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Fields of a Plan no update mask may name: set by the server, or naming the plan itself.
const OUTPUT_ONLY: &[&str] = &["create_time", "update_time", "etag"];
const IMMUTABLE: &[&str] = &["name", "plan_id"];

#[tonic::async_trait]
impl PlanService for PlanApi {
    async fn list_plans(
        &self,
        request: Request<proto::ListPlansRequest>,
    ) -> Reply<proto::ListPlansResponse> {
        let request = request.into_inner();
        let (plans, next_page_token) = self
            .plans
            .list(request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(proto::ListPlansResponse {
            plans: plans.into_iter().map(plan).collect(),
            next_page_token,
        }))
    }

    async fn get_plan(&self, request: Request<proto::GetPlanRequest>) -> Reply<proto::Plan> {
        let id = parse_plan_name(&request.get_ref().name, "name")?;
        Ok(Response::new(plan(self.plans.get(&id).await?)))
    }

    async fn upsert_plan(&self, request: Request<proto::UpsertPlanRequest>) -> Reply<proto::Plan> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let Some(wire) = request.plan.clone() else {
            return Err(Error::invalid("plan", "is required").into());
        };
        let mut violations = Vec::new();
        let paths = request
            .update_mask
            .as_ref()
            .map(|m| m.paths.as_slice())
            .unwrap_or_default();
        let fields = if paths.is_empty() {
            // AIP-134: without a mask, the mutable fields the caller populated.
            PlanFields {
                display_name: !wire.display_name.is_empty(),
                default_isolation: wire.default_isolation != 0,
                limits: !wire.limits.is_empty(),
                components: !wire.components.is_empty(),
            }
        } else {
            mask_fields(paths, &mut violations)
        };
        let limits = wire
            .limits
            .iter()
            .enumerate()
            .map(|(i, l)| limit_input(i, l, &mut violations))
            .collect();
        let request_key = request_key(&request.request_id, &request)
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        let input = UpsertPlanInput {
            name: wire.name,
            plan_id: wire.plan_id,
            display_name: wire.display_name,
            default_isolation: isolation_input(wire.default_isolation),
            limits,
            components: wire.components,
            fields,
            etag: wire.etag,
            request: request_key,
            violations,
        };
        Ok(Response::new(plan(self.plans.upsert(&ctx, input).await?)))
    }
}

/// The fields an update mask names; a path that is not a mutable field of Plan is a violation.
fn mask_fields(paths: &[String], violations: &mut Vec<FieldViolation>) -> PlanFields {
    let mut fields = PlanFields::default();
    for path in paths {
        match path.as_str() {
            "display_name" => fields.display_name = true,
            "default_isolation" => fields.default_isolation = true,
            "limits" => fields.limits = true,
            "components" => fields.components = true,
            "*" => fields = PlanFields::ALL,
            p => violations.push(super::bad_mask_path(p, OUTPUT_ONLY, IMMUTABLE, "Plan")),
        }
    }
    fields
}

/// A limit as sent; a window that is not whole seconds is reported here, everything else by
/// the use case.
fn limit_input(
    i: usize,
    l: &proto::PlanLimit,
    violations: &mut Vec<FieldViolation>,
) -> PlanLimitInput {
    if let Some(window) = &l.window
        && window.nanos != 0
    {
        violations.push(FieldViolation::new(
            format!("plan.limits[{i}].window"),
            "must be whole seconds",
        ));
    }
    PlanLimitInput {
        resource: l.resource.clone(),
        limit: l.limit,
        kind: match proto::QuotaKind::try_from(l.kind) {
            Ok(proto::QuotaKind::Counter) => Some(QuotaKind::Counter),
            Ok(proto::QuotaKind::Gauge) => Some(QuotaKind::Gauge),
            Ok(proto::QuotaKind::Unspecified) | Err(_) => None,
        },
        window_secs: l.window.as_ref().map(|w| w.seconds),
    }
}

fn isolation_input(value: i32) -> IsolationInput {
    match proto::Isolation::try_from(value) {
        Ok(proto::Isolation::Unspecified) => IsolationInput::Unspecified,
        Ok(proto::Isolation::Schema) => IsolationInput::Known(crate::domain::Isolation::Schema),
        Ok(proto::Isolation::Database) => IsolationInput::Known(crate::domain::Isolation::Database),
        Ok(proto::Isolation::Shared) => IsolationInput::Known(crate::domain::Isolation::Shared),
        Err(_) => IsolationInput::Unknown(value),
    }
}

fn plan(p: Plan) -> proto::Plan {
    proto::Plan {
        name: p.name(),
        plan_id: p.id.to_string(),
        etag: p.etag().to_string(),
        display_name: p.display_name,
        default_isolation: p
            .default_isolation
            .map_or(proto::Isolation::Unspecified, convert::isolation)
            as i32,
        limits: p.limits.iter().map(limit).collect(),
        components: p.components.clone(),
        create_time: Some(convert::timestamp(p.create_time)),
        update_time: Some(convert::timestamp(p.update_time)),
    }
}

fn limit(l: &PlanLimit) -> proto::PlanLimit {
    let (kind, window) = match l.metering {
        Metering::Counter { window_secs } => (
            proto::QuotaKind::Counter,
            Some(prost_types::Duration {
                seconds: window_secs,
                nanos: 0,
            }),
        ),
        Metering::Gauge => (proto::QuotaKind::Gauge, None),
    };
    proto::PlanLimit {
        resource: l.resource.to_string(),
        limit: l.limit,
        kind: kind as i32,
        window,
    }
}
