//! Rollouts: many tenants migrated to one version, through failures, cancellation, concurrent
//! replicas and a killed process.

use std::sync::Arc;

use migration::sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager, prelude::*};
use tenant_plane::{dataplane::TenantMigrations, proto};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::on_both_dbs;
use crate::support::{Db, TestServer, assert_bad_field, create};

/// A fifth tenant migration: a unique index on users.name. It fails in a tenant that has two
/// users of one name, which is how a test makes one tenant's migration fail.
struct UniqueUserNames;

pub(crate) const FIFTH: &str = "m20261124_000001_unique_user_names";
pub(crate) const FOURTH: &str = "m20261123_100004_create_audit_log";

impl MigrationName for UniqueUserNames {
    fn name(&self) -> &str {
        FIFTH
    }
}

#[migration::sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for UniqueUserNames {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("users_name_key")
                    .table(Alias::new("users"))
                    .col(Alias::new("name"))
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("users_name_key")
                    .table(Alias::new("users"))
                    .to_owned(),
            )
            .await
    }
}

pub(crate) fn five_migrations() -> TenantMigrations {
    TenantMigrations::new(Arc::new(|| {
        let mut migrations = migration::tenant::migrations();
        migrations.push(Box::new(UniqueUserNames));
        migrations
    }))
}

/// A server with five migrations and `n` tenants at the fourth (one step behind the latest).
pub(crate) async fn fleet(db: Db, n: usize) -> (TestServer, Vec<proto::Tenant>) {
    fleet_with(db, n, |_| {}).await
}

/// [`fleet`] on a server configured by `adjust`.
pub(crate) async fn fleet_with(
    db: Db,
    n: usize,
    adjust: impl FnOnce(&mut tenant_plane::config::Config),
) -> (TestServer, Vec<proto::Tenant>) {
    let server = TestServer::start_with_migrations(db, five_migrations(), adjust).await;
    let mut tenants = Vec::new();
    for i in 0..n {
        let tenant = create(&server, &format!("fleet-{i}")).await;
        server
            .migrations()
            .migrate_tenant(proto::MigrateTenantRequest {
                tenant: tenant.name.clone(),
                direction: proto::MigrationDirection::Down as i32,
                ..Default::default()
            })
            .await
            .expect("one step down");
        tenants.push(tenant);
    }
    (server, tenants)
}

/// Two users with one name: the fifth migration's unique index cannot be built here.
pub(crate) async fn poison(server: &TestServer, tenant: &proto::Tenant) {
    let db = server.tenant_conn(tenant).await;
    for _ in 0..2 {
        db.execute_unprepared(&format!(
            "INSERT INTO users (id, email, name) VALUES ('{}', '{}@example.com', 'twin')",
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7().simple()
        ))
        .await
        .expect("insert a user");
    }
    db.close().await.expect("close");
}

pub(crate) async fn start(
    server: &TestServer,
    request: proto::StartRolloutRequest,
) -> proto::Rollout {
    server
        .migrations()
        .start_rollout(request)
        .await
        .expect("start the rollout")
        .into_inner()
}

pub(crate) fn all() -> Option<proto::TenantSelector> {
    Some(proto::TenantSelector {
        selector: Some(proto::tenant_selector::Selector::All(true)),
    })
}

/// Follows the rollout's events until it ends, and returns it as it ended.
pub(crate) async fn finish(server: &TestServer, rollout: &proto::Rollout) -> proto::Rollout {
    let mut events = server
        .migrations()
        .watch_rollout(proto::WatchRolloutRequest {
            name: rollout.name.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the rollout ends within 60 s");
        match next {
            Some(Ok(proto::RolloutEvent {
                kind: Some(proto::rollout_event::Kind::Finished(_)),
                ..
            }))
            | None => break,
            Some(Ok(_)) => {}
            Some(Err(status)) => panic!("watch failed: {status:?}"),
        }
    }
    server
        .migrations()
        .get_rollout(proto::GetRolloutRequest {
            name: rollout.name.clone(),
        })
        .await
        .expect("get")
        .into_inner()
}

pub(crate) async fn version_of(server: &TestServer, tenant: &proto::Tenant) -> String {
    server
        .tenants()
        .get_tenant(proto::GetTenantRequest {
            name: tenant.name.clone(),
        })
        .await
        .expect("get tenant")
        .into_inner()
        .migration_version
}

on_both_dbs!(
    a_rollout_migrates_the_tenants_behind_and_skips_those_at_the_target,
    under_halt_a_failing_tenant_halts_the_rollout_and_stays_at_its_version,
    under_continue_a_failing_tenant_does_not_stop_the_others,
    a_failed_canary_halts_the_rollout_whatever_the_policy,
    a_retried_start_with_the_same_request_id_returns_the_same_rollout,
    start_rollout_refuses_bad_input_and_starts_nothing,
);

async fn a_rollout_migrates_the_tenants_behind_and_skips_those_at_the_target(db: Db) {
    let (server, tenants) = fleet(db, 5).await;
    for tenant in &tenants[3..] {
        server
            .migrations()
            .migrate_tenant(proto::MigrateTenantRequest {
                tenant: tenant.name.clone(),
                ..Default::default()
            })
            .await
            .expect("bring two tenants to the latest");
    }

    let started = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            max_concurrency: 2,
            ..Default::default()
        },
    )
    .await;
    let ended = finish(&server, &started).await;

    assert_eq!(ended.target_version, FIFTH);
    assert_eq!(ended.state(), proto::rollout::State::Succeeded, "{ended:?}");
    let counts = ended.counts.expect("counts");
    assert_eq!(
        (counts.total, counts.migrated, counts.skipped, counts.failed),
        (5, 3, 2, 0)
    );
    assert!(ended.end_time.is_some());
    for tenant in &tenants {
        assert_eq!(version_of(&server, tenant).await, FIFTH);
        assert_eq!(
            server.tenant_versions(tenant).await.len(),
            5,
            "{} has each migration once",
            tenant.slug
        );
    }
    let again = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        again.state(),
        proto::rollout::State::Succeeded,
        "nothing pending: done at once"
    );
    assert_eq!(again.counts.expect("counts").skipped, 5);
    server.stop().await;
}

async fn under_halt_a_failing_tenant_halts_the_rollout_and_stays_at_its_version(db: Db) {
    let (server, tenants) = fleet(db, 4).await;
    poison(&server, &tenants[0]).await;

    let started = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            max_concurrency: 1,
            error_policy: proto::ErrorPolicy::Halt as i32,
            max_failure_ratio: 0.0,
            ..Default::default()
        },
    )
    .await;
    let ended = finish(&server, &started).await;

    assert_eq!(ended.state(), proto::rollout::State::Halted, "{ended:?}");
    let counts = ended.counts.expect("counts");
    assert_eq!(
        (counts.failed, counts.migrated, counts.pending),
        (1, 0, 3),
        "the first tenant failed; none after it started"
    );
    assert!(!ended.error.is_empty());
    assert_eq!(version_of(&server, &tenants[0]).await, FOURTH);
    assert_eq!(
        server.tenant_versions(&tenants[0]).await.len(),
        4,
        "the failed tenant is exactly at its previous version"
    );
    let status = server
        .provisioning()
        .get_provisioning_status(proto::GetProvisioningStatusRequest {
            tenant: tenants[0].name.clone(),
        })
        .await
        .expect("status")
        .into_inner();
    assert!(
        !status.last_error.is_empty(),
        "the error is kept on the tenant"
    );
    for tenant in &tenants[1..] {
        assert_eq!(
            version_of(&server, tenant).await,
            FOURTH,
            "untouched after the halt"
        );
    }
    server.stop().await;
}

async fn under_continue_a_failing_tenant_does_not_stop_the_others(db: Db) {
    let (server, tenants) = fleet(db, 4).await;
    poison(&server, &tenants[1]).await;

    let started = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            error_policy: proto::ErrorPolicy::Continue as i32,
            ..Default::default()
        },
    )
    .await;
    let ended = finish(&server, &started).await;

    assert_eq!(ended.state(), proto::rollout::State::Failed, "{ended:?}");
    let counts = ended.counts.expect("counts");
    assert_eq!((counts.migrated, counts.failed), (3, 1));
    assert_eq!(version_of(&server, &tenants[1]).await, FOURTH);
    for tenant in [&tenants[0], &tenants[2], &tenants[3]] {
        assert_eq!(version_of(&server, tenant).await, FIFTH);
    }
    server.stop().await;
}

async fn a_failed_canary_halts_the_rollout_whatever_the_policy(db: Db) {
    let (server, tenants) = fleet(db, 4).await;
    poison(&server, &tenants[0]).await;

    let started = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            canary_count: 1,
            max_concurrency: 4,
            error_policy: proto::ErrorPolicy::Continue as i32,
            ..Default::default()
        },
    )
    .await;
    let ended = finish(&server, &started).await;

    assert_eq!(ended.state(), proto::rollout::State::Halted, "{ended:?}");
    let counts = ended.counts.expect("counts");
    assert_eq!(
        (counts.failed, counts.migrated, counts.pending),
        (1, 0, 3),
        "nothing starts before the canary succeeds"
    );
    server.stop().await;
}

async fn a_retried_start_with_the_same_request_id_returns_the_same_rollout(db: Db) {
    let (server, _) = fleet(db, 2).await;
    let request = proto::StartRolloutRequest {
        selector: all(),
        request_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };

    let first = start(&server, request.clone()).await;
    let retry = start(&server, request.clone()).await;

    assert_eq!(retry.id, first.id);
    let other = proto::StartRolloutRequest {
        max_concurrency: 1,
        ..request
    };
    let reused = server.migrations().start_rollout(other).await.unwrap_err();
    assert_bad_field(&reused, "request_id");
    let listed = server
        .migrations()
        .list_rollouts(proto::ListRolloutsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.rollouts.len(), 1);
    finish(&server, &first).await;
    server.stop().await;
}

async fn start_rollout_refuses_bad_input_and_starts_nothing(db: Db) {
    let (server, _) = fleet(db, 1).await;
    let mut client = server.migrations();
    let cases: Vec<(proto::StartRolloutRequest, &str)> = vec![
        (proto::StartRolloutRequest::default(), "selector"),
        (
            proto::StartRolloutRequest {
                selector: all(),
                target_version: "m1_nope".into(),
                ..Default::default()
            },
            "target_version",
        ),
        (
            proto::StartRolloutRequest {
                selector: all(),
                max_concurrency: -1,
                ..Default::default()
            },
            "max_concurrency",
        ),
        (
            proto::StartRolloutRequest {
                selector: all(),
                canary_count: -2,
                ..Default::default()
            },
            "canary_count",
        ),
        (
            proto::StartRolloutRequest {
                selector: all(),
                max_failure_ratio: 1.5,
                ..Default::default()
            },
            "max_failure_ratio",
        ),
        (
            proto::StartRolloutRequest {
                selector: all(),
                error_policy: 9,
                ..Default::default()
            },
            "error_policy",
        ),
        (
            proto::StartRolloutRequest {
                selector: all(),
                request_id: "again".into(),
                ..Default::default()
            },
            "request_id",
        ),
        (
            proto::StartRolloutRequest {
                selector: Some(proto::TenantSelector {
                    selector: Some(proto::tenant_selector::Selector::Tenants(
                        proto::TenantList {
                            tenants: vec!["tenants/nobody".into()],
                        },
                    )),
                }),
                ..Default::default()
            },
            "selector.tenants.tenants[0]",
        ),
    ];
    for (request, field) in cases {
        let status = client.start_rollout(request).await.expect_err(field);
        assert_bad_field(&status, field);
    }
    let listed = client
        .list_rollouts(proto::ListRolloutsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.rollouts.is_empty(), "nothing was started");
    let malformed = client
        .get_rollout(proto::GetRolloutRequest {
            name: "rollouts/42".into(),
        })
        .await
        .unwrap_err();
    assert_bad_field(&malformed, "name");
    let unknown = client
        .get_rollout(proto::GetRolloutRequest {
            name: format!("rollouts/{}", uuid::Uuid::now_v7()),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.stop().await;
}
