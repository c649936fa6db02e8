//! The audit log of calls that change nothing: refusals record their failure and change
//! nothing else, AIP-155 retries answered from the first call record nothing more, and reads and
//! quota metering are not recorded at all.

use tenant_plane::proto::{self, member::Role};
use tonic::Code;

use crate::audit::{all_events, assert_one_event, events_of, tagged};
use crate::on_both;
use crate::plans::{exports_plan, plans, upsert};
use crate::quotas::consume;
use crate::support::{TestServer, create, new_tenant};

on_both!(
    refused_changes_record_their_failure_and_change_nothing_else,
    a_retry_answered_with_the_first_answer_records_no_second_event,
    a_call_that_changes_nothing_still_has_its_event,
    reads_and_quota_metering_are_not_recorded,
);

async fn refused_changes_record_their_failure_and_change_nothing_else(server: &TestServer) {
    let acme = create(server, "acme").await;
    let mut tenants = server.tenants();
    let renamed = tenants
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant {
                name: acme.name.clone(),
                display_name: "Acme Inc.".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect("rename")
        .into_inner();
    assert_ne!(renamed.etag, acme.etag);
    let before = server.catalog_snapshot().await;
    let events_before = all_events(server).await;

    let bad_slug = tenants
        .create_tenant(tagged(
            proto::CreateTenantRequest {
                tenant: Some(new_tenant("Not A Slug!")),
                ..Default::default()
            },
            "r-bad-input",
        ))
        .await
        .unwrap_err();
    let unknown = tenants
        .suspend_tenant(tagged(
            proto::SuspendTenantRequest {
                name: "tenants/nobody".into(),
                reason: "unpaid".into(),
                etag: String::new(),
            },
            "r-unknown",
        ))
        .await
        .unwrap_err();
    let stale = tenants
        .update_tenant(tagged(
            proto::UpdateTenantRequest {
                tenant: Some(proto::Tenant {
                    name: acme.name.clone(),
                    display_name: "Stale".into(),
                    etag: acme.etag.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            },
            "r-stale",
        ))
        .await
        .unwrap_err();
    let taken = server
        .members()
        .add_member(tagged(
            proto::AddMemberRequest {
                parent: "tenants/acme".into(),
                member: Some(proto::Member {
                    user_id: "ann@example.com".into(),
                    role: Role::Unspecified as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            "r-no-role",
        ))
        .await
        .unwrap_err();

    assert_eq!(bad_slug.code(), Code::InvalidArgument, "{bad_slug:?}");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert_eq!(taken.code(), Code::InvalidArgument, "{taken:?}");
    let by_id = format!("tenants/{}", acme.id);
    let event = assert_one_event(
        server,
        "r-bad-input",
        "TenantService/CreateTenant",
        "",
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(event.message.contains("tenant.slug"), "{event:?}");
    assert_one_event(
        server,
        "r-unknown",
        "TenantService/SuspendTenant",
        "",
        "NOT_FOUND",
    )
    .await;
    let event = assert_one_event(
        server,
        "r-stale",
        "TenantService/UpdateTenant",
        &by_id,
        "ABORTED",
    )
    .await;
    assert!(event.message.contains("etag"), "{event:?}");
    let event = assert_one_event(
        server,
        "r-no-role",
        "MembershipService/AddMember",
        "",
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(event.message.contains("member.role"), "{event:?}");

    assert_eq!(server.catalog_snapshot().await, before, "no tenant changed");
    let events_after = all_events(server).await;
    assert_eq!(
        events_after.len(),
        events_before.len() + 4,
        "only the four failures"
    );
    assert_eq!(
        events_after[4..],
        events_before[..],
        "earlier events are untouched"
    );
}

async fn a_retry_answered_with_the_first_answer_records_no_second_event(server: &TestServer) {
    let request_id = uuid::Uuid::now_v7().to_string();
    let create_request = proto::CreateTenantRequest {
        tenant: Some(new_tenant("acme")),
        request_id: request_id.clone(),
        ..Default::default()
    };
    let mut tenants = server.tenants();
    let first = tenants
        .create_tenant(tagged(create_request.clone(), "first-create"))
        .await
        .expect("create")
        .into_inner();
    let retried = tenants
        .create_tenant(tagged(create_request, "retried-create"))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.id, first.id);

    let mut plan = upsert(exports_plan(), &[]);
    plan.request_id = uuid::Uuid::now_v7().to_string();
    for id in ["first-upsert", "retried-upsert"] {
        plans(server)
            .upsert_plan(tagged(plan.clone(), id))
            .await
            .expect("upsert");
    }

    let add = proto::AddMemberRequest {
        parent: "tenants/acme".into(),
        member: Some(proto::Member {
            user_id: "ann@example.com".into(),
            role: Role::Admin as i32,
            ..Default::default()
        }),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    for id in ["first-add", "retried-add"] {
        server
            .members()
            .add_member(tagged(add.clone(), id))
            .await
            .expect("add");
    }

    let acme = format!("tenants/{}", first.id);
    assert_one_event(
        server,
        "first-create",
        "TenantService/CreateTenant",
        &acme,
        "OK",
    )
    .await;
    assert_one_event(server, "first-upsert", "PlanService/UpsertPlan", "", "OK").await;
    assert_one_event(
        server,
        "first-add",
        "MembershipService/AddMember",
        &acme,
        "OK",
    )
    .await;
    for retried in ["retried-create", "retried-upsert", "retried-add"] {
        assert_eq!(events_of(server, retried).await, [], "{retried}");
    }
}

async fn a_call_that_changes_nothing_still_has_its_event(server: &TestServer) {
    let dry_run = proto::CreateTenantRequest {
        tenant: Some(new_tenant("acme")),
        validate_only: true,
        ..Default::default()
    };
    server
        .tenants()
        .create_tenant(tagged(dry_run, "validate-only"))
        .await
        .expect("validate");
    for id in ["upsert", "same-upsert"] {
        plans(server)
            .upsert_plan(tagged(upsert(exports_plan(), &[]), id))
            .await
            .expect("upsert");
    }

    assert_eq!(server.catalog_snapshot().await, [], "no tenant was made");
    assert_one_event(
        server,
        "validate-only",
        "TenantService/CreateTenant",
        "",
        "OK",
    )
    .await;
    assert_one_event(server, "upsert", "PlanService/UpsertPlan", "", "OK").await;
    assert_one_event(server, "same-upsert", "PlanService/UpsertPlan", "", "OK").await;
}

async fn reads_and_quota_metering_are_not_recorded(server: &TestServer) {
    let acme = create(server, "acme").await;
    let mut tenants = server.tenants();
    tenants
        .get_tenant(proto::GetTenantRequest {
            name: acme.name.clone(),
        })
        .await
        .expect("get");
    tenants
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .expect("list");
    let mut quotas = server.quotas();
    quotas
        .consume_quota(consume("acme", &[("messages_per_day", 1)]))
        .await
        .expect("consume");
    quotas
        .report_usage(proto::ReportUsageRequest {
            tenant: "tenants/acme".into(),
            resource: "storage_bytes".into(),
            value: 1024,
        })
        .await
        .expect("report usage");
    quotas
        .get_usage(proto::GetUsageRequest {
            tenant: "tenants/acme".into(),
        })
        .await
        .expect("get usage");

    let events = all_events(server).await;
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["tenant.v1.TenantService/CreateTenant"]);
}
