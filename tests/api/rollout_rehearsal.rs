//! StartRollout with validate_only: a rehearsal runs the pending migrations of a sample of the
//! tenants in transactions that are rolled back, reports each tenant's outcome (one tenant's
//! failure included), waits at most its lock timeout for a busy tenant, and commits nothing
//! anywhere — no rollout, no version, no change in any tenant's storage — while its audit row
//! is written.

use sea_orm::{ConnectionTrait, TransactionTrait};
use tenant_plane::proto::{self, Isolation};
use tonic::Code;

use crate::migration_plan::{audit_rows, unique, world};
use crate::plans::{plans, upsert};
use crate::rollout_fleet::{FIFTH, SIXTH, all, fleet, poison};
use crate::support::{Db, TestServer, assert_bad_field, column_of, new_tenant};

fn rehearsal(sample: i32) -> proto::StartRolloutRequest {
    proto::StartRolloutRequest {
        selector: all(),
        validate_only: true,
        rehearsal_sample_size: sample,
        ..Default::default()
    }
}

async fn rehearse(server: &TestServer, sample: i32) -> proto::Rollout {
    server
        .migrations()
        .start_rollout(rehearsal(sample))
        .await
        .expect("rehearse")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_reports_the_tenant_that_would_fail_and_commits_nothing() {
    let (server, tenants) = fleet(Db::Postgres, 3).await;
    plans(&server)
        .upsert_plan(upsert(
            proto::Plan {
                name: "plans/isolated".into(),
                default_isolation: Isolation::Database as i32,
                ..Default::default()
            },
            &[],
        ))
        .await
        .expect("create the plan");
    let own = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(proto::Tenant {
                plan: "isolated".into(),
                ..new_tenant(&unique("own"))
            }),
            ..Default::default()
        })
        .await
        .expect("create on the isolated plan")
        .into_inner();
    server
        .migrations()
        .migrate_tenant(proto::MigrateTenantRequest {
            tenant: own.name.clone(),
            direction: proto::MigrationDirection::Down as i32,
            ..Default::default()
        })
        .await
        .expect("one step down");
    poison(&server, &tenants[1]).await;
    poison(&server, &own).await;
    let before = world(&server, &[&own]).await;
    let audit = audit_rows(&server, "StartRollout").await;

    let rehearsed = rehearse(&server, 0).await;

    assert_eq!(rehearsed.name, "", "no rollout exists");
    assert_eq!(rehearsed.state(), proto::rollout::State::Pending);
    assert_eq!(rehearsed.target_version, SIXTH);
    assert_eq!(rehearsed.counts.as_ref().map(|c| c.pending), Some(4));
    let mut expected: Vec<&str> = tenants.iter().map(|t| t.name.as_str()).collect();
    expected.push(own.name.as_str());
    expected.sort_unstable_by_key(|name| {
        // Tenant ids are UUIDv7, and the sample is in id order.
        name.trim_start_matches("tenants/").to_owned()
    });
    let names: Vec<&str> = rehearsed
        .rehearsal
        .iter()
        .map(|t| t.tenant.as_str())
        .collect();
    assert_eq!(names, expected);
    for target in &rehearsed.rehearsal {
        let poisoned = target.tenant == tenants[1].name || target.tenant == own.name;
        assert_eq!(target.from_version, FIFTH, "{target:?}");
        assert!(target.duration.is_some(), "{target:?}");
        if poisoned {
            assert!(!target.ok, "{target:?}");
            assert!(target.error.contains("users_name_key"), "{target:?}");
            assert_eq!(target.to_version, FIFTH);
        } else {
            assert!(target.ok, "{target:?}");
            assert_eq!(target.error, "");
            assert_eq!(target.to_version, SIXTH);
        }
    }
    assert_eq!(
        world(&server, &[&own]).await,
        before,
        "the rehearsal kept something"
    );
    let catalog = server.catalog().await;
    let rollouts = column_of(
        &catalog,
        "SELECT CAST(count(*) AS TEXT) AS name FROM rollouts",
    )
    .await;
    catalog.close().await.expect("close");
    assert_eq!(rollouts, ["0"], "no rollout row");
    let mut recorded = audit;
    recorded.push("tenant.v1.MigrationService/StartRollout:OK".into());
    assert_eq!(
        audit_rows(&server, "StartRollout").await,
        recorded,
        "a rehearsal has its audit row"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_takes_the_first_tenants_behind_the_target_up_to_its_sample_size() {
    let (server, tenants) = fleet(Db::Postgres, 3).await;
    server
        .migrations()
        .migrate_tenant(proto::MigrateTenantRequest {
            tenant: tenants[0].name.clone(),
            ..Default::default()
        })
        .await
        .expect("the first tenant at the target");

    let rehearsed = rehearse(&server, 1).await;

    assert_eq!(rehearsed.counts.as_ref().map(|c| c.skipped), Some(1));
    let names: Vec<&str> = rehearsed
        .rehearsal
        .iter()
        .map(|t| t.tenant.as_str())
        .collect();
    assert_eq!(names, [tenants[1].name.as_str()]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_waits_for_a_busy_tenant_only_as_long_as_its_lock_timeout() {
    let (server, tenants) = fleet(Db::Postgres, 1).await;
    let busy = server.tenant_conn(&tenants[0]).await;
    let holding = busy.begin().await.expect("begin");
    holding
        .execute_unprepared("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock the tenant's table");

    let started = std::time::Instant::now();
    let rehearsed = rehearse(&server, 1).await;
    let waited = started.elapsed();

    holding.rollback().await.expect("rollback");
    busy.close().await.expect("close");
    let target = &rehearsed.rehearsal[0];
    assert!(!target.ok, "{target:?}");
    assert!(target.error.contains("lock timeout"), "{target:?}");
    assert!(waited < std::time::Duration::from_secs(20), "{waited:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_is_refused_with_the_fields_at_fault_and_changes_nothing() {
    let (server, _tenants) = fleet(Db::Postgres, 1).await;
    let before = world(&server, &[]).await;

    let negative = server
        .migrations()
        .start_rollout(rehearsal(-1))
        .await
        .unwrap_err();
    let unknown = server
        .migrations()
        .start_rollout(proto::StartRolloutRequest {
            target_version: "m0_nope".into(),
            ..rehearsal(0)
        })
        .await
        .unwrap_err();

    assert_bad_field(&negative, "rehearsal_sample_size");
    assert_bad_field(&unknown, "target_version");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(world(&server, &[]).await, before);
    server.stop().await;
}

/// An SQLite tenant's file, as its own schema and version rows say.
pub(crate) async fn file_state(server: &TestServer, tenant: &proto::Tenant) -> Vec<String> {
    let conn = server.tenant_conn(tenant).await;
    let mut state = column_of(
        &conn,
        "SELECT type || ':' || name || ':' || coalesce(sql, '') AS name FROM sqlite_master \
         ORDER BY 1",
    )
    .await;
    state.extend(
        column_of(
            &conn,
            "SELECT version || ':' || applied_at AS name FROM seaql_migrations ORDER BY 1",
        )
        .await,
    );
    conn.close().await.expect("close");
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_rehearsal_reports_each_tenant_and_leaves_every_file_as_it_was() {
    let (server, tenants) = fleet(Db::Sqlite, 2).await;
    poison(&server, &tenants[0]).await;
    let mut before = Vec::new();
    for tenant in &tenants {
        before.push(file_state(&server, tenant).await);
    }

    let rehearsed = rehearse(&server, 0).await;

    let outcomes: Vec<(&str, bool)> = rehearsed
        .rehearsal
        .iter()
        .map(|t| (t.tenant.as_str(), t.ok))
        .collect();
    assert_eq!(
        outcomes,
        [
            (tenants[0].name.as_str(), false),
            (tenants[1].name.as_str(), true)
        ]
    );
    assert!(
        rehearsed.rehearsal[0].error.contains("UNIQUE"),
        "{rehearsed:?}"
    );
    for (tenant, was) in tenants.iter().zip(before) {
        assert_eq!(file_state(&server, tenant).await, was, "{}", tenant.slug);
    }
    let catalog = server.catalog().await;
    let rollouts = column_of(
        &catalog,
        "SELECT CAST(count(*) AS TEXT) AS name FROM rollouts",
    )
    .await;
    catalog.close().await.expect("close");
    assert_eq!(rollouts, ["0"], "no rollout row");
    server.stop().await;
}
