//! Rollouts run on their own few connections (TENANT_PLANE_ROLLOUT_CONNECTIONS): a replica runs
//! at most that many rollout transactions at once, whatever the rollout's concurrency, never
//! waits for one of them (so no target is retried for want of a connection), and leaves the
//! shared pool to the hot path.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tenant_plane::proto;

use crate::rollout_fleet::{SIXTH, all, finish, fleet_with, start, version_of};
use crate::support::{Db, column_of, eventually};

/// The catalog's sessions of this replica's rollout pool, and how many of them wait for a lock.
async fn rollout_sessions(catalog: &DatabaseConnection) -> (usize, usize) {
    let waiting = column_of(
        catalog,
        "SELECT coalesce(wait_event_type, '') AS name FROM pg_stat_activity \
         WHERE application_name LIKE '% rollouts' AND datname = current_database()",
    )
    .await;
    let locked = waiting.iter().filter(|w| *w == "Lock").count();
    (waiting.len(), locked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_keeps_to_its_connections_and_leaves_the_shared_pool_to_the_hot_path() {
    let (server, tenants) = fleet_with(Db::Postgres, 20, |c| {
        c.pool_size = 2;
        c.rollout_connections = 1;
        c.pool_acquire_timeout_secs = 1;
        c.rollout_lease_secs = 2;
    })
    .await;
    let catalog = server.catalog().await;
    // The users tables of tenants 0 and 8 are locked: the sixth migration (an index on users)
    // waits there. Targets go in tenant order, eight to a transaction at most, so any second
    // transaction would meet the second lock.
    let mut locks = Vec::new();
    for tenant in [&tenants[0], &tenants[8]] {
        let blocker = server.tenant_conn(tenant).await;
        let lock = blocker.begin().await.expect("begin");
        lock.execute_unprepared("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock the users table");
        locks.push((blocker, lock));
    }

    let started = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            max_concurrency: 16,
            ..Default::default()
        },
    )
    .await;
    eventually(
        "the rollout reaches the lock",
        Duration::from_secs(10),
        async || (rollout_sessions(&catalog).await.1 > 0).then_some(()),
    )
    .await;
    // Longer than two waits for a connection may last: a second transaction would have failed
    // by now, and so would the one-tenant run that follows it, and its tenant be retried.
    // This one wait stays: what it waits out is sqlx's own acquire timeout
    // (`pool_acquire_timeout_secs`), which sqlx measures in real time inside its pool, where
    // neither the server's clock nor tokio's paused time reaches (the connections it waits
    // for are real sockets to PostgreSQL). What is asserted is that nothing happens within
    // it, so there is no event to wait for instead.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rollout_sessions(&catalog).await,
        (1, 1),
        "one rollout session, waiting for the lock"
    );
    // The hot path has its pool to itself meanwhile.
    for tenant in &tenants[1..4] {
        server
            .tenants()
            .get_tenant(proto::GetTenantRequest {
                name: tenant.name.clone(),
            })
            .await
            .expect("the hot path answers during the rollout");
    }
    for (blocker, lock) in locks {
        lock.commit().await.expect("release the lock");
        blocker.close().await.expect("close");
    }

    let ended = finish(&server, &started).await;
    let counts = ended.counts.expect("counts");
    assert_eq!((counts.migrated, counts.failed), (20, 0), "{ended:?}");
    for tenant in &tenants {
        assert_eq!(version_of(&server, tenant).await, SIXTH);
    }
    let attempts = column_of(
        &catalog,
        &format!(
            "SELECT DISTINCT attempts::text AS name FROM rollout_targets WHERE rollout_id = '{}'",
            started.id
        ),
    )
    .await;
    assert_eq!(
        attempts,
        ["1"],
        "every tenant was migrated at its first attempt"
    );
    catalog.close().await.expect("close");
    server.stop().await;
}
