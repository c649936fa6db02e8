//! tenant.v1.TenantService: decode the request, call one use case, encode the answer.

use tonic::{Request, Response, Status};

use super::context::call_context;
use super::{convert, request_key};
use crate::auth;
use crate::domain::{Error, Etag, FieldViolation};
use crate::proto::{self, tenant_service_server::TenantService};
use crate::service::{
    CreateTenantInput, IsolationInput, ListTenantsInput, Lookup, Provisioning, TenantChange,
    TenantRef, Tenants, UpdateTenantInput,
};

pub struct TenantApi {
    pub(super) tenants: Tenants,
    /// For RotateTenantCredentials, which acts on the tenant's storage (its database role).
    provisioning: Provisioning,
}

impl TenantApi {
    pub fn new(tenants: Tenants, provisioning: Provisioning) -> Self {
        Self {
            tenants,
            provisioning,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply(tenant: Result<crate::domain::Tenant, Error>) -> Reply<proto::Tenant> {
    Ok(Response::new(convert::tenant(tenant?)))
}

/// Output-only fields of a Tenant that a caller has filled in.
fn output_only_set(t: &proto::Tenant) -> Vec<&'static str> {
    let set = [
        ("name", !t.name.is_empty()),
        ("id", !t.id.is_empty()),
        ("state", t.state != 0),
        ("schema_name", !t.schema_name.is_empty()),
        ("database_name", !t.database_name.is_empty()),
        ("suspend_reason", !t.suspend_reason.is_empty()),
        ("migration_version", !t.migration_version.is_empty()),
        ("create_time", t.create_time.is_some()),
        ("update_time", t.update_time.is_some()),
        ("delete_time", t.delete_time.is_some()),
        ("purge_time", t.purge_time.is_some()),
        ("suspend_time", t.suspend_time.is_some()),
        ("etag", !t.etag.is_empty()),
    ];
    set.into_iter()
        .filter_map(|(field, is_set)| is_set.then_some(field))
        .collect()
}

const OUTPUT_ONLY: &[&str] = &[
    "name",
    "id",
    "state",
    "schema_name",
    "database_name",
    "suspend_reason",
    "migration_version",
    "create_time",
    "update_time",
    "delete_time",
    "purge_time",
    "suspend_time",
    "etag",
];
const IMMUTABLE: &[&str] = &["slug", "isolation"];

fn isolation_input(value: i32) -> IsolationInput {
    match proto::Isolation::try_from(value) {
        Ok(proto::Isolation::Unspecified) => IsolationInput::Unspecified,
        Ok(proto::Isolation::Schema) => IsolationInput::Known(crate::domain::Isolation::Schema),
        Ok(proto::Isolation::Database) => IsolationInput::Known(crate::domain::Isolation::Database),
        Ok(proto::Isolation::Shared) => IsolationInput::Known(crate::domain::Isolation::Shared),
        Err(_) => IsolationInput::Unknown(value),
    }
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    type WatchTenantChangesStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<proto::TenantChange, Status>> + Send + 'static>,
    >;

    async fn watch_tenant_changes(
        &self,
        _: Request<proto::WatchTenantChangesRequest>,
    ) -> Reply<Self::WatchTenantChangesStream> {
        use tokio_stream::StreamExt;
        let changes = self.tenants.watch_changes().map(|change| {
            Ok(match change {
                TenantChange::Tenant { id, slug } => proto::TenantChange {
                    id: id.to_string(),
                    slug: slug.unwrap_or_default(),
                    reset: false,
                },
                TenantChange::Reset => proto::TenantChange {
                    reset: true,
                    ..Default::default()
                },
            })
        });
        Ok(Response::new(Box::pin(changes)))
    }

    async fn create_tenant(
        &self,
        request: Request<proto::CreateTenantRequest>,
    ) -> Reply<proto::Tenant> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let Some(tenant) = request.tenant.clone() else {
            return Err(Error::invalid("tenant", "is required").into());
        };
        let mut violations: Vec<FieldViolation> = output_only_set(&tenant)
            .into_iter()
            .map(|f| {
                FieldViolation::new(format!("tenant.{f}"), "is output only and must not be set")
            })
            .collect();
        if !tenant.limit_overrides.is_empty() {
            violations.push(FieldViolation::new(
                "tenant.limit_overrides",
                "is set with UpdateTenant, not on create",
            ));
        }
        let request_key = request_key(&request.request_id, &request)
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        let input = CreateTenantInput {
            slug: tenant.slug,
            display_name: tenant.display_name,
            plan: tenant.plan,
            isolation: isolation_input(tenant.isolation),
            labels: tenant.labels.into_iter().collect(),
            request: request_key,
            validate_only: request.validate_only,
            owner_user_id: request.owner_user_id,
            violations,
        };
        reply(self.tenants.create(&ctx, input).await)
    }

    async fn get_tenant(&self, request: Request<proto::GetTenantRequest>) -> Reply<proto::Tenant> {
        let target = TenantRef::parse(&request.get_ref().name, "name")?;
        auth::require_tenant(request.extensions(), &target)?;
        reply(self.tenants.get(&target).await)
    }

    async fn list_tenants(
        &self,
        request: Request<proto::ListTenantsRequest>,
    ) -> Reply<proto::ListTenantsResponse> {
        let request = request.into_inner();
        let mut states = Vec::new();
        for (i, raw) in request.states.iter().enumerate() {
            match proto::tenant::State::try_from(*raw)
                .ok()
                .and_then(convert::state_from_wire)
            {
                Some(state) => states.push(state),
                None => {
                    return Err(Error::invalid(
                        format!("states[{i}]"),
                        format!("{raw} is not a tenant state"),
                    )
                    .into());
                }
            }
        }
        let input = ListTenantsInput {
            page_size: request.page_size,
            page_token: request.page_token,
            states,
            plan: request.plan,
            labels: request.labels.into_iter().collect(),
            show_deleted: request.show_deleted,
            component_version: request.component_version.map(|c| (c.component, c.version)),
        };
        let (tenants, next_page_token) = self.tenants.list(input).await?;
        Ok(Response::new(proto::ListTenantsResponse {
            tenants: tenants.into_iter().map(convert::tenant).collect(),
            next_page_token,
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<proto::UpdateTenantRequest>,
    ) -> Reply<proto::Tenant> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let Some(tenant) = request.tenant else {
            return Err(Error::invalid("tenant", "is required").into());
        };
        let target = TenantRef::parse(&tenant.name, "tenant.name")?;
        let mut paths: Vec<String> = request.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            // AIP-134: without a mask, the mutable fields the caller populated.
            let populated = [
                ("display_name", !tenant.display_name.is_empty()),
                ("plan", !tenant.plan.is_empty()),
                ("labels", !tenant.labels.is_empty()),
                ("limit_overrides", !tenant.limit_overrides.is_empty()),
            ];
            paths = populated
                .iter()
                .filter(|(_, set)| *set)
                .map(|(p, _)| (*p).to_owned())
                .collect();
            if paths.is_empty() {
                return Err(Error::invalid("update_mask", "names no field to change").into());
            }
        }
        let mut changes = UpdateTenantInput::default();
        let mut violations = Vec::new();
        for path in &paths {
            match path.as_str() {
                "display_name" => changes.display_name = Some(tenant.display_name.clone()),
                "plan" => changes.plan = Some(tenant.plan.clone()),
                "labels" => changes.labels = Some(tenant.labels.clone().into_iter().collect()),
                "limit_overrides" => {
                    changes.limit_overrides =
                        Some(tenant.limit_overrides.clone().into_iter().collect())
                }
                "*" => {
                    changes.display_name = Some(tenant.display_name.clone());
                    changes.plan = Some(tenant.plan.clone());
                    changes.labels = Some(tenant.labels.clone().into_iter().collect());
                    changes.limit_overrides =
                        Some(tenant.limit_overrides.clone().into_iter().collect());
                }
                p => violations.push(super::bad_mask_path(p, OUTPUT_ONLY, IMMUTABLE, "Tenant")),
            }
        }
        if !tenant.etag.is_empty() && Etag::parse(&tenant.etag).is_none() {
            violations.push(FieldViolation::new(
                "tenant.etag",
                "is not an etag issued by this service",
            ));
        }
        Error::check(violations)?;
        reply(
            self.tenants
                .update(&ctx, &target, Some(&tenant.etag), changes)
                .await,
        )
    }

    async fn delete_tenant(
        &self,
        request: Request<proto::DeleteTenantRequest>,
    ) -> Reply<proto::Tenant> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let target = TenantRef::parse(&request.name, "name")?;
        reply(
            self.tenants
                .delete(&ctx, &target, Some(&request.etag))
                .await,
        )
    }

    async fn undelete_tenant(
        &self,
        request: Request<proto::UndeleteTenantRequest>,
    ) -> Reply<proto::Tenant> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let target = TenantRef::parse(&request.name, "name")?;
        reply(
            self.tenants
                .undelete(&ctx, &target, Some(&request.etag))
                .await,
        )
    }

    async fn suspend_tenant(
        &self,
        request: Request<proto::SuspendTenantRequest>,
    ) -> Reply<proto::Tenant> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let target = TenantRef::parse(&request.name, "name")?;
        reply(
            self.tenants
                .suspend(&ctx, &target, &request.reason, Some(&request.etag))
                .await,
        )
    }

    async fn resume_tenant(
        &self,
        request: Request<proto::ResumeTenantRequest>,
    ) -> Reply<proto::Tenant> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let target = TenantRef::parse(&request.name, "name")?;
        reply(
            self.tenants
                .resume(&ctx, &target, Some(&request.etag))
                .await,
        )
    }

    async fn resolve_tenant(
        &self,
        request: Request<proto::ResolveTenantRequest>,
    ) -> Reply<proto::ResolveTenantResponse> {
        use proto::resolve_tenant_request::Key;
        let caller = request.extensions().get::<auth::Caller>().cloned();
        let lookup = match request.into_inner().key {
            Some(Key::Id(id)) => Lookup::Id(id),
            Some(Key::Slug(slug)) => Lookup::Slug(slug),
            Some(Key::Host(host)) => Lookup::Host(host),
            Some(Key::ApiKey(secret)) => Lookup::ApiKey(secret),
            None => {
                return Err(
                    Error::invalid("key", "one of id, slug, host or api_key is required").into(),
                );
            }
        };
        let (tenant, location) = self
            .tenants
            .resolve_within(lookup, |target| {
                caller.as_ref().is_none_or(|c| c.reaches(target))
            })
            .await?;
        Ok(Response::new(proto::ResolveTenantResponse {
            tenant: Some(convert::tenant(tenant)),
            location: Some(convert::location(location)),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<proto::CreateApiKeyRequest>,
    ) -> Reply<proto::CreateApiKeyResponse> {
        self.create_key(request).await
    }

    async fn list_api_keys(
        &self,
        request: Request<proto::ListApiKeysRequest>,
    ) -> Reply<proto::ListApiKeysResponse> {
        self.list_keys(request).await
    }

    async fn revoke_api_key(
        &self,
        request: Request<proto::RevokeApiKeyRequest>,
    ) -> Reply<proto::ApiKey> {
        self.revoke_key(request).await
    }

    async fn rotate_tenant_credentials(
        &self,
        request: Request<proto::RotateTenantCredentialsRequest>,
    ) -> Reply<proto::RotateTenantCredentialsResponse> {
        let ctx = call_context(&request);
        let target = TenantRef::parse(&request.get_ref().name, "name")?;
        let credentials = self.provisioning.rotate_credentials(&ctx, &target).await?;
        Ok(Response::new(proto::RotateTenantCredentialsResponse {
            role_name: credentials.role.to_string(),
            password: credentials.password.expose().to_owned(),
        }))
    }
}
