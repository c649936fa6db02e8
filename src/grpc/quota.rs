//! tenant.v1.QuotaService: decode, call one use case, encode.

use tonic::{Request, Response, Status};

use crate::auth;
use crate::domain::Error;
use crate::proto::{self, quota_service_server::QuotaService};
use crate::service::{QuotaState, Quotas, TenantRef};

pub struct QuotaApi {
    quotas: Quotas,
}

impl QuotaApi {
    pub fn new(quotas: Quotas) -> Self {
        Self { quotas }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The wire form of a quota state.
pub fn quota_state(s: &QuotaState) -> proto::QuotaState {
    let kind = if s.window_secs.is_some() {
        proto::QuotaKind::Counter
    } else {
        proto::QuotaKind::Gauge
    };
    proto::QuotaState {
        resource: s.resource.clone(),
        kind: kind.into(),
        limit: s.limit,
        used: s.used,
        remaining: s.remaining(),
        reset_time: s
            .reset_time()
            .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
        window: s
            .window_secs
            .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
    }
}

#[tonic::async_trait]
impl QuotaService for QuotaApi {
    async fn check_quota(
        &self,
        request: Request<proto::CheckQuotaRequest>,
    ) -> Reply<proto::CheckQuotaResponse> {
        let target = TenantRef::parse(&request.get_ref().tenant, "tenant")?;
        auth::require_tenant(request.extensions(), &target)?;
        let request = request.into_inner();
        let (allowed, state) = self
            .quotas
            .check(&target, &request.resource, request.amount)
            .await?;
        Ok(Response::new(proto::CheckQuotaResponse {
            allowed,
            quota: Some(quota_state(&state)),
        }))
    }

    async fn consume_quota(
        &self,
        request: Request<proto::ConsumeQuotaRequest>,
    ) -> Reply<proto::ConsumeQuotaResponse> {
        let request = request.into_inner();
        let key = super::request_key(&request.request_id, &request)
            .map_err(|v| Error::InvalidArgument(vec![v]))?;
        let target = TenantRef::parse(&request.tenant, "tenant")?;
        let items: Vec<(String, i64)> = request
            .items
            .into_iter()
            .map(|i| (i.resource, i.amount))
            .collect();
        let states = self.quotas.consume(&target, &items, key).await?;
        Ok(Response::new(proto::ConsumeQuotaResponse {
            quotas: states.iter().map(quota_state).collect(),
        }))
    }

    async fn report_usage(
        &self,
        request: Request<proto::ReportUsageRequest>,
    ) -> Reply<proto::QuotaState> {
        let request = request.into_inner();
        let target = TenantRef::parse(&request.tenant, "tenant")?;
        let state = self
            .quotas
            .report(&target, &request.resource, request.value)
            .await?;
        Ok(Response::new(quota_state(&state)))
    }

    async fn measure_storage(
        &self,
        request: Request<proto::MeasureStorageRequest>,
    ) -> Reply<proto::QuotaState> {
        let request = request.into_inner();
        let target = TenantRef::parse(&request.tenant, "tenant")?;
        let state = self.quotas.measure_storage(&target).await?;
        Ok(Response::new(quota_state(&state)))
    }

    async fn get_usage(
        &self,
        request: Request<proto::GetUsageRequest>,
    ) -> Reply<proto::GetUsageResponse> {
        let target = TenantRef::parse(&request.get_ref().tenant, "tenant")?;
        auth::require_tenant(request.extensions(), &target)?;
        let (tenant, states) = self.quotas.usage(&target).await?;
        Ok(Response::new(proto::GetUsageResponse {
            tenant: tenant.name(),
            quotas: states.iter().map(quota_state).collect(),
        }))
    }
}
