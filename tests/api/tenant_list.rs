//! ListTenants: stable order, pages, filters and tokens bound to their query.

use prost_types::FieldMask;
use tenant_plane::proto::{self, tenant::State};

use crate::on_both;
use crate::support::{TestServer, assert_bad_field, create};

on_both!(
    list_tenants_pages_through_every_tenant_once_in_creation_order,
    list_tenants_filters_by_state_plan_and_labels,
    list_tenants_refuses_negative_page_sizes_and_forged_or_mismatched_tokens,
);

async fn list_all(
    server: &TestServer,
    mut request: proto::ListTenantsRequest,
) -> (Vec<String>, usize) {
    let mut client = server.tenants();
    let mut slugs = Vec::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_tenants(request.clone())
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        slugs.extend(page.tenants.into_iter().map(|t| t.slug));
        if page.next_page_token.is_empty() {
            return (slugs, pages);
        }
        request.page_token = page.next_page_token;
    }
}

async fn list_tenants_pages_through_every_tenant_once_in_creation_order(server: &TestServer) {
    let expected: Vec<String> = (0..7).map(|i| format!("t{i}")).collect();
    for slug in &expected {
        create(server, slug).await;
    }

    let (slugs, pages) = list_all(
        server,
        proto::ListTenantsRequest {
            page_size: 3,
            ..Default::default()
        },
    )
    .await;

    assert_eq!(slugs, expected);
    assert_eq!(pages, 3);
    let (exact, exact_pages) = list_all(
        server,
        proto::ListTenantsRequest {
            page_size: 7,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((exact.len(), exact_pages), (7, 1), "no empty trailing page");
    let (all, _) = list_all(
        server,
        proto::ListTenantsRequest {
            page_size: 5000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        all, expected,
        "an oversized page size is lowered, not refused"
    );
}

async fn list_tenants_filters_by_state_plan_and_labels(server: &TestServer) {
    let mut client = server.tenants();
    let label = |slug: &str, tier: &str, plan: &str| {
        let mut tenant = proto::Tenant {
            name: format!("tenants/{slug}"),
            plan: plan.to_owned(),
            ..Default::default()
        };
        tenant.labels.insert("tier".into(), tier.into());
        tenant.labels.insert("region".into(), "eu".into());
        proto::UpdateTenantRequest {
            tenant: Some(tenant),
            update_mask: Some(FieldMask {
                paths: vec!["labels".into(), "plan".into()],
            }),
        }
    };
    for slug in ["gold-a", "gold-b", "silver", "gone"] {
        create(server, slug).await;
    }
    client
        .update_tenant(label("gold-a", "gold", "pro"))
        .await
        .expect("label");
    client
        .update_tenant(label("gold-b", "gold", "free"))
        .await
        .expect("label");
    client
        .update_tenant(label("silver", "silver", "pro"))
        .await
        .expect("label");
    client
        .suspend_tenant(proto::SuspendTenantRequest {
            name: "tenants/gold-b".into(),
            reason: "r".into(),
            etag: String::new(),
        })
        .await
        .expect("suspend");
    client
        .delete_tenant(proto::DeleteTenantRequest {
            name: "tenants/gone".into(),
            etag: String::new(),
        })
        .await
        .expect("delete");

    let mut gold = proto::ListTenantsRequest::default();
    gold.labels.insert("tier".into(), "gold".into());
    gold.labels.insert("region".into(), "eu".into());
    assert_eq!(list_all(server, gold).await.0, ["gold-a", "gold-b"]);
    let pro = proto::ListTenantsRequest {
        plan: "pro".into(),
        ..Default::default()
    };
    assert_eq!(list_all(server, pro).await.0, ["gold-a", "silver"]);
    let suspended = proto::ListTenantsRequest {
        states: vec![State::Suspended as i32],
        ..Default::default()
    };
    assert_eq!(list_all(server, suspended).await.0, ["gold-b"]);
    assert_eq!(
        list_all(server, proto::ListTenantsRequest::default())
            .await
            .0,
        ["gold-a", "gold-b", "silver"]
    );
    let with_deleted = proto::ListTenantsRequest {
        show_deleted: true,
        ..Default::default()
    };
    assert_eq!(
        list_all(server, with_deleted).await.0,
        ["gold-a", "gold-b", "silver", "gone"]
    );
    let deleted_only = proto::ListTenantsRequest {
        states: vec![State::Deleted as i32],
        show_deleted: true,
        ..Default::default()
    };
    assert_eq!(list_all(server, deleted_only).await.0, ["gone"]);
    let mut hostile = proto::ListTenantsRequest::default();
    hostile
        .labels
        .insert("tier".into(), "gold' OR '1'='1".into());
    let status = client.list_tenants(hostile).await.unwrap_err();
    assert_bad_field(&status, "labels[tier]");
}

async fn list_tenants_refuses_negative_page_sizes_and_forged_or_mismatched_tokens(
    server: &TestServer,
) {
    for slug in ["a1", "a2", "a3"] {
        create(server, slug).await;
    }
    let mut client = server.tenants();

    let negative = client
        .list_tenants(proto::ListTenantsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&negative, "page_size");

    let forged = client
        .list_tenants(proto::ListTenantsRequest {
            page_token: "eyJhIjoiMSJ9".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&forged, "page_token");

    let first = client
        .list_tenants(proto::ListTenantsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let mismatched = client
        .list_tenants(proto::ListTenantsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            plan: "pro".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&mismatched, "page_token");

    let unknown_state = client
        .list_tenants(proto::ListTenantsRequest {
            states: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&unknown_state, "states[0]");
}
