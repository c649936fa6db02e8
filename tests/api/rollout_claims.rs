//! A worker's claim and the tenant's migration commit together: a worker that lost its claim
//! before the commit leaves the tenant as it was, and the worker that holds it records the
//! migration, the mirror and the target's outcome at once.

use std::{num::NonZeroUsize, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tenant_plane::dataplane::{DataPlane, DataPlaneSettings, Run, Target};
use tenant_plane::db::Backend;
use tenant_plane::domain::{
    CallContext, ErrorPolicy, Rollout, RolloutCounts, RolloutState, Selector, Slug, TargetState,
};
use tenant_plane::service::storage_of;
use tenant_plane::store::{Catalog, NewTarget, Outcome, PoolSettings};

use crate::rollout_fleet::{SIXTH, fleet, six_migrations};
use crate::support::Db;

const LEASE_MS: i64 = 60_000;

async fn column(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect(sql)
        .iter()
        .map(|row| row.try_get::<String>("", "v").expect("a text column v"))
        .collect()
}

#[tokio::test]
async fn a_worker_that_lost_its_claim_rolls_the_migration_back_and_the_holder_records_it() {
    let (server, tenants) = fleet(Db::Postgres, 1).await;
    let url = server.catalog_url.clone();
    // The server's own worker stays out of it.
    server.stop().await;
    let catalog = Catalog::connect(
        &url,
        &PoolSettings {
            max_connections: 4,
            rollout_connections: 2,
            acquire_timeout: Duration::from_secs(10),
            cache_capacity: NonZeroUsize::new(16).expect("non-zero"),
            catalog_schema: Default::default(),
        },
        tenant_plane::clock::Clock::system(),
    )
    .await
    .expect("catalog");
    let dataplane = DataPlane::new(
        server_catalog(&url).await,
        Backend::Postgres,
        DataPlaneSettings {
            catalog_url: url.clone(),
            data_dir: std::env::temp_dir(),
            tenant_connections: NonZeroUsize::new(2).expect("non-zero"),
            acquire_timeout: Duration::from_secs(10),
            clock: tenant_plane::clock::Clock::system(),
        },
        six_migrations(),
    );
    let slug = Slug::parse(&tenants[0].slug).expect("slug");
    let tenant = catalog
        .tenant_by_slug(&slug)
        .await
        .expect("tenant")
        .expect("the fleet's tenant");
    let from = tenant.migration_version.clone();
    let rollout = Rollout {
        id: uuid::Uuid::now_v7(),
        component: "sample".into(),
        target_version: SIXTH.into(),
        selector: Selector::All,
        max_concurrency: 1,
        canary_count: 0,
        error_policy: ErrorPolicy::Continue,
        max_failure_ratio: 0.0,
        state: RolloutState::Pending,
        error: None,
        create_time: chrono::Utc::now(),
        start_time: None,
        end_time: None,
        counts: RolloutCounts::default(),
    };
    let targets = [NewTarget {
        tenant: tenant.id,
        state: TargetState::Pending,
        from_version: from.clone(),
    }];
    catalog
        .insert_rollout(&CallContext::system(), &rollout, None, &targets)
        .await
        .expect("rollout");
    let claims = catalog
        .claim_targets(rollout.id, "worker-a", 1, i32::MAX, LEASE_MS, true)
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1);
    assert_eq!(
        claims[0].1.as_ref().map(|t| t.id),
        Some(tenant.id),
        "the claim brings the tenant's row"
    );

    // Worker A's lease ran out and worker B took the tenant over.
    let db = server_catalog(&url).await;
    db.execute_unprepared(&format!(
        "UPDATE rollout_targets SET claimed_by = 'worker-b' WHERE rollout_id = '{}'",
        rollout.id
    ))
    .await
    .expect("take over");
    let sixth = six_migrations().position(SIXTH).expect("sixth");
    // What the rollout worker does with a SCHEMA tenant's target: one unit of work on the
    // rollout pool, in which the data plane migrates and the store records; committed if the
    // worker still held the target.
    let storage = storage_of(&tenant);
    let outcome = Outcome::Migrated {
        from: from.clone(),
        to: Some(SIXTH.to_owned()),
        duration_ms: 1,
    };
    let migrate = |worker: &'static str| {
        let (catalog, dataplane, storage, outcome) = (&catalog, &dataplane, &storage, &outcome);
        async move {
            let unit = catalog
                .begin_rollout(&CallContext::system())
                .await
                .expect("begin");
            let report = dataplane
                .run(
                    unit.txn(),
                    storage,
                    &Run::Migrate(Target::Up(sixth)),
                    std::slice::from_ref(dataplane.migrations()),
                )
                .await
                .expect("migrate")
                .first();
            assert_eq!(report.version(), Some(SIXTH));
            let held = catalog
                .record_migrated(
                    unit.txn(),
                    rollout.id,
                    "sample",
                    worker,
                    &[(tenant.id, outcome)],
                )
                .await
                .expect("record");
            if held {
                unit.commit().await.expect("commit");
            } else {
                unit.rollback().await.expect("roll back");
            }
            held
        }
    };
    let schema = tenant.schema_name.clone().expect("a schema tenant");
    let versions =
        format!("SELECT version AS v FROM \"{schema}\".seaql_migrations ORDER BY version");
    let mirror = format!(
        "SELECT coalesce(migration_version, '') AS v FROM tenants WHERE id = '{}'",
        tenant.id.as_uuid()
    );
    let target_row = format!(
        "SELECT state || ' ' || coalesce(claimed_by, '-') AS v FROM rollout_targets \
         WHERE rollout_id = '{}'",
        rollout.id
    );
    let migrated_events = format!(
        "SELECT kind AS v FROM rollout_events WHERE rollout_id = '{}' AND kind = 'migrated'",
        rollout.id
    );

    assert!(!migrate("worker-a").await, "worker A lost the target");
    assert_eq!(column(&db, &versions).await.len(), 5, "rolled back");
    assert_eq!(
        column(&db, &mirror).await,
        [from.clone().unwrap_or_default()]
    );
    assert_eq!(column(&db, &target_row).await, ["RUNNING worker-b"]);
    assert!(column(&db, &migrated_events).await.is_empty());

    assert!(migrate("worker-b").await, "worker B holds the target");
    let applied = column(&db, &versions).await;
    assert_eq!(applied.len(), 6);
    assert_eq!(applied.last().map(String::as_str), Some(SIXTH));
    assert_eq!(column(&db, &mirror).await, [SIXTH]);
    assert_eq!(column(&db, &target_row).await, ["MIGRATED -"]);
    assert_eq!(column(&db, &migrated_events).await, ["migrated"]);
    db.close().await.expect("close");
    catalog.close().await.expect("close");
}

async fn server_catalog(url: &str) -> DatabaseConnection {
    sea_orm::Database::connect(url).await.expect("connect")
}
