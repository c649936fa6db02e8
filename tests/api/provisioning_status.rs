//! GetProvisioningStatus: what it reports for a provisioned tenant and one behind on its
//! migrations, and how it refuses malformed or unknown tenant names.

use tenant_plane::proto;
use tonic::Code;

use crate::on_both;
use crate::provisioning::status_of;
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, assert_bad_field, create};

on_both!(get_provisioning_status_reports_storage_versions_and_location);

const LATEST: &str = SAMPLE_MIGRATIONS[4];

async fn get_provisioning_status_reports_storage_versions_and_location(server: &TestServer) {
    let created = create(server, "stark").await;

    let by_id = status_of(server, &created.name).await;
    let by_slug = status_of(server, "tenants/stark").await;

    assert_eq!(by_id, by_slug);
    assert_eq!(
        by_slug.tenant,
        format!("tenants/{}", created.id),
        "the id form"
    );
    assert!(by_id.storage_provisioned && by_id.migrations_applied);
    assert_eq!(by_id.current_version, LATEST);
    assert_eq!(by_id.latest_version, LATEST);
    assert!(by_id.last_error.is_empty() && by_id.last_error_time.is_none());
    assert!(by_id.provision_time.is_some());
    let location = by_id.location.expect("location");
    assert_eq!(location.isolation, created.isolation);
    assert_eq!(location.schema_name, created.schema_name);
    assert_eq!(location.database_name, created.database_name);
    match server.db {
        Db::Postgres => assert_eq!(location.schema_name, "tenant_stark"),
        Db::Sqlite => assert_eq!(location.database_name, "tenant_stark.sqlite3"),
    }

    server
        .migrations()
        .migrate_tenant(proto::MigrateTenantRequest {
            tenant: created.name.clone(),
            direction: proto::MigrationDirection::Down.into(),
            ..Default::default()
        })
        .await
        .expect("down one step");
    let behind = status_of(server, &created.name).await;
    assert!(behind.storage_provisioned && !behind.migrations_applied);
    assert_eq!(behind.current_version, SAMPLE_MIGRATIONS[3]);
    assert_eq!(behind.latest_version, LATEST);

    let before = server.catalog_snapshot().await;
    let mut client = server.provisioning();
    for bad in [
        "",
        "stark",
        "tenants/",
        "tenants/Stark",
        "projects/stark",
        "tenants/stark/x",
    ] {
        let refused = client
            .get_provisioning_status(proto::GetProvisioningStatusRequest { tenant: bad.into() })
            .await
            .unwrap_err();
        assert_bad_field(&refused, "tenant");
    }
    for unknown in [
        "tenants/wayne".to_owned(),
        format!("tenants/{}", uuid::Uuid::now_v7()),
    ] {
        let missing = client
            .get_provisioning_status(proto::GetProvisioningStatusRequest { tenant: unknown })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    }
    assert_eq!(server.catalog_snapshot().await, before);
}
