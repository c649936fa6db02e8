//! The services whose contract is published but whose use cases are not built yet. Each RPC
//! answers UNIMPLEMENTED with the name of what is missing, so callers can code against the
//! contract and get a clear answer meanwhile.

use std::pin::Pin;

use tonic::{Request, Response, Status};

use crate::domain::Error;
use crate::proto::{
    self, migration_service_server::MigrationService, plan_service_server::PlanService,
    provisioning_service_server::ProvisioningService, quota_service_server::QuotaService,
};

/// Implements the not-yet-built services.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pending;

type Reply<T> = Result<Response<T>, Status>;

fn missing<T>(what: &str) -> Reply<T> {
    Err(Error::Unimplemented(what.to_owned()).into())
}

#[tonic::async_trait]
impl ProvisioningService for Pending {
    async fn provision_tenant(
        &self,
        _: Request<proto::ProvisionTenantRequest>,
    ) -> Reply<proto::ProvisionTenantResponse> {
        missing("ProvisionTenant (tenant storage provisioning)")
    }

    async fn deprovision_tenant(
        &self,
        _: Request<proto::DeprovisionTenantRequest>,
    ) -> Reply<proto::Tenant> {
        missing("DeprovisionTenant (purging tenant storage)")
    }

    async fn get_provisioning_status(
        &self,
        _: Request<proto::GetProvisioningStatusRequest>,
    ) -> Reply<proto::ProvisioningStatus> {
        missing("GetProvisioningStatus (tenant storage provisioning)")
    }
}

#[tonic::async_trait]
impl MigrationService for Pending {
    type WatchRolloutStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<proto::RolloutEvent, Status>> + Send + 'static>,
    >;

    async fn list_migrations(
        &self,
        _: Request<proto::ListMigrationsRequest>,
    ) -> Reply<proto::ListMigrationsResponse> {
        missing("ListMigrations (per-tenant migrations)")
    }

    async fn get_migration_status(
        &self,
        _: Request<proto::GetMigrationStatusRequest>,
    ) -> Reply<proto::MigrationStatus> {
        missing("GetMigrationStatus (per-tenant migrations)")
    }

    async fn migrate_tenant(
        &self,
        _: Request<proto::MigrateTenantRequest>,
    ) -> Reply<proto::MigrateTenantResponse> {
        missing("MigrateTenant (per-tenant migrations)")
    }

    async fn start_rollout(&self, _: Request<proto::StartRolloutRequest>) -> Reply<proto::Rollout> {
        missing("StartRollout (fleet migration rollouts)")
    }

    async fn get_rollout(&self, _: Request<proto::GetRolloutRequest>) -> Reply<proto::Rollout> {
        missing("GetRollout (fleet migration rollouts)")
    }

    async fn list_rollouts(
        &self,
        _: Request<proto::ListRolloutsRequest>,
    ) -> Reply<proto::ListRolloutsResponse> {
        missing("ListRollouts (fleet migration rollouts)")
    }

    async fn cancel_rollout(
        &self,
        _: Request<proto::CancelRolloutRequest>,
    ) -> Reply<proto::Rollout> {
        missing("CancelRollout (fleet migration rollouts)")
    }

    async fn watch_rollout(
        &self,
        _: Request<proto::WatchRolloutRequest>,
    ) -> Reply<Self::WatchRolloutStream> {
        missing("WatchRollout (fleet migration rollouts)")
    }
}

#[tonic::async_trait]
impl QuotaService for Pending {
    async fn check_quota(
        &self,
        _: Request<proto::CheckQuotaRequest>,
    ) -> Reply<proto::CheckQuotaResponse> {
        missing("CheckQuota (quotas)")
    }

    async fn consume_quota(
        &self,
        _: Request<proto::ConsumeQuotaRequest>,
    ) -> Reply<proto::ConsumeQuotaResponse> {
        missing("ConsumeQuota (quotas)")
    }

    async fn report_usage(
        &self,
        _: Request<proto::ReportUsageRequest>,
    ) -> Reply<proto::QuotaState> {
        missing("ReportUsage (quotas)")
    }

    async fn get_usage(
        &self,
        _: Request<proto::GetUsageRequest>,
    ) -> Reply<proto::GetUsageResponse> {
        missing("GetUsage (quotas)")
    }
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
