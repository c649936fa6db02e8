//! The audit log: every call of a mutating RPC leaves exactly one event, naming its action,
//! tenant, request id, actor and outcome. Refusals and atomicity are in `audit_refusals`,
//! ListAuditEvents' filters and pages in `audit_list`.

use tenant_plane::grpc::status::code_name;
use tenant_plane::proto::{self, member::Role};
use tonic::Request;

use crate::members::add;
use crate::on_both;
use crate::plans::{exports_plan, plans, upsert};
use crate::rollout_fleet::{all, finish};
use crate::support::{ADMIN_ACTOR, TestServer, create, new_tenant};

on_both!(
    every_tenant_change_leaves_one_event_with_its_action_tenant_and_request_id,
    every_membership_change_leaves_one_event,
    plans_provisioning_migrations_and_rollouts_leave_one_event_each,
);

/// `message` sent with `x-request-id: id`.
pub fn tagged<T>(message: T, id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().expect("an ASCII request id"));
    request
}

/// Every event in the log, newest first, read page by page.
pub async fn all_events(server: &TestServer) -> Vec<proto::AuditEvent> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = server
            .audit()
            .list_audit_events(proto::ListAuditEventsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("list audit events")
            .into_inner();
        events.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// The events of the calls sent with `x-request-id: id`.
pub async fn events_of(server: &TestServer, id: &str) -> Vec<proto::AuditEvent> {
    all_events(server)
        .await
        .into_iter()
        .filter(|e| e.request_id == id)
        .collect()
}

/// Asserts the call sent with `x-request-id: id` left exactly one event, of `action` (the
/// method, after "tenant.v1."), on `tenant` (a resource name, or empty), ending with `outcome`.
pub async fn assert_one_event(
    server: &TestServer,
    id: &str,
    action: &str,
    tenant: &str,
    outcome: &str,
) -> proto::AuditEvent {
    let events = events_of(server, id).await;
    assert_eq!(events.len(), 1, "events of {id}: {events:#?}");
    let event = events.into_iter().next().expect("one event");
    assert_eq!(event.action, format!("tenant.v1.{action}"), "{event:#?}");
    assert_eq!(event.tenant, tenant, "{event:#?}");
    assert_eq!(event.outcome, outcome, "{event:#?}");
    assert_eq!(event.actor, ADMIN_ACTOR, "{event:#?}");
    assert!(event.name.starts_with("auditEvents/"), "{event:#?}");
    assert!(event.time.is_some(), "{event:#?}");
    if outcome == "OK" {
        assert!(event.message.is_empty(), "{event:#?}");
    } else {
        assert!(!event.message.is_empty(), "{event:#?}");
    }
    event
}

/// The resource name by id of a tenant, as events name it.
fn by_id(tenant: &proto::Tenant) -> String {
    format!("tenants/{}", tenant.id)
}

async fn every_tenant_change_leaves_one_event_with_its_action_tenant_and_request_id(
    server: &TestServer,
) {
    let mut tenants = server.tenants();
    let acme = tenants
        .create_tenant(tagged(
            proto::CreateTenantRequest {
                tenant: Some(new_tenant("acme")),
                ..Default::default()
            },
            "t-create",
        ))
        .await
        .expect("create")
        .into_inner();
    let name = by_id(&acme);
    tenants
        .update_tenant(tagged(
            proto::UpdateTenantRequest {
                tenant: Some(proto::Tenant {
                    name: acme.name.clone(),
                    display_name: "Acme Inc.".into(),
                    ..Default::default()
                }),
                update_mask: None,
            },
            "t-update",
        ))
        .await
        .expect("update");
    let suspend = proto::SuspendTenantRequest {
        name: "tenants/acme".into(),
        reason: "unpaid".into(),
        etag: String::new(),
    };
    tenants
        .suspend_tenant(tagged(suspend, "t-suspend"))
        .await
        .expect("suspend");
    let resume = proto::ResumeTenantRequest {
        name: "tenants/acme".into(),
        etag: String::new(),
    };
    tenants
        .resume_tenant(tagged(resume, "t-resume"))
        .await
        .expect("resume");
    let key = tenants
        .create_api_key(tagged(
            proto::CreateApiKeyRequest {
                parent: "tenants/acme".into(),
                api_key: None,
            },
            "t-create-key",
        ))
        .await
        .expect("create a key")
        .into_inner();
    let revoke = proto::RevokeApiKeyRequest {
        name: key.api_key.expect("a key").name,
    };
    tenants
        .revoke_api_key(tagged(revoke, "t-revoke-key"))
        .await
        .expect("revoke the key");
    let rotate = proto::RotateTenantCredentialsRequest {
        name: "tenants/acme".into(),
    };
    let rotated = tenants
        .rotate_tenant_credentials(tagged(rotate, "t-rotate"))
        .await;
    let delete = proto::DeleteTenantRequest {
        name: "tenants/acme".into(),
        etag: String::new(),
    };
    tenants
        .delete_tenant(tagged(delete, "t-delete"))
        .await
        .expect("delete");
    let undelete = proto::UndeleteTenantRequest {
        name: "tenants/acme".into(),
        etag: String::new(),
    };
    tenants
        .undelete_tenant(tagged(undelete, "t-undelete"))
        .await
        .expect("undelete");

    let cases = [
        ("t-create", "TenantService/CreateTenant"),
        ("t-update", "TenantService/UpdateTenant"),
        ("t-suspend", "TenantService/SuspendTenant"),
        ("t-resume", "TenantService/ResumeTenant"),
        ("t-create-key", "TenantService/CreateApiKey"),
        ("t-revoke-key", "TenantService/RevokeApiKey"),
        ("t-delete", "TenantService/DeleteTenant"),
        ("t-undelete", "TenantService/UndeleteTenant"),
    ];
    for (id, action) in cases {
        assert_one_event(server, id, action, &name, "OK").await;
    }
    // Rotation needs tenant database roles, which an SQLite catalog has not: either way the call
    // has its one event, with its outcome.
    let outcome = match &rotated {
        Ok(_) => "OK",
        Err(status) => code_name(status.code()),
    };
    let event = events_of(server, "t-rotate").await;
    assert_eq!(event.len(), 1, "{event:#?}");
    assert_eq!(
        (event[0].action.as_str(), event[0].outcome.as_str()),
        ("tenant.v1.TenantService/RotateTenantCredentials", outcome)
    );
    // Nothing but these calls was recorded: reads and the listing itself are not.
    assert_eq!(all_events(server).await.len(), cases.len() + 1);
}

async fn every_membership_change_leaves_one_event(server: &TestServer) {
    let acme = create(server, "acme").await;
    let name = by_id(&acme);
    let mut members = server.members();
    let member = proto::Member {
        user_id: "ann@example.com".into(),
        role: Role::Admin as i32,
        ..Default::default()
    };
    members
        .add_member(tagged(
            proto::AddMemberRequest {
                parent: "tenants/acme".into(),
                member: Some(member),
                request_id: String::new(),
            },
            "m-add",
        ))
        .await
        .expect("add");
    let update = proto::UpdateMemberRequest {
        member: Some(proto::Member {
            name: "tenants/acme/members/ann@example.com".into(),
            role: Role::Member as i32,
            ..Default::default()
        }),
        update_mask: None,
    };
    members
        .update_member(tagged(update, "m-update"))
        .await
        .expect("update");
    let remove = proto::RemoveMemberRequest {
        name: "tenants/acme/members/ann@example.com".into(),
        etag: String::new(),
    };
    members
        .remove_member(tagged(remove, "m-remove"))
        .await
        .expect("remove");

    for (id, action) in [
        ("m-add", "MembershipService/AddMember"),
        ("m-update", "MembershipService/UpdateMember"),
        ("m-remove", "MembershipService/RemoveMember"),
    ] {
        assert_one_event(server, id, action, &name, "OK").await;
    }
    // The helper's calls carry no x-request-id of ours, but are recorded all the same.
    add(server, "acme", "bob@example.com", Role::Member)
        .await
        .expect("add bob");
    assert_eq!(
        all_events(server).await.len(),
        5,
        "create, three changes, add"
    );
}

async fn plans_provisioning_migrations_and_rollouts_leave_one_event_each(server: &TestServer) {
    plans(server)
        .upsert_plan(tagged(upsert(exports_plan(), &[]), "p-upsert"))
        .await
        .expect("upsert");
    assert_one_event(server, "p-upsert", "PlanService/UpsertPlan", "", "OK").await;

    let acme = create(server, "acme").await;
    let name = by_id(&acme);
    let provision = proto::ProvisionTenantRequest {
        tenant: acme.name.clone(),
        ..Default::default()
    };
    server
        .provisioning()
        .provision_tenant(tagged(provision, "p-provision"))
        .await
        .expect("provision");
    let migrate = proto::MigrateTenantRequest {
        tenant: acme.name.clone(),
        direction: proto::MigrationDirection::Down as i32,
        ..Default::default()
    };
    server
        .migrations()
        .migrate_tenant(tagged(migrate, "p-migrate"))
        .await
        .expect("migrate one step down");
    let start = proto::StartRolloutRequest {
        selector: all(),
        ..Default::default()
    };
    let rollout = server
        .migrations()
        .start_rollout(tagged(start, "p-rollout"))
        .await
        .expect("start a rollout")
        .into_inner();
    finish(server, &rollout).await;
    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: acme.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete");
    let deprovision = proto::DeprovisionTenantRequest {
        tenant: acme.name.clone(),
        confirm_slug: "acme".into(),
        ..Default::default()
    };
    server
        .provisioning()
        .deprovision_tenant(tagged(deprovision, "p-deprovision"))
        .await
        .expect("deprovision");

    for (id, action) in [
        ("p-provision", "ProvisioningService/ProvisionTenant"),
        ("p-migrate", "MigrationService/MigrateTenant"),
        ("p-deprovision", "ProvisioningService/DeprovisionTenant"),
    ] {
        assert_one_event(server, id, action, &name, "OK").await;
    }
    // A rollout concerns a selection of tenants, not one.
    assert_one_event(
        server,
        "p-rollout",
        "MigrationService/StartRollout",
        "",
        "OK",
    )
    .await;
}
