//! MigrateTenant when it cannot or must not run: a migration failing part-way, bad input,
//! tenants without storage or deleted, and what the contract refuses or replays.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tenant_plane::proto::{self, MigrationDirection, tenant::State};
use tonic::Code;

use crate::migrations::{catalog_version, migrate, migration_status};
use crate::provisioning::{provision, status_of};
use crate::support::{
    Db, HALF_MADE, SAMPLE_MIGRATIONS, SAMPLE_TABLES, TestServer, assert_bad_field, create,
    sample_then_half_made,
};
use crate::{on_both, on_both_dbs};

on_both_dbs!(
    a_failing_migration_leaves_the_tenant_exactly_at_its_previous_version,
    migrate_tenant_refuses_bad_input_and_tenants_without_live_storage,
);
on_both!(
    down_to_a_version_not_applied_is_refused,
    down_one_step_never_reverts_the_last_migration,
    a_retried_down_with_the_same_request_id_reverts_only_once,
);

const LATEST: &str = SAMPLE_MIGRATIONS[4];

async fn a_failing_migration_leaves_the_tenant_exactly_at_its_previous_version(db: Db) {
    let fail = Arc::new(AtomicBool::new(false));
    let server =
        TestServer::start_with_migrations(db, sample_then_half_made(fail.clone()), |_| {}).await;
    let tenant = create(&server, "delta").await;
    assert_eq!(
        tenant.migration_version, HALF_MADE,
        "provisioned while it still works"
    );
    let down = migrate(&server, &tenant.name, "", MigrationDirection::Down)
        .await
        .expect("down one step");
    assert_eq!(down.applied, [HALF_MADE]);
    fail.store(true, Ordering::SeqCst);
    let before = server.catalog_snapshot().await;
    assert_eq!(server.tenant_versions(&tenant).await, SAMPLE_MIGRATIONS);
    assert_eq!(server.tenant_tables(&tenant).await, SAMPLE_TABLES);

    let failed = migrate(&server, &tenant.name, "", MigrationDirection::Up)
        .await
        .unwrap_err();
    let to_target = migrate(&server, &tenant.name, HALF_MADE, MigrationDirection::Up)
        .await
        .unwrap_err();

    for refused in [&failed, &to_target] {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("no_such_table"), "{refused:?}");
    }
    assert_eq!(
        server.tenant_versions(&tenant).await,
        SAMPLE_MIGRATIONS,
        "version table"
    );
    assert_eq!(
        server.tenant_tables(&tenant).await,
        SAMPLE_TABLES,
        "no half_made table"
    );
    let status = migration_status(&server, &tenant.name).await;
    assert_eq!(status.current_version, LATEST);
    assert_eq!(status.pending, [HALF_MADE]);
    assert!(status.last_error.contains("no_such_table"), "{status:?}");
    let provisioning = status_of(&server, &tenant.name).await;
    assert_eq!(provisioning.last_error, status.last_error);
    assert!(provisioning.last_error_time.is_some());
    assert!(provisioning.storage_provisioned && !provisioning.migrations_applied);
    assert_eq!(catalog_version(&server, &tenant.name).await, LATEST);
    let after = server.catalog_snapshot().await;
    let unchanged = |s: &[(String, String, String, i64)]| -> Vec<(String, String, String)> {
        s.iter()
            .map(|(id, slug, state, _)| (id.clone(), slug.clone(), state.clone()))
            .collect()
    };
    assert_eq!(unchanged(&after), unchanged(&before), "still ACTIVE");

    fail.store(false, Ordering::SeqCst);
    let fixed = migrate(&server, &tenant.name, "", MigrationDirection::Up)
        .await
        .expect("once the migration works");
    assert_eq!(fixed.applied, [HALF_MADE]);
    assert!(
        migration_status(&server, &tenant.name)
            .await
            .last_error
            .is_empty()
    );
    assert_eq!(catalog_version(&server, &tenant.name).await, HALF_MADE);
    server.stop().await;
}

async fn migrate_tenant_refuses_bad_input_and_tenants_without_live_storage(db: Db) {
    let server = TestServer::start_with(db, |c| c.tenant_auto_provision = false).await;
    let waiting = create(&server, "waiting").await;
    let ready = create(&server, "ready").await;
    provision(&server, &ready.name, false, "")
        .await
        .expect("provision ready");
    let before = server.catalog_snapshot().await;
    let mut client = server.migrations();
    let request = |tenant: &str, target: &str, direction: i32, request_id: &str| {
        proto::MigrateTenantRequest {
            component: Default::default(),
            tenant: tenant.to_owned(),
            target_version: target.to_owned(),
            direction,
            request_id: request_id.to_owned(),
        }
    };
    let (up, down) = (
        MigrationDirection::Up as i32,
        MigrationDirection::Down as i32,
    );

    let invalid = [
        (request(&ready.name, "m1", up, ""), "target_version"),
        (
            request(&ready.name, "m20261123_100009_nope", down, ""),
            "target_version",
        ),
        (request(&ready.name, "", 7, ""), "direction"),
        (request(&ready.name, "", -1, ""), "direction"),
        (request(&ready.name, "", up, "x"), "request_id"),
        (request("", "", up, ""), "tenant"),
        (request("ready", "", up, ""), "tenant"),
        (request("tenants/Ready", "", up, ""), "tenant"),
    ];
    for (bad, field) in invalid {
        let refused = client.migrate_tenant(bad.clone()).await.unwrap_err();
        assert_bad_field(&refused, field);
        assert_eq!(server.catalog_snapshot().await, before, "{bad:?}");
    }
    let unknown = client
        .migrate_tenant(request("tenants/nobody", "", down, ""))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    for direction in [up, down] {
        let unprovisioned = client
            .migrate_tenant(request(&waiting.name, "", direction, ""))
            .await
            .unwrap_err();
        assert_eq!(
            unprovisioned.code(),
            Code::FailedPrecondition,
            "{unprovisioned:?}"
        );
    }
    let no_status = client
        .get_migration_status(proto::GetMigrationStatusRequest {
            component: Default::default(),
            tenant: waiting.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_status.code(), Code::FailedPrecondition, "{no_status:?}");
    assert_eq!(server.catalog_snapshot().await, before, "nothing changed");
    assert!(!server.storage_exists(&waiting).await);

    let deleted = server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: ready.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.state(), State::Deleted);
    let deleted_snapshot = server.catalog_snapshot().await;
    for (target, direction) in [("", up), ("", down), (SAMPLE_MIGRATIONS[0], down)] {
        let refused = client
            .migrate_tenant(request(&ready.name, target, direction, ""))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
    assert_eq!(
        server.catalog_snapshot().await,
        deleted_snapshot,
        "nothing changed"
    );
    assert_eq!(server.tenant_versions(&ready).await, SAMPLE_MIGRATIONS);
    server.stop().await;
}

async fn down_to_a_version_not_applied_is_refused(server: &TestServer) {
    let tenant = create(server, "epsilon").await;
    migrate(
        server,
        &tenant.name,
        SAMPLE_MIGRATIONS[1],
        MigrationDirection::Down,
    )
    .await
    .expect("down to projects");
    let before = server.catalog_snapshot().await;

    let result = migrate(server, &tenant.name, LATEST, MigrationDirection::Down).await;

    let refused = result.expect_err(
        "bug: DOWN to a version the tenant has not applied succeeds as a no-op; \
         the contract says INVALID_ARGUMENT",
    );
    assert_bad_field(&refused, "target_version");
    assert_eq!(server.catalog_snapshot().await, before);
    assert_eq!(
        server.tenant_versions(&tenant).await,
        SAMPLE_MIGRATIONS[..2]
    );
}

async fn down_one_step_never_reverts_the_last_migration(server: &TestServer) {
    let tenant = create(server, "zeta").await;
    migrate(
        server,
        &tenant.name,
        SAMPLE_MIGRATIONS[0],
        MigrationDirection::Down,
    )
    .await
    .expect("down to users");

    let result = migrate(server, &tenant.name, "", MigrationDirection::Down).await;

    assert_eq!(
        server.tenant_versions(&tenant).await,
        SAMPLE_MIGRATIONS[..1],
        "bug: DOWN one step reverted the only migration left ({result:?}); \
         reverting every migration is not offered by MigrateTenant"
    );
    let refused = result.expect_err("reverting every migration is refused");
    assert!(
        matches!(
            refused.code(),
            Code::FailedPrecondition | Code::InvalidArgument
        ),
        "{refused:?}"
    );
    assert_eq!(
        catalog_version(server, &tenant.name).await,
        SAMPLE_MIGRATIONS[0]
    );
}

async fn a_retried_down_with_the_same_request_id_reverts_only_once(server: &TestServer) {
    let tenant = create(server, "theta").await;
    let request = proto::MigrateTenantRequest {
        component: Default::default(),
        tenant: tenant.name.clone(),
        target_version: String::new(),
        direction: MigrationDirection::Down.into(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let mut client = server.migrations();

    let first = client.migrate_tenant(request.clone()).await.expect("first");
    let retry = client.migrate_tenant(request).await.expect("retry");

    assert_eq!(first.get_ref().applied, [LATEST]);
    assert_eq!(
        server.tenant_versions(&tenant).await,
        SAMPLE_MIGRATIONS[..4],
        "bug: the retry (same request_id) reverted another migration: {:?}",
        retry.get_ref().applied
    );
    assert_eq!(retry.into_inner().applied, first.into_inner().applied);
}
