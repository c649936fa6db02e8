//! The catalog's memory across replicas: a change made through one replica, or by plain SQL,
//! reaches another replica's ResolveTenant and CheckQuota within a second (PostgreSQL NOTIFY,
//! usage refresh), and a change made through a server is seen by its very next call.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use tenant_plane::proto::{self, CheckQuotaRequest, resolve_tenant_request::Key, tenant::State};
use tonic::{Code, Status};

use crate::api_keys::{create_key, resolve_key};
use crate::on_both;
use crate::quotas::{consume, set_limits};
use crate::support::{Db, TestServer, create, eventually};

/// How soon another replica must see a change: notifications arrive within milliseconds, and
/// usage is reread after 500 ms.
const DEADLINE: Duration = Duration::from_secs(1);
const RESOURCE: &str = "messages_per_day";

/// Asks `seen` until it holds; fails once [`DEADLINE`] has passed.
pub(crate) async fn within_a_second(what: &str, mut seen: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    eventually(what, DEADLINE, async || seen().await.then_some(())).await;
    let delay = start.elapsed();
    assert!(delay <= DEADLINE, "{what}: not seen within {DEADLINE:?}");
    println!("{what}: seen after {delay:?}");
}

async fn resolve(server: &TestServer, key: Key) -> Result<proto::ResolveTenantResponse, Status> {
    let request = proto::ResolveTenantRequest { key: Some(key) };
    Ok(server.tenants().resolve_tenant(request).await?.into_inner())
}

/// The tenant a slug resolves to, which must exist.
pub(crate) async fn tenant_of(server: &TestServer, slug: &str) -> proto::Tenant {
    let resolved = resolve(server, Key::Slug(slug.into())).await;
    let resolved = resolved.unwrap_or_else(|s| panic!("resolve {slug}: {s:?}"));
    resolved.tenant.expect("a tenant")
}

/// CheckQuota for one more unit of [`RESOURCE`].
async fn check(server: &TestServer, slug: &str) -> Result<proto::CheckQuotaResponse, Status> {
    let request = CheckQuotaRequest {
        tenant: format!("tenants/{slug}"),
        resource: RESOURCE.into(),
        amount: 1,
    };
    Ok(server.quotas().check_quota(request).await?.into_inner())
}

/// (limit, used, allowed) as CheckQuota reports them.
async fn quota(server: &TestServer, slug: &str) -> (i64, i64, bool) {
    let answer = check(server, slug).await.expect("check");
    let state = answer.quota.expect("a quota state");
    (state.limit, state.used, answer.allowed)
}

async fn suspend(server: &TestServer, slug: &str) {
    let request = proto::SuspendTenantRequest {
        name: format!("tenants/{slug}"),
        reason: "unpaid".into(),
        etag: String::new(),
    };
    server
        .tenants()
        .suspend_tenant(request)
        .await
        .expect("suspend");
}

/// Runs `sql` on the catalog as another tool would, past the servers.
async fn run_sql(server: &TestServer, sql: &str) {
    let db = server.catalog().await;
    let result = db.execute_unprepared(sql).await.expect(sql);
    assert_eq!(result.rows_affected(), 1, "{sql}");
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_through_one_replica_reaches_the_others_resolve_and_checks_within_a_second() {
    let (a, b) = replicas().await;
    create(&a, "fickle").await;
    let secret = create_key(&a, "tenants/fickle", "", None).await.secret;
    assert_ne!(tenant_of(&b, "fickle").await.state(), State::Suspended);
    resolve_key(&b, &secret)
        .await
        .expect("the key resolves on B");
    assert!(
        quota(&b, "fickle").await.2,
        "B admits before the suspension"
    );

    suspend(&a, "fickle").await;

    let suspended = |r: proto::ResolveTenantResponse| r.tenant.map(|t| t.state());
    within_a_second("B sees the suspension", async || {
        let by_slug = suspended(resolve(&b, Key::Slug("fickle".into())).await.expect("slug"));
        let by_key = suspended(resolve_key(&b, &secret).await.expect("key"));
        let refused = check(&b, "fickle").await.map_err(|s| s.code());
        [by_slug, by_key] == [Some(State::Suspended); 2] && refused == Err(Code::FailedPrecondition)
    })
    .await;
    // Once seen, never unseen: no load begun before the notification is kept after it.
    for _ in 0..20 {
        assert_eq!(tenant_of(&b, "fickle").await.state(), State::Suspended);
    }
    stop(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_replica_stops_resolving_on_the_other_within_a_second() {
    let (a, b) = replicas().await;
    create(&a, "keyholder").await;
    let created = create_key(&a, "tenants/keyholder", "", None).await;
    let kept = create_key(&a, "tenants/keyholder", "", None).await;
    resolve_key(&b, &created.secret)
        .await
        .expect("resolves on B");
    resolve_key(&b, &kept.secret).await.expect("resolves on B");

    let name = created.api_key.expect("key").name;
    let request = proto::RevokeApiKeyRequest { name };
    a.tenants().revoke_api_key(request).await.expect("revoke");

    within_a_second("B refuses the revoked key", async || {
        let refused = resolve_key(&b, &created.secret).await.map_err(|s| s.code());
        refused.err() == Some(Code::NotFound)
    })
    .await;
    resolve_key(&b, &kept.secret)
        .await
        .expect("the other key still works");
    stop(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_limit_overrides_reach_the_other_replicas_checks_within_a_second() {
    let (a, b) = replicas().await;
    create(&a, "limited").await;
    set_limits(&a, "limited", &[(RESOURCE, 10)]).await;
    assert_eq!(quota(&b, "limited").await, (10, 0, true));

    set_limits(&a, "limited", &[(RESOURCE, 20)]).await;

    within_a_second("B checks against the new limit", async || {
        quota(&b, "limited").await.0 == 20
    })
    .await;
    stop(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_after_the_other_replica_missed_its_slug_resolves_there_within_a_second() {
    let (a, b) = replicas().await;
    for _ in 0..2 {
        let missing = resolve(&b, Key::Slug("latecomer".into()))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    }
    assert_eq!(
        check(&b, "latecomer").await.unwrap_err().code(),
        Code::NotFound
    );

    let created = create(&a, "latecomer").await;

    within_a_second("B finds the new tenant", async || {
        let found = resolve(&b, Key::Host("latecomer.example.com".into())).await;
        found.is_ok_and(|r| r.tenant.is_some_and(|t| t.id == created.id))
    })
    .await;
    assert_eq!(tenant_of(&b, "latecomer").await.id, created.id);
    check(&b, "latecomer")
        .await
        .expect("B checks its quotas too");
    stop(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_sql_change_to_the_catalog_reaches_every_replica_within_a_second() {
    let (a, b) = replicas().await;
    create(&a, "handmade").await;
    let secret = create_key(&a, "tenants/handmade", "", None).await.secret;
    for server in [&a, &b] {
        assert_eq!(tenant_of(server, "handmade").await.display_name, "handmade");
        resolve_key(server, &secret).await.expect("resolves");
    }

    run_sql(
        &a,
        "UPDATE tenants SET display_name = 'Set by hand' WHERE slug = 'handmade'",
    )
    .await;
    run_sql(
        &a,
        "UPDATE api_keys SET revoke_time = now() WHERE revoke_time IS NULL",
    )
    .await;

    for (name, server) in [("A", &a), ("B", &b)] {
        within_a_second(&format!("{name} sees the SQL changes"), async || {
            let renamed = tenant_of(server, "handmade").await.display_name == "Set by hand";
            let refused = resolve_key(server, &secret).await.map_err(|s| s.code());
            renamed && refused.err() == Some(Code::NotFound)
        })
        .await;
    }
    stop(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumptions_through_one_replica_show_in_the_others_checks_within_a_second() {
    let (a, b) = replicas().await;
    create(&a, "shared-use").await;
    set_limits(&a, "shared-use", &[(RESOURCE, 10)]).await;
    assert_eq!(quota(&b, "shared-use").await, (10, 0, true));

    let request = consume("shared-use", &[(RESOURCE, 10)]);
    a.quotas().consume_quota(request).await.expect("consume");

    within_a_second("B counts A's consumption", async || {
        quota(&b, "shared-use").await == (10, 10, false)
    })
    .await;
    stop(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_notifications_catches_up_within_a_second() {
    let (a, b) = replicas().await;
    create(&a, "unheard").await;
    assert_eq!(tenant_of(&b, "unheard").await.display_name, "unheard");
    // B tells its watchers when it drops its memory (a reset): that is how this test sees B
    // notice the loss below. Both replicas listen before the watch starts, so the resets of
    // their first LISTEN are not mistaken for it.
    let db = a.catalog().await;
    eventually(
        "both replicas listen",
        Duration::from_secs(10),
        async || {
            let listening = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                ))
                .await
                .expect("count the listeners")
                .and_then(|row| row.try_get::<i64>("", "n").ok());
            (listening >= Some(2)).then_some(())
        },
    )
    .await;
    let mut watch = b
        .tenants()
        .watch_tenant_changes(proto::WatchTenantChangesRequest {})
        .await
        .expect("watch B's changes")
        .into_inner();
    let first = watch.message().await.expect("the watch goes on");
    assert!(
        first.is_some_and(|c| c.reset),
        "a watch begins with a reset"
    );

    // Cut every replica's LISTEN connection (of this test's catalog only), then change a row
    // while nobody hears it.
    let cut = db
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .await
        .expect("terminate the listeners");
    assert!(cut.rows_affected() >= 1, "a listener was connected");
    db.close().await.expect("close");
    // Once B has noticed the loss (it drops its memory then, and says so with a reset), fill
    // its memory again while it waits to reconnect: only the reconnection can tell it about
    // the next change.
    let noticed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(change) = watch.message().await.expect("the watch goes on") {
            if change.reset {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        noticed,
        Ok(true),
        "B drops its memory when it loses its listener"
    );
    tenant_of(&b, "unheard").await;
    run_sql(
        &a,
        "UPDATE tenants SET display_name = 'Unheard' WHERE slug = 'unheard'",
    )
    .await;

    within_a_second("B catches up after reconnecting", async || {
        tenant_of(&b, "unheard").await.display_name == "Unheard"
    })
    .await;
    stop(a, b).await;
}

on_both!(a_change_through_the_api_is_seen_by_the_very_next_call_on_the_same_server);

async fn a_change_through_the_api_is_seen_by_the_very_next_call_on_the_same_server(
    server: &TestServer,
) {
    let created = create(server, "own").await;
    let secret = create_key(server, "tenants/own", "", None).await.secret;
    let by_id = || resolve(server, Key::Id(created.id.clone()));
    by_id().await.expect("warm by id");
    tenant_of(server, "own").await;
    resolve_key(server, &secret).await.expect("warm by key");
    assert_ne!(quota(server, "own").await.0, 5, "the plan's limit");

    let request = proto::UpdateTenantRequest {
        tenant: Some(proto::Tenant {
            name: "tenants/own".into(),
            display_name: "Renamed".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    server
        .tenants()
        .update_tenant(request)
        .await
        .expect("rename");
    assert_eq!(tenant_of(server, "own").await.display_name, "Renamed");
    let by_key = resolve_key(server, &secret).await.expect("by key").tenant;
    assert_eq!(by_key.map(|t| t.display_name), Some("Renamed".into()));

    set_limits(server, "own", &[(RESOURCE, 5)]).await;
    assert_eq!(quota(server, "own").await, (5, 0, true));
    let request = consume("own", &[(RESOURCE, 5)]);
    server
        .quotas()
        .consume_quota(request)
        .await
        .expect("consume");
    assert_eq!(quota(server, "own").await, (5, 5, false));

    suspend(server, "own").await;
    let state = by_id().await.expect("by id").tenant.map(|t| t.state());
    assert_eq!(state, Some(State::Suspended));
    assert_eq!(
        check(server, "own").await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    let key = create_key(server, "tenants/own", "", None).await;
    resolve_key(server, &key.secret)
        .await
        .expect("a new key works at once");
    let name = key.api_key.expect("key").name;
    let request = proto::RevokeApiKeyRequest { name };
    server
        .tenants()
        .revoke_api_key(request)
        .await
        .expect("revoke");
    let refused = resolve_key(server, &key.secret).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    let missing = resolve(server, Key::Slug("later".into()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let later = create(server, "later").await;
    assert_eq!(tenant_of(server, "later").await.id, later.id);
}

/// A server on a fresh PostgreSQL catalog, and a second replica on the same catalog.
async fn replicas() -> (TestServer, TestServer) {
    let a = TestServer::start(Db::Postgres).await;
    let b = a.replica().await;
    (a, b)
}

async fn stop(a: TestServer, b: TestServer) {
    b.stop().await;
    a.stop().await;
}
