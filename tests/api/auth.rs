//! Authentication and roles: bearer tokens (admin, service), tenant API keys that reach only
//! their own tenant, and `--insecure`.

use tenant_plane::proto::{
    self, CheckQuotaRequest, GetTenantRequest, GetUsageRequest, ListTenantsRequest,
    ResolveTenantRequest, resolve_tenant_request::Key,
};
use tonic::{Code, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

use crate::api_keys::create_key;
use crate::on_both;
use crate::support::{
    Db, QuotaServiceClient, SERVICE_ACTOR, SERVICE_TOKEN, TenantServiceClient, TestServer, create,
    new_tenant,
};

on_both!(
    every_rpc_but_health_and_reflection_needs_valid_credentials,
    the_service_role_reads_and_resolves_but_changes_nothing,
    a_tenant_key_reaches_its_own_tenant_and_nothing_else,
);

/// Asserts an UNAUTHENTICATED status with this ErrorInfo reason.
#[track_caller]
fn assert_unauthenticated(status: &Status, reason: &str) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, reason, "{status:?}");
    assert!(info.metadata.contains_key("request_id"), "{status:?}");
}

#[track_caller]
fn assert_denied(result: Result<impl std::fmt::Debug, Status>) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "PERMISSION_DENIED");
}

fn get(name: &str) -> GetTenantRequest {
    GetTenantRequest { name: name.into() }
}

fn create_request(slug: &str) -> proto::CreateTenantRequest {
    proto::CreateTenantRequest {
        tenant: Some(new_tenant(slug)),
        ..Default::default()
    }
}

async fn every_rpc_but_health_and_reflection_needs_valid_credentials(server: &TestServer) {
    create(server, "acme").await;
    let before = server.catalog_snapshot().await;

    let mut anonymous = TenantServiceClient::new(server.anonymous());
    let missing = anonymous.get_tenant(get("tenants/acme")).await.unwrap_err();
    assert_unauthenticated(&missing, "CREDENTIALS_MISSING");
    let missing = anonymous
        .create_tenant(create_request("newco"))
        .await
        .unwrap_err();
    assert_unauthenticated(&missing, "CREDENTIALS_MISSING");

    for bad in ["tpa_not-a-token", "tpk_not-a-key", "admin"] {
        let mut client = TenantServiceClient::new(server.conn_as(bad));
        let refused = client
            .create_tenant(create_request("newco"))
            .await
            .unwrap_err();
        assert_unauthenticated(&refused, "CREDENTIALS_INVALID");
        assert!(
            !refused.message().contains(bad),
            "the presented secret is never echoed: {refused:?}"
        );
    }
    // Another scheme than Bearer is refused too.
    let mut basic = tonic::Request::new(get("tenants/acme"));
    basic.metadata_mut().insert(
        "authorization",
        "Basic YWRtaW46YWRtaW4=".parse().expect("ascii"),
    );
    let refused = TenantServiceClient::new(server.channel.clone())
        .get_tenant(basic)
        .await
        .unwrap_err();
    assert_unauthenticated(&refused, "CREDENTIALS_INVALID");
    assert_eq!(server.catalog_snapshot().await, before, "nothing changed");

    // Health checks and reflection need nothing.
    let health = HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health is public");
    assert_eq!(health.into_inner().status, 1);
    // An API key in x-api-key works like a bearer token.
    let key = create_key(server, "tenants/acme", "reader", None).await;
    let mut request = tonic::Request::new(get("tenants/acme"));
    request
        .metadata_mut()
        .insert("x-api-key", key.secret.parse().expect("ascii"));
    let read = TenantServiceClient::new(server.channel.clone())
        .get_tenant(request)
        .await
        .expect("a key in x-api-key");
    assert_eq!(read.into_inner().slug, "acme");
}

async fn the_service_role_reads_and_resolves_but_changes_nothing(server: &TestServer) {
    let acme = create(server, "acme").await;
    let before = server.catalog_snapshot().await;
    let mut tenants = TenantServiceClient::new(server.conn_as(SERVICE_TOKEN));
    let mut quotas = QuotaServiceClient::new(server.conn_as(SERVICE_TOKEN));

    tenants
        .get_tenant(get(&acme.name))
        .await
        .expect("read a tenant");
    tenants
        .list_tenants(ListTenantsRequest::default())
        .await
        .expect("list tenants");
    tenants
        .resolve_tenant(ResolveTenantRequest {
            key: Some(Key::Slug("acme".into())),
        })
        .await
        .expect("resolve");
    quotas
        .check_quota(CheckQuotaRequest {
            tenant: acme.name.clone(),
            resource: "users".into(),
            amount: 1,
        })
        .await
        .expect("check a quota");
    server
        .migrations()
        .get_migration_status(proto::GetMigrationStatusRequest {
            component: Default::default(),
            tenant: acme.name.clone(),
        })
        .await
        .expect("the admin reads migration status");
    let mut migrations =
        proto::migration_service_client::MigrationServiceClient::new(server.conn_as(SERVICE_TOKEN));
    migrations
        .get_migration_status(proto::GetMigrationStatusRequest {
            component: Default::default(),
            tenant: acme.name.clone(),
        })
        .await
        .expect("the service reads migration status");

    assert_denied(tenants.create_tenant(create_request("newco")).await);
    assert_denied(
        tenants
            .delete_tenant(proto::DeleteTenantRequest {
                name: acme.name.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_denied(
        tenants
            .create_api_key(proto::CreateApiKeyRequest {
                parent: acme.name.clone(),
                api_key: Some(proto::ApiKey::default()),
            })
            .await,
    );
    assert_denied(
        migrations
            .start_rollout(proto::StartRolloutRequest::default())
            .await,
    );
    assert_eq!(server.catalog_snapshot().await, before, "nothing changed");

    // Each refused attempt at a change by an authenticated caller is in the audit log, with
    // who tried; reads are not.
    let events = events_of(server, SERVICE_ACTOR).await;
    let mut attempts: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    attempts.sort_unstable();
    assert_eq!(
        attempts,
        [
            (
                "tenant.v1.MigrationService/StartRollout",
                "PERMISSION_DENIED"
            ),
            ("tenant.v1.TenantService/CreateApiKey", "PERMISSION_DENIED"),
            ("tenant.v1.TenantService/CreateTenant", "PERMISSION_DENIED"),
            ("tenant.v1.TenantService/DeleteTenant", "PERMISSION_DENIED"),
        ]
    );
    let mut anonymous = TenantServiceClient::new(server.anonymous());
    assert!(anonymous.create_tenant(create_request("x")).await.is_err());
    // A refusal for want of credentials is counted, not recorded (see audit_retention.rs).
    let anonymous_events = events_of(server, "anonymous").await;
    assert!(anonymous_events.is_empty(), "{anonymous_events:?}");
}

/// The audit events of `actor`.
async fn events_of(server: &TestServer, actor: &str) -> Vec<proto::AuditEvent> {
    server
        .audit()
        .list_audit_events(proto::ListAuditEventsRequest {
            actor: actor.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .audit_events
}

async fn a_tenant_key_reaches_its_own_tenant_and_nothing_else(server: &TestServer) {
    let acme = create(server, "acme").await;
    let globex = create(server, "globex").await;
    let key = create_key(server, &acme.name, "acme's app", None).await;
    let before = server.catalog_snapshot().await;
    let mut tenants = TenantServiceClient::new(server.conn_as(&key.secret));
    let mut quotas = QuotaServiceClient::new(server.conn_as(&key.secret));

    for own in [acme.name.clone(), "tenants/acme".to_owned()] {
        let read = tenants.get_tenant(get(&own)).await.expect("its own tenant");
        assert_eq!(read.into_inner().id, acme.id);
    }
    let resolved = tenants
        .resolve_tenant(ResolveTenantRequest {
            key: Some(Key::ApiKey(key.secret.clone())),
        })
        .await
        .expect("resolve itself");
    assert_eq!(resolved.into_inner().tenant.expect("tenant").id, acme.id);
    let usage = quotas
        .get_usage(GetUsageRequest {
            tenant: acme.name.clone(),
        })
        .await
        .expect("its own usage");
    assert_eq!(usage.into_inner().tenant, acme.name);
    quotas
        .check_quota(CheckQuotaRequest {
            tenant: "tenants/acme".into(),
            resource: "users".into(),
            amount: 1,
        })
        .await
        .expect("its own quota");

    // Another tenant, existing or not, by id or slug: PERMISSION_DENIED, never NOT_FOUND.
    for other in [
        globex.name.clone(),
        "tenants/globex".to_owned(),
        "tenants/no-such-tenant".to_owned(),
        format!("tenants/{}", uuid::Uuid::now_v7()),
    ] {
        assert_denied(tenants.get_tenant(get(&other)).await);
        assert_denied(
            quotas
                .get_usage(GetUsageRequest {
                    tenant: other.clone(),
                })
                .await,
        );
        assert_denied(
            quotas
                .check_quota(CheckQuotaRequest {
                    tenant: other.clone(),
                    resource: "users".into(),
                    amount: 1,
                })
                .await,
        );
    }
    for key in [Key::Slug("globex".into()), Key::Slug("nobody".into())] {
        assert_denied(
            tenants
                .resolve_tenant(ResolveTenantRequest { key: Some(key) })
                .await,
        );
    }
    // Everything else is beyond a key, even for its own tenant.
    assert_denied(tenants.list_tenants(ListTenantsRequest::default()).await);
    assert_denied(
        tenants
            .delete_tenant(proto::DeleteTenantRequest {
                name: acme.name.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_denied(
        quotas
            .consume_quota(proto::ConsumeQuotaRequest {
                tenant: acme.name.clone(),
                items: vec![proto::QuotaItem {
                    resource: "users".into(),
                    amount: 1,
                }],
                ..Default::default()
            })
            .await,
    );
    assert_eq!(server.catalog_snapshot().await, before, "nothing changed");

    // A suspended tenant's key still reads its tenant (and sees the suspension); a deleted
    // tenant's key no longer authenticates, and works again once the tenant is restored.
    server
        .tenants()
        .suspend_tenant(proto::SuspendTenantRequest {
            name: acme.name.clone(),
            reason: "unpaid".into(),
            ..Default::default()
        })
        .await
        .expect("suspend");
    let read = tenants
        .get_tenant(get(&acme.name))
        .await
        .expect("suspended");
    assert_eq!(read.into_inner().state(), proto::tenant::State::Suspended);
    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: acme.name.clone(),
            ..Default::default()
        })
        .await
        .expect("delete");
    let refused = tenants.get_tenant(get(&acme.name)).await.unwrap_err();
    assert_unauthenticated(&refused, "CREDENTIALS_INVALID");
    server
        .tenants()
        .undelete_tenant(proto::UndeleteTenantRequest {
            name: acme.name.clone(),
            ..Default::default()
        })
        .await
        .expect("undelete");
    tenants
        .get_tenant(get(&acme.name))
        .await
        .expect("restored, the key works again");

    // A revoked key no longer authenticates.
    server
        .tenants()
        .revoke_api_key(proto::RevokeApiKeyRequest {
            name: key.api_key.expect("key").name,
        })
        .await
        .expect("revoke");
    let refused = tenants.get_tenant(get(&acme.name)).await.unwrap_err();
    assert_unauthenticated(&refused, "CREDENTIALS_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_lets_every_caller_do_everything() {
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.auth.insecure = true;
        config.auth.auth_tokens.clear();
    })
    .await;
    let mut anonymous = TenantServiceClient::new(server.anonymous());
    let created = anonymous
        .create_tenant(create_request("acme"))
        .await
        .expect("no credentials needed");
    assert_eq!(created.into_inner().slug, "acme");
    server.stop().await;
}
