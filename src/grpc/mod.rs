//! The gRPC surface: one file per service, plus the request layers — context ([`context`]:
//! request id, span, metrics), authentication ([`auth_layer`]) and audit ([`audit_layer`]) —
//! the one per-RPC policy table they read ([`policy`]: who may call each RPC and whether it is
//! recorded), the table of served methods ([`methods`]), the error table ([`status`]), health
//! and reflection.
//!
//! A handler takes the call's [`crate::domain::CallContext`] from its request
//! ([`context::call_context`]) and passes it to every use case that changes something.

mod api_keys;
mod audit;
pub mod audit_layer;
pub mod auth_layer;
mod component;
pub mod context;
mod convert;
mod drift;
mod envoy;
mod member;
pub mod methods;
mod migration;
mod plan;
pub mod policy;
mod provisioning;
mod quota;
mod rollout_wire;
pub mod status;
mod tenant;

pub use auth_layer::AuthLayer;
pub(crate) use envoy::API_KEY_HEADER;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::Notify};
use tonic::transport::{Server, server::TcpIncoming};

use crate::proto::{
    audit_service_server::AuditServiceServer, component_service_server::ComponentServiceServer,
    membership_service_server::MembershipServiceServer,
    migration_service_server::MigrationServiceServer, plan_service_server::PlanServiceServer,
    provisioning_service_server::ProvisioningServiceServer,
    quota_service_server::QuotaServiceServer, tenant_service_server::TenantServiceServer,
};
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::FieldViolation;
use crate::service::{
    AuditLog, Components, Fleet, Members, Migrations, Plans, Provisioning, Quotas, RequestKey,
    Rollouts, Tenants,
};

/// The largest ComponentService request: a push sends a whole directory's history, which
/// outgrows tonic's default of 4 MiB long before it reaches the push's own limits (1000
/// migrations, 1 MiB a script). Only authenticated callers get this far: the authentication
/// layer answers before a body is read.
pub const MAX_PUSH_BYTES: usize = 32 * 1024 * 1024;

/// The use cases the gRPC services call.
#[derive(Clone)]
pub struct Services {
    pub tenants: Tenants,
    pub members: Members,
    pub provisioning: Provisioning,
    pub migrations: Migrations,
    pub rollouts: Rollouts,
    /// Drift checks of tenants' storage (MigrationService.CheckDrift and the drift job).
    pub drifts: crate::service::Drifts,
    pub quotas: Quotas,
    pub plans: Plans,
    pub components: Components,
    pub fleet: Fleet,
    pub audit: AuditLog,
    /// Where the Envoy adapter looks for a request's tenant first (TENANT_ID_SOURCE).
    pub tenant_id_source: crate::config::TenantIdSource,
    /// Where a request without credentials may name its tenant (TENANT_ANONYMOUS_SOURCES).
    pub tenant_anonymous_sources: Vec<crate::config::TenantIdSource>,
    /// Whether such requests count against the tenant's quotas (TENANT_ANONYMOUS_QUOTA).
    pub tenant_anonymous_quota: bool,
}

/// How callers are authenticated: the layer, and TLS when configured.
#[derive(Clone)]
pub struct Security {
    pub auth: AuthLayer,
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Why an update_mask path that names no mutable field of a `kind` is refused.
pub(crate) fn bad_mask_path(
    path: &str,
    output_only: &[&str],
    immutable: &[&str],
    kind: &str,
) -> FieldViolation {
    let why = if output_only.contains(&path) {
        format!("{path} is output only")
    } else if immutable.contains(&path) {
        format!("{path} is immutable")
    } else {
        format!("{path} is not a field of {kind}")
    };
    FieldViolation::new("update_mask", why)
}

/// Parses an AIP-155 request id: empty, or a UUID.
pub(crate) fn request_key(
    request_id: &str,
    request: &impl Message,
) -> Result<Option<RequestKey>, FieldViolation> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let id = Uuid::try_parse(request_id)
        .map_err(|_| FieldViolation::new("request_id", "must be a UUID"))?;
    let request_hash = format!("{:x}", Sha256::digest(request.encode_to_vec()));
    Ok(Some(RequestKey { id, request_hash }))
}

/// Serves every service on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight RPCs finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<TenantServiceServer<tenant::TenantApi>>()
        .await;
    health
        .set_serving::<MembershipServiceServer<member::MemberApi>>()
        .await;
    health
        .set_serving::<ProvisioningServiceServer<provisioning::ProvisioningApi>>()
        .await;
    health
        .set_serving::<MigrationServiceServer<migration::MigrationApi>>()
        .await;
    health
        .set_serving::<QuotaServiceServer<quota::QuotaApi>>()
        .await;
    health
        .set_serving::<PlanServiceServer<plan::PlanApi>>()
        .await;
    health
        .set_serving::<ComponentServiceServer<component::ComponentApi>>()
        .await;
    health
        .set_serving::<AuditServiceServer<audit::AuditApi>>()
        .await;
    health
        .set_serving::<envoy::AuthorizationServer<envoy::AuthzApi>>()
        .await;
    health
        .set_serving::<envoy::RateLimitServiceServer<envoy::RateLimitApi>>()
        .await;

    let descriptors = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ];
    let mut v1 = tonic_reflection::server::Builder::configure();
    let mut v1alpha = tonic_reflection::server::Builder::configure();
    for set in descriptors {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }

    let draining = Arc::new(Notify::new());
    let signal = {
        let draining = draining.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new connections, draining in-flight RPCs");
            draining.notify_one();
        }
    };
    // TCP_NODELAY: small gRPC answers must not wait for Nagle's algorithm (40 ms stalls), and
    // keepalive finds dead peers behind idle connections.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    // Cloned before the tenant and quota services take theirs.
    let envoy_authz = envoy::AuthzApi::new(
        services.tenants.clone(),
        services.tenant_id_source,
        &services.tenant_anonymous_sources,
    );
    let envoy_rate_limit =
        envoy::RateLimitApi::new(services.quotas.clone(), services.tenant_anonymous_quota);
    let mut builder = Server::builder();
    if let Some(tls) = security.tls {
        builder = builder.tls_config(tls)?;
    }
    // The context layer is outermost: refusals by the auth layer carry the request id too, and
    // it leaves the path's entry in the method table for the layers inside.
    let server = builder
        .layer(context::RequestContextLayer)
        .layer(security.auth)
        // Inside authentication, so the audit log knows who called.
        .layer(audit_layer::AuditLayer::new(services.audit.clone()))
        .add_service(health_service)
        .add_service(v1.build_v1()?)
        .add_service(v1alpha.build_v1alpha()?)
        .add_service(TenantServiceServer::new(tenant::TenantApi::new(
            services.tenants,
            services.provisioning.clone(),
        )))
        .add_service(MembershipServiceServer::new(member::MemberApi::new(
            services.members,
        )))
        .add_service(ProvisioningServiceServer::new(
            provisioning::ProvisioningApi::new(services.provisioning),
        ))
        .add_service(MigrationServiceServer::new(migration::MigrationApi::new(
            services.migrations,
            services.rollouts,
            services.drifts,
        )))
        .add_service(QuotaServiceServer::new(quota::QuotaApi::new(
            services.quotas,
        )))
        .add_service(PlanServiceServer::new(plan::PlanApi::new(services.plans)))
        .add_service(
            ComponentServiceServer::new(component::ComponentApi::new(
                services.components,
                services.fleet,
            ))
            .max_decoding_message_size(MAX_PUSH_BYTES),
        )
        .add_service(AuditServiceServer::new(audit::AuditApi::new(
            services.audit,
        )))
        .add_service(envoy::AuthorizationServer::new(envoy_authz))
        .add_service(envoy::RateLimitServiceServer::new(envoy_rate_limit))
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => Ok(served?),
        () = async { draining.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "drain deadline passed; abandoning unfinished RPCs");
            Ok(())
        }
    }
}
