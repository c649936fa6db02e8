//! tenant.v1.ProvisioningService: decode, call one use case, encode.

use tonic::{Request, Response, Status};

use super::context::call_context;
use super::convert;
use crate::domain::Error;
use crate::proto::{self, provisioning_service_server::ProvisioningService};
use crate::service::{Provisioning, ProvisioningStatus, TenantRef};

pub struct ProvisioningApi {
    provisioning: Provisioning,
}

impl ProvisioningApi {
    pub fn new(provisioning: Provisioning) -> Self {
        Self { provisioning }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn status(s: ProvisioningStatus) -> proto::ProvisioningStatus {
    proto::ProvisioningStatus {
        migrations_applied: s.migrations_applied(),
        tenant: s.tenant,
        storage_provisioned: s.storage_provisioned,
        current_version: s.current_version.unwrap_or_default(),
        latest_version: s.latest_version.unwrap_or_default(),
        last_error: s.last_error.unwrap_or_default(),
        provision_time: s.provision_time.map(convert::timestamp),
        last_error_time: s.last_error_time.map(convert::timestamp),
        location: Some(convert::location(s.location)),
    }
}

#[tonic::async_trait]
impl ProvisioningService for ProvisioningApi {
    async fn provision_tenant(
        &self,
        request: Request<proto::ProvisionTenantRequest>,
    ) -> Reply<proto::ProvisionTenantResponse> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let target = TenantRef::parse(&request.tenant, "tenant")?;
        let key = super::request_key(&request.request_id, &request)
            .map_err(|v| Error::InvalidArgument(vec![v]))?;
        let (tenant, changed) = self
            .provisioning
            .provision(
                &ctx,
                &target,
                request.force_recreate,
                Some(&request.etag),
                key.as_ref(),
            )
            .await?;
        let current = self.provisioning.status_of(&tenant);
        Ok(Response::new(proto::ProvisionTenantResponse {
            tenant: Some(convert::tenant(tenant)),
            changed,
            status: Some(status(current)),
        }))
    }

    async fn deprovision_tenant(
        &self,
        request: Request<proto::DeprovisionTenantRequest>,
    ) -> Reply<proto::Tenant> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let target = TenantRef::parse(&request.tenant, "tenant")?;
        let key = super::request_key(&request.request_id, &request)
            .map_err(|v| Error::InvalidArgument(vec![v]))?;
        let tenant = self
            .provisioning
            .purge(
                &ctx,
                &target,
                &request.confirm_slug,
                Some(&request.etag),
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(convert::tenant(tenant)))
    }

    async fn get_provisioning_status(
        &self,
        request: Request<proto::GetProvisioningStatusRequest>,
    ) -> Reply<proto::ProvisioningStatus> {
        let target = TenantRef::parse(&request.get_ref().tenant, "tenant")?;
        Ok(Response::new(status(
            self.provisioning.status(&target).await?,
        )))
    }
}
