//! Consuming a tenant's quota before an action: one call to `QuotaService.ConsumeQuota`, its
//! denial passed on as the control plane phrased it (`RESOURCE_EXHAUSTED` with
//! `google.rpc.QuotaFailure` and `RetryInfo` details), so a handler can return it as is.

use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

use crate::proto::{
    ConsumeQuotaRequest, QuotaItem, QuotaState, quota_service_client::QuotaServiceClient,
};
use crate::{BearerToken, ControlPlane, Error, TenantContext};

/// A quota client for tenant requests. Cheap to clone.
#[derive(Clone)]
pub struct Quotas {
    client: QuotaServiceClient<InterceptedService<Channel, BearerToken>>,
}

impl Quotas {
    pub fn new(control_plane: impl Into<ControlPlane>) -> Self {
        Self {
            client: QuotaServiceClient::new(control_plane.into().service()),
        }
    }

    /// Consumes `amount` of `resource` for `tenant`; the resource's state afterwards. A denial
    /// is the control plane's `RESOURCE_EXHAUSTED` status, details included.
    ///
    /// `request_id` (a UUID) makes a retry of the same action count once.
    #[tracing::instrument(skip(self, tenant), fields(tenant = %tenant.id))]
    pub async fn consume(
        &self,
        tenant: &TenantContext,
        resource: &str,
        amount: i64,
        request_id: Option<uuid::Uuid>,
    ) -> Result<QuotaState, Status> {
        let request = ConsumeQuotaRequest {
            tenant: tenant.name(),
            items: vec![QuotaItem {
                resource: resource.to_owned(),
                amount,
            }],
            request_id: request_id.map(|id| id.to_string()).unwrap_or_default(),
        };
        match self.client.clone().consume_quota(request).await {
            Ok(response) => Ok(response
                .into_inner()
                .quotas
                .into_iter()
                .next()
                .unwrap_or_default()),
            Err(status) if status.code() == Code::ResourceExhausted => Err(status),
            Err(status) => Err(Error::ControlPlane(status).into()),
        }
    }
}
