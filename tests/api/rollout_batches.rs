//! Rollout targets migrated a few to a transaction: a batch commits its tenants together, and a
//! batch with a failing tenant is rolled back and run one tenant at a time, so the failure is
//! that tenant's alone and every other tenant is migrated exactly once.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;
use tenant_plane::proto;

use crate::cache::{tenant_of, within_a_second};
use crate::rollout_fleet::{
    FIFTH, SIXTH, all, finish, fleet, poison, six_migrations, start, version_of,
};
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, column_of};

/// The transaction that wrote `version` into the tenant's version table.
async fn writer_of(server: &TestServer, tenant: &proto::Tenant, version: &str) -> Vec<String> {
    let conn = server.tenant_conn(tenant).await;
    let writers = column_of(
        &conn,
        &format!("SELECT xmin::text AS name FROM seaql_migrations WHERE version = '{version}'"),
    )
    .await;
    conn.close().await.expect("close");
    writers
}

#[tokio::test]
async fn a_failing_tenant_fails_alone_and_its_batch_mates_are_migrated_once() {
    let (server, tenants) = fleet(Db::Postgres, 6).await;
    poison(&server, &tenants[1]).await;

    let ended = roll_out_all(&server).await;

    let counts = ended.counts.expect("counts");
    assert_eq!((counts.migrated, counts.failed), (5, 1), "{ended:?}");
    assert_eq!(version_of(&server, &tenants[1]).await, FIFTH);
    assert_eq!(
        server.tenant_versions(&tenants[1]).await.len(),
        5,
        "the failing tenant is exactly at its previous version"
    );
    let mut by_writer: HashMap<String, usize> = HashMap::new();
    for (i, tenant) in tenants.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(version_of(&server, tenant).await, SIXTH, "tenant {i}");
        let writers = writer_of(&server, tenant, SIXTH).await;
        assert_eq!(writers.len(), 1, "tenant {i} has the migration once");
        *by_writer.entry(writers[0].clone()).or_default() += 1;
    }
    assert!(
        by_writer.values().any(|&n| n > 1),
        "some tenants were migrated in one transaction: {by_writer:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reaches_another_replicas_memory_of_its_tenants_within_a_second() {
    let (a, tenants) = fleet(Db::Postgres, 6).await;
    let catalog = a.catalog_url.clone();
    // A replica that takes no part in the rollout (it looks for rollouts once a minute): it
    // learns of the batches' tenants only from their change notifications.
    let b = TestServer::start_with_migrations(Db::Postgres, six_migrations(), |c| {
        c.database_url = Some(catalog);
        c.rollout_poll_ms = 60_000;
    })
    .await;
    for tenant in &tenants {
        assert_eq!(tenant_of(&b, &tenant.slug).await.migration_version, FIFTH);
    }

    let ended = roll_out_all(&a).await;

    let counts = ended.counts.expect("counts");
    assert_eq!(counts.migrated, 6, "{ended:?}");
    let mut writers = Vec::new();
    for tenant in &tenants {
        writers.extend(writer_of(&a, tenant, SIXTH).await);
    }
    writers.sort();
    writers.dedup();
    assert!(writers.len() < 6, "some tenants were migrated in one batch");
    within_a_second("B sees every tenant at the fifth version", async || {
        for tenant in &tenants {
            if tenant_of(&b, &tenant.slug).await.migration_version != SIXTH {
                return false;
            }
        }
        true
    })
    .await;
    b.stop().await;
    a.stop().await;
}

/// Rolls the sixth migration out to every tenant, six at a time; how it ended.
async fn roll_out_all(server: &TestServer) -> proto::Rollout {
    let started = start(
        server,
        proto::StartRolloutRequest {
            selector: all(),
            max_concurrency: 6,
            error_policy: proto::ErrorPolicy::Continue as i32,
            ..Default::default()
        },
    )
    .await;
    finish(server, &started).await
}

/// Every tenant but `except` is at the fifth version, with its row once.
async fn all_migrated_but(server: &TestServer, tenants: &[proto::Tenant], except: Option<usize>) {
    for (i, tenant) in tenants
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
    {
        assert_eq!(version_of(server, tenant).await, SIXTH, "tenant {i}");
        assert_eq!(server.tenant_versions(tenant).await.len(), 6, "tenant {i}");
        assert_eq!(
            writer_of(server, tenant, SIXTH).await.len(),
            1,
            "tenant {i}"
        );
    }
}

// A batch runs each tenant from the version the catalog mirrors, without reading its version
// table first; the version rows go in only if that table holds exactly those versions. A
// tenant whose table disagrees rolls its batch back, and the one-by-one run, which reads the
// table, migrates it from what the table holds, or fails it there.

#[tokio::test]
async fn a_tenant_whose_mirror_is_behind_its_version_table_is_migrated_from_the_table() {
    let (server, tenants) = fleet(Db::Postgres, 6).await;
    // Tenant 2's table holds four versions; its mirror (the component's, which rollouts read,
    // and the tenant row's) is set back to three.
    let third = server.tenant_versions(&tenants[2]).await[2].clone();
    let catalog = server.catalog().await;
    catalog
        .execute_unprepared(&format!(
            "UPDATE tenants SET migration_version = '{third}' WHERE slug = 'fleet-2'; \
             UPDATE tenant_components SET version = '{third}' \
             WHERE component = 'sample' \
               AND tenant_id = (SELECT id FROM tenants WHERE slug = 'fleet-2')"
        ))
        .await
        .expect("set the mirror back");
    catalog.close().await.expect("close");

    let ended = roll_out_all(&server).await;

    let counts = ended.counts.expect("counts");
    assert_eq!((counts.migrated, counts.failed), (6, 0), "{ended:?}");
    all_migrated_but(&server, &tenants, None).await;
    server.stop().await;
}

#[tokio::test]
async fn a_tenant_whose_version_table_lacks_a_mirrored_version_is_not_migrated_past_it() {
    let (server, tenants) = fleet(Db::Postgres, 6).await;
    // Tenant 4's table lost its fourth and fifth version rows; the mirror still says five. The
    // sixth migration runs cleanly on top of it, and must not be recorded there.
    let conn = server.tenant_conn(&tenants[4]).await;
    conn.execute_unprepared(&format!(
        "DELETE FROM seaql_migrations WHERE version IN ('{FIFTH}', '{}')",
        SAMPLE_MIGRATIONS[3]
    ))
    .await
    .expect("delete a version row");
    conn.close().await.expect("close");

    let ended = roll_out_all(&server).await;

    let counts = ended.counts.expect("counts");
    assert_eq!((counts.migrated, counts.failed), (5, 1), "{ended:?}");
    all_migrated_but(&server, &tenants, Some(4)).await;
    // Run from its table, tenant 4 got the fourth migration again, whose table exists: it
    // failed there, and nothing of the fifth or sixth was kept.
    let versions = server.tenant_versions(&tenants[4]).await;
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert!(!versions.iter().any(|v| v == SIXTH), "{versions:?}");
    server.stop().await;
}
