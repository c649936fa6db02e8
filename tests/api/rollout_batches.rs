//! Rollout targets migrated a few to a transaction: a batch commits its tenants together, and a
//! batch with a failing tenant is rolled back and run one tenant at a time, so the failure is
//! that tenant's alone and every other tenant is migrated exactly once.

use std::collections::HashMap;

use tenant_plane::proto;

use crate::rollouts::{FIFTH, FOURTH, all, finish, fleet, poison, start, version_of};
use crate::support::{Db, TestServer, column_of};

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

    let started = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            max_concurrency: 6,
            error_policy: proto::ErrorPolicy::Continue as i32,
            ..Default::default()
        },
    )
    .await;
    let ended = finish(&server, &started).await;

    let counts = ended.counts.expect("counts");
    assert_eq!((counts.migrated, counts.failed), (5, 1), "{ended:?}");
    assert_eq!(version_of(&server, &tenants[1]).await, FOURTH);
    assert_eq!(
        server.tenant_versions(&tenants[1]).await.len(),
        4,
        "the failing tenant is exactly at its previous version"
    );
    let mut by_writer: HashMap<String, usize> = HashMap::new();
    for (i, tenant) in tenants.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(version_of(&server, tenant).await, FIFTH, "tenant {i}");
        let writers = writer_of(&server, tenant, FIFTH).await;
        assert_eq!(writers.len(), 1, "tenant {i} has the migration once");
        *by_writer.entry(writers[0].clone()).or_default() += 1;
    }
    assert!(
        by_writer.values().any(|&n| n > 1),
        "some tenants were migrated in one transaction: {by_writer:?}"
    );
    server.stop().await;
}
