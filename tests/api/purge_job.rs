//! The purge job drops the storage of deleted tenants once their retention has run out, and
//! only then; it can be turned off. Time passes by moving the servers' clocks.

use chrono::TimeDelta;
use tenant_plane::proto;
use tenant_plane::service::Job;

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
        c.purge_retention_days = 1;
        c.purge_interval_secs = 60;
    })
    .await;
    let doomed = create(&server, "doomed").await;
    let kept = create(&server, "kept").await;
    delete(&server, &doomed).await;

    // A day and a pass later by the server's clock.
    server
        .advance_and_pass(TimeDelta::days(1) + TimeDelta::minutes(1), Job::Purge)
        .await;

    assert!(
        !server.storage_exists(&doomed).await,
        "the storage is dropped"
    );
    assert!(
        !storage_provisioned(&server, &doomed).await,
        "and the catalog says so"
    );
    assert!(
        server.storage_exists(&kept).await,
        "a live tenant is never purged"
    );
    assert!(storage_provisioned(&server, &kept).await);
    server.stop().await;
}

async fn the_purge_job_leaves_tenants_within_retention_and_can_be_turned_off(db: Db) {
    let within = TestServer::start_with(db, |c| c.purge_interval_secs = 60).await;
    let off = TestServer::start_with(db, |c| {
        c.purge_retention_days = 0;
        c.purge_interval_secs = 0;
    })
    .await;
    let young = create(&within, "young").await;
    let unattended = create(&off, "unattended").await;
    delete(&within, &young).await;
    delete(&off, &unattended).await;

    // 29 days and a pass later (of the default 30 days' retention) on one server; on the
    // other, whose job is off, the clock moves on as far and no pass ever runs.
    within
        .advance_and_pass(TimeDelta::days(29), Job::Purge)
        .await;
    off.clock.advance(TimeDelta::days(29));

    assert!(
        within.storage_exists(&young).await,
        "30 days of retention have not passed"
    );
    assert_eq!(off.passes.last(Job::Purge), None, "the job is off");
    assert!(off.storage_exists(&unattended).await, "the job is off");
    within.stop().await;
    off.stop().await;
}
