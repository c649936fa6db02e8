//! Changes a tenant's state does not allow, or that race another writer, are refused with the
//! right code and change nothing.

use prost_types::FieldMask;
use tenant_plane::proto;
use tonic::Code;

use crate::on_both;
use crate::support::{TestServer, assert_bad_field, create};

on_both!(
    update_tenant_refuses_output_only_and_immutable_fields,
    update_tenant_with_a_stale_etag_is_aborted,
    undelete_of_a_live_tenant_says_it_already_exists,
    suspend_of_a_deleted_tenant_is_a_failed_precondition,
);

async fn update_tenant_refuses_output_only_and_immutable_fields(server: &TestServer) {
    let created = create(server, "acme").await;
    let before = server.catalog_snapshot().await;
    let mut client = server.tenants();
    for path in [
        "state",
        "schema_name",
        "create_time",
        "etag",
        "slug",
        "isolation",
        "no_such_field",
    ] {
        let change = proto::Tenant {
            name: created.name.clone(),
            slug: "evil".into(),
            ..Default::default()
        };
        let status = client
            .update_tenant(proto::UpdateTenantRequest {
                tenant: Some(change),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into(), path.into()],
                }),
            })
            .await
            .expect_err(path);
        assert_bad_field(&status, "update_mask");
        assert!(
            status.message().contains(path),
            "{path}: {}",
            status.message()
        );
    }
    let unknown_plan = proto::Tenant {
        name: created.name.clone(),
        plan: "platinum".into(),
        ..Default::default()
    };
    let status = client
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(unknown_plan),
            update_mask: Some(FieldMask {
                paths: vec!["plan".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_bad_field(&status, "tenant.plan");
    for (resource, limit) in [("Bad Resource", 1), ("widgets", 1), ("users", -5)] {
        let mut bad_override = proto::Tenant {
            name: created.name.clone(),
            ..Default::default()
        };
        bad_override.limit_overrides.insert(resource.into(), limit);
        let status = client
            .update_tenant(proto::UpdateTenantRequest {
                tenant: Some(bad_override),
                update_mask: Some(FieldMask {
                    paths: vec!["limit_overrides".into()],
                }),
            })
            .await
            .unwrap_err();
        assert_bad_field(&status, &format!("tenant.limit_overrides[{resource}]"));
    }
    assert_eq!(server.catalog_snapshot().await, before, "nothing changed");
}

async fn update_tenant_with_a_stale_etag_is_aborted(server: &TestServer) {
    let created = create(server, "acme").await;
    let mut client = server.tenants();
    let rename = |name: &str, etag: &str| proto::UpdateTenantRequest {
        tenant: Some(proto::Tenant {
            name: created.name.clone(),
            display_name: name.into(),
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    client
        .update_tenant(rename("First", &created.etag))
        .await
        .expect("first write wins");
    let before = server.catalog_snapshot().await;

    let stale = client
        .update_tenant(rename("Second", &created.etag))
        .await
        .unwrap_err();

    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(server.catalog_snapshot().await, before);
    let stale_delete = client
        .delete_tenant(proto::DeleteTenantRequest {
            name: created.name.clone(),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale_delete.code(), Code::Aborted);
    let forged = client
        .update_tenant(rename("Third", "W/\"whatever\""))
        .await
        .unwrap_err();
    assert_bad_field(&forged, "tenant.etag");
    assert_eq!(server.catalog_snapshot().await, before);
}

async fn undelete_of_a_live_tenant_says_it_already_exists(server: &TestServer) {
    let created = create(server, "acme").await;
    let before = server.catalog_snapshot().await;
    let status = server
        .tenants()
        .undelete_tenant(proto::UndeleteTenantRequest {
            name: created.name,
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(server.catalog_snapshot().await, before);
}

async fn suspend_of_a_deleted_tenant_is_a_failed_precondition(server: &TestServer) {
    let created = create(server, "acme").await;
    let mut client = server.tenants();
    client
        .delete_tenant(proto::DeleteTenantRequest {
            name: created.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete");
    let before = server.catalog_snapshot().await;

    let status = client
        .suspend_tenant(proto::SuspendTenantRequest {
            name: created.name.clone(),
            reason: "x".into(),
            etag: String::new(),
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition);
    let details = tonic_types::StatusExt::get_details_precondition_failure(&status)
        .expect("PreconditionFailure");
    assert_eq!(details.violations[0].subject, created.name);
    let no_reason = client
        .suspend_tenant(proto::SuspendTenantRequest {
            name: created.name.clone(),
            reason: " ".into(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_bad_field(&no_reason, "reason");
    let update = client
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant {
                name: created.name.clone(),
                display_name: "x".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(update.code(), Code::FailedPrecondition);
    assert_eq!(server.catalog_snapshot().await, before);
}
