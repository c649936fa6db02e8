//! The purge job drops the storage of deleted tenants once their retention has run out, and
//! only then; it can be turned off.

use std::time::Duration;

use tenant_plane::proto;

use crate::on_both_dbs;
use crate::support::{Db, TestServer, create};

async fn storage_provisioned(server: &TestServer, tenant: &proto::Tenant) -> bool {
    server
        .provisioning()
        .get_provisioning_status(proto::GetProvisioningStatusRequest {
            tenant: tenant.name.clone(),
        })
        .await
        .expect("status")
        .into_inner()
        .storage_provisioned
}

async fn delete(server: &TestServer, tenant: &proto::Tenant) {
    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: tenant.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete");
}

on_both_dbs!(
    the_purge_job_drops_storage_once_retention_has_run_out,
    the_purge_job_leaves_tenants_within_retention_and_can_be_turned_off,
);

async fn the_purge_job_drops_storage_once_retention_has_run_out(db: Db) {
    let server = TestServer::start_with(db, |c| {
        c.purge_retention_days = 0;
        c.purge_interval_secs = 1;
    })
    .await;
    let doomed = create(&server, "doomed").await;
    let kept = create(&server, "kept").await;

    delete(&server, &doomed).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // The storage goes first, then the catalog records it: wait for both.
    while server.storage_exists(&doomed).await || storage_provisioned(&server, &doomed).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purge job did not run within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.storage_exists(&kept).await,
        "a live tenant is never purged"
    );
    assert!(storage_provisioned(&server, &kept).await);
    server.stop().await;
}

async fn the_purge_job_leaves_tenants_within_retention_and_can_be_turned_off(db: Db) {
    let within = TestServer::start_with(db, |c| c.purge_interval_secs = 1).await;
    let off = TestServer::start_with(db, |c| {
        c.purge_retention_days = 0;
        c.purge_interval_secs = 0;
    })
    .await;
    let young = create(&within, "young").await;
    let unattended = create(&off, "unattended").await;
    delete(&within, &young).await;
    delete(&off, &unattended).await;

    // Both servers' job would have passed at least twice by now, if it were to act.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    assert!(
        within.storage_exists(&young).await,
        "30 days of retention have not passed"
    );
    assert!(off.storage_exists(&unattended).await, "the job is off");
    within.stop().await;
    off.stop().await;
}
