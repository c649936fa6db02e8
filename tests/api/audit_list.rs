//! AuditService.ListAuditEvents: filters by tenant, actor, action and time range, pages newest
//! first, and refuses every bad field with INVALID_ARGUMENT naming it.

use prost_types::Timestamp;
use tenant_plane::proto::{self, ListAuditEventsRequest};
use tonic::Code;

use crate::audit::{all_events, tagged};
use crate::on_both;
use crate::plans::{exports_plan, plans, upsert};
use crate::support::{ADMIN_ACTOR, TestServer, assert_bad_field, create};

on_both!(
    list_filters_by_tenant_actor_action_and_time_range,
    list_pages_newest_first_until_an_empty_token,
    list_refuses_each_bad_field_and_changes_nothing,
);

/// The request ids of the events one page of `request` returns, in order.
async fn ids(server: &TestServer, request: ListAuditEventsRequest) -> Vec<String> {
    server
        .audit()
        .list_audit_events(request)
        .await
        .expect("list")
        .into_inner()
        .audit_events
        .into_iter()
        .map(|e| e.request_id)
        .collect()
}

async fn list_filters_by_tenant_actor_action_and_time_range(server: &TestServer) {
    let mut tenants = server.tenants();
    let mut acme = None;
    for (slug, id) in [("acme", "create-acme"), ("beta", "create-beta")] {
        let created = tenants
            .create_tenant(tagged(
                proto::CreateTenantRequest {
                    tenant: Some(crate::support::new_tenant(slug)),
                    ..Default::default()
                },
                id,
            ))
            .await
            .expect("create")
            .into_inner();
        acme.get_or_insert(created);
    }
    let acme = acme.expect("acme");
    let suspend = proto::SuspendTenantRequest {
        name: "tenants/acme".into(),
        reason: "unpaid".into(),
        etag: String::new(),
    };
    tenants
        .suspend_tenant(tagged(suspend, "suspend-acme"))
        .await
        .expect("suspend");
    plans(server)
        .upsert_plan(tagged(upsert(exports_plan(), &[]), "upsert-plan"))
        .await
        .expect("upsert");
    let events = all_events(server).await;
    let order: Vec<_> = events.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(
        order,
        ["upsert-plan", "suspend-acme", "create-beta", "create-acme"]
    );
    let suspended_at = events[1].time;

    let by_id = format!("tenants/{}", acme.id);
    for tenant in [by_id.as_str(), "tenants/acme"] {
        let request = ListAuditEventsRequest {
            tenant: tenant.into(),
            ..Default::default()
        };
        assert_eq!(ids(server, request).await, ["suspend-acme", "create-acme"]);
    }
    let creates = ListAuditEventsRequest {
        action: "tenant.v1.TenantService/CreateTenant".into(),
        ..Default::default()
    };
    assert_eq!(ids(server, creates).await, ["create-beta", "create-acme"]);
    let both = ListAuditEventsRequest {
        tenant: by_id.clone(),
        action: "tenant.v1.TenantService/SuspendTenant".into(),
        ..Default::default()
    };
    assert_eq!(ids(server, both).await, ["suspend-acme"]);
    let mine = ListAuditEventsRequest {
        actor: ADMIN_ACTOR.into(),
        ..Default::default()
    };
    assert_eq!(ids(server, mine).await, order);
    let nobody = ListAuditEventsRequest {
        actor: "admin:nobody".into(),
        ..Default::default()
    };
    assert_eq!(ids(server, nobody).await, Vec::<String>::new());
    // Half-open: the start is in, the end is out.
    let from = ListAuditEventsRequest {
        start_time: suspended_at,
        ..Default::default()
    };
    assert_eq!(ids(server, from).await, ["upsert-plan", "suspend-acme"]);
    let until = ListAuditEventsRequest {
        end_time: suspended_at,
        ..Default::default()
    };
    assert_eq!(ids(server, until).await, ["create-beta", "create-acme"]);
    let just_then = ListAuditEventsRequest {
        start_time: suspended_at,
        end_time: suspended_at.map(|t| {
            let nanos = t.nanos + 1_000;
            Timestamp {
                seconds: t.seconds + i64::from(nanos / 1_000_000_000),
                nanos: nanos % 1_000_000_000,
            }
        }),
        ..Default::default()
    };
    assert_eq!(ids(server, just_then).await, ["suspend-acme"]);
}

async fn list_pages_newest_first_until_an_empty_token(server: &TestServer) {
    for i in 0..5 {
        create(server, &format!("tenant-{i}")).await;
    }
    let everything = all_events(server).await;
    assert_eq!(everything.len(), 5);
    let times: Vec<_> = everything
        .iter()
        .map(|e| e.time.map(|t| (t.seconds, t.nanos)))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = server
            .audit()
            .list_audit_events(ListAuditEventsRequest {
                action: "tenant.v1.TenantService/CreateTenant".into(),
                page_size: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("a page")
            .into_inner();
        sizes.push(page.audit_events.len());
        seen.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(seen, everything);
}

async fn list_refuses_each_bad_field_and_changes_nothing(server: &TestServer) {
    for slug in ["acme", "beta"] {
        create(server, slug).await;
    }
    let foreign = server
        .tenants()
        .list_tenants(proto::ListTenantsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list tenants")
        .into_inner()
        .next_page_token;
    let other_query = server
        .audit()
        .list_audit_events(ListAuditEventsRequest {
            action: "tenant.v1.TenantService/CreateTenant".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .next_page_token;
    assert!(!foreign.is_empty() && !other_query.is_empty());
    let before = (server.catalog_snapshot().await, all_events(server).await);
    let at = |seconds| Some(Timestamp { seconds, nanos: 0 });
    let cases = [
        (
            ListAuditEventsRequest {
                tenant: "acme".into(),
                ..Default::default()
            },
            "tenant",
        ),
        (
            ListAuditEventsRequest {
                tenant: "tenants/Not A Slug".into(),
                ..Default::default()
            },
            "tenant",
        ),
        (
            ListAuditEventsRequest {
                actor: "a".repeat(300),
                ..Default::default()
            },
            "actor",
        ),
        (
            ListAuditEventsRequest {
                action: "tenant.v1.TenantService/GetTenant".into(),
                ..Default::default()
            },
            "action",
        ),
        (
            ListAuditEventsRequest {
                start_time: Some(Timestamp {
                    seconds: 1,
                    nanos: -1,
                }),
                ..Default::default()
            },
            "start_time",
        ),
        (
            ListAuditEventsRequest {
                start_time: at(2_000_000_000),
                end_time: at(1_000_000_000),
                ..Default::default()
            },
            "end_time",
        ),
        (
            ListAuditEventsRequest {
                start_time: at(1_000_000_000),
                end_time: at(1_000_000_000),
                ..Default::default()
            },
            "end_time",
        ),
        (
            ListAuditEventsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListAuditEventsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListAuditEventsRequest {
                page_token: foreign,
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListAuditEventsRequest {
                page_token: other_query,
                ..Default::default()
            },
            "page_token",
        ),
    ];
    for (request, field) in cases {
        let status = server
            .audit()
            .list_audit_events(request.clone())
            .await
            .expect_err(field);
        assert_bad_field(&status, field);
    }
    let unknown = server
        .audit()
        .list_audit_events(ListAuditEventsRequest {
            tenant: "tenants/nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let after = (server.catalog_snapshot().await, all_events(server).await);
    assert_eq!(after, before);
}
