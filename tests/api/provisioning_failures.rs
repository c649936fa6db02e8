//! A provisioning that fails part-way (its last migration creates a table, then runs invalid
//! SQL) leaves no schema, database or file behind, marks the tenant FAILED with the error kept,
//! and can be retried.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tenant_plane::proto::{self, tenant::State};
use tonic::Code;

use crate::on_both_dbs;
use crate::provisioning::{provision, status_of};
use crate::support::{
    Db, HALF_MADE, SAMPLE_MIGRATIONS, SAMPLE_TABLES, TestServer, column_of, create,
    sample_then_half_made,
};

on_both_dbs!(
    a_failed_provisioning_leaves_nothing_behind_and_can_be_retried,
    a_create_whose_provisioning_fails_returns_the_tenant_failed,
);

/// Asserts that nothing of the tenant's storage exists: no schema or file, no stray SQLite
/// journal, and no `half_made` table anywhere.
async fn assert_nothing_left(server: &TestServer, tenant: &proto::Tenant) {
    assert!(
        !server.storage_exists(tenant).await,
        "storage of {} left behind",
        tenant.slug
    );
    match server.db {
        Db::Sqlite => {
            let prefix = format!("tenant_{}", tenant.slug.replace('-', "_"));
            let left: Vec<_> = std::fs::read_dir(server.data_dir().join("tenants"))
                .into_iter()
                .flatten()
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&prefix))
                .collect();
            assert!(left.is_empty(), "files left behind: {left:?}");
        }
        Db::Postgres => {
            let catalog = server.catalog().await;
            let half_made = column_of(
                &catalog,
                "SELECT CAST(table_schema AS TEXT) AS name FROM information_schema.tables \
                 WHERE table_name IN ('half_made', 'users')",
            )
            .await;
            catalog.close().await.expect("close");
            assert!(half_made.is_empty(), "tables left in {half_made:?}");
        }
    }
}

async fn a_failed_provisioning_leaves_nothing_behind_and_can_be_retried(db: Db) {
    let fail = Arc::new(AtomicBool::new(true));
    let server = TestServer::start_with_migrations(db, sample_then_half_made(fail.clone()), |c| {
        c.tenant_auto_provision = false
    })
    .await;
    let created = create(&server, "umbrella").await;
    assert_eq!(created.state(), State::Provisioning);

    let failed = provision(&server, &created.name, false, "")
        .await
        .unwrap_err();

    assert_eq!(failed.code(), Code::FailedPrecondition, "{failed:?}");
    assert!(failed.message().contains("no_such_table"), "{failed:?}");
    assert_nothing_left(&server, &created).await;
    let status = status_of(&server, &created.name).await;
    assert!(status.last_error.contains("no_such_table"), "{status:?}");
    assert!(status.last_error_time.is_some());
    assert!(!status.storage_provisioned && !status.migrations_applied);
    assert!(status.current_version.is_empty() && status.provision_time.is_none());
    assert_eq!(status.latest_version, HALF_MADE);
    let snapshot = server.catalog_snapshot().await;
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].2, "FAILED");

    let again = provision(&server, "tenants/umbrella", false, "")
        .await
        .unwrap_err();

    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert_nothing_left(&server, &created).await;
    let status = status_of(&server, &created.name).await;
    assert!(status.last_error.contains("no_such_table"), "{status:?}");
    assert_eq!(
        server.catalog_snapshot().await[0].2,
        "FAILED",
        "still FAILED"
    );

    fail.store(false, Ordering::SeqCst);
    let fixed = provision(&server, &created.name, false, "")
        .await
        .expect("a FAILED tenant provisions once the migration works");

    assert!(fixed.changed);
    let tenant = fixed.tenant.expect("tenant");
    assert_eq!(tenant.state(), State::Active);
    assert_eq!(tenant.migration_version, HALF_MADE);
    let status = fixed.status.expect("status");
    assert!(status.last_error.is_empty() && status.last_error_time.is_none());
    assert!(status.storage_provisioned && status.migrations_applied);
    let mut tables: Vec<&str> = SAMPLE_TABLES.to_vec();
    tables.push("half_made");
    tables.sort();
    assert_eq!(server.tenant_tables(&tenant).await, tables);
    let mut versions: Vec<&str> = SAMPLE_MIGRATIONS.to_vec();
    versions.push(HALF_MADE);
    assert_eq!(server.tenant_versions(&tenant).await, versions);
    server.stop().await;
}

async fn a_create_whose_provisioning_fails_returns_the_tenant_failed(db: Db) {
    let fail = Arc::new(AtomicBool::new(true));
    let server = TestServer::start_with_migrations(db, sample_then_half_made(fail), |_| {}).await;

    let created = create(&server, "cyberdyne").await;

    assert_eq!(created.state(), State::Failed);
    assert!(created.migration_version.is_empty());
    assert_nothing_left(&server, &created).await;
    let status = status_of(&server, &created.name).await;
    assert!(status.last_error.contains("no_such_table"), "{status:?}");
    assert!(!status.storage_provisioned);
    let fetched = server
        .tenants()
        .get_tenant(proto::GetTenantRequest {
            name: created.name.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        fetched, created,
        "what CreateTenant returned is what was stored"
    );
    assert_eq!(server.catalog_snapshot().await.len(), 1);
    server.stop().await;
}
