//! Rollouts: many tenants migrated to one version, through failures, cancellation, concurrent
//! replicas and a killed process.

use tenant_plane::proto;
use tonic::Code;

use crate::on_both_dbs;
use crate::rollout_fleet::{FIFTH, SIXTH, all, finish, fleet, poison, start, version_of};
use crate::support::{Db, assert_bad_field};

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

    assert_eq!(ended.target_version, SIXTH);
    assert_eq!(ended.state(), proto::rollout::State::Succeeded, "{ended:?}");
    let counts = ended.counts.expect("counts");
    assert_eq!(
        (counts.total, counts.migrated, counts.skipped, counts.failed),
        (5, 3, 2, 0)
    );
    assert!(ended.end_time.is_some());
    for tenant in &tenants {
        assert_eq!(version_of(&server, tenant).await, SIXTH);
        assert_eq!(
            server.tenant_versions(tenant).await.len(),
            6,
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
    assert_eq!(version_of(&server, &tenants[0]).await, FIFTH);
    assert_eq!(
        server.tenant_versions(&tenants[0]).await.len(),
        5,
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
            FIFTH,
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
    assert_eq!(version_of(&server, &tenants[1]).await, FIFTH);
    for tenant in [&tenants[0], &tenants[2], &tenants[3]] {
        assert_eq!(version_of(&server, tenant).await, SIXTH);
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
