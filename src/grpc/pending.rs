//! The services whose contract is published but whose use cases are not built yet. Each RPC
//! answers UNIMPLEMENTED with the name of what is missing, so callers can code against the
//! contract and get a clear answer meanwhile.

use tonic::{Request, Response, Status};

use crate::domain::Error;
use crate::proto::{self, plan_service_server::PlanService};

/// Implements the not-yet-built services.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pending;

type Reply<T> = Result<Response<T>, Status>;

fn missing<T>(what: &str) -> Reply<T> {
    Err(Error::Unimplemented(what.to_owned()).into())
}

#[tonic::async_trait]
impl PlanService for Pending {
    async fn list_plans(
        &self,
        _: Request<proto::ListPlansRequest>,
    ) -> Reply<proto::ListPlansResponse> {
        missing("ListPlans (plan management)")
    }

    async fn get_plan(&self, _: Request<proto::GetPlanRequest>) -> Reply<proto::Plan> {
        missing("GetPlan (plan management)")
    }

    async fn upsert_plan(&self, _: Request<proto::UpsertPlanRequest>) -> Reply<proto::Plan> {
        missing("UpsertPlan (plan management)")
    }
}
