//! Consumption batches on two replicas sharing one catalog: one caller's bad request id fails
//! that caller alone, and batches over the same rows queue instead of deadlocking.

use crate::quotas::{consume, set_limits, used};
use crate::support::{Db, TestServer, assert_bad_field, create};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

/// A consumption of one message carrying `request_id`.
fn with_id(slug: &str, request_id: uuid::Uuid) -> tenant_plane::proto::ConsumeQuotaRequest {
    let mut request = consume(slug, &[("messages_per_day", 1)]);
    request.request_id = request_id.to_string();
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_reused_on_another_replica_fails_only_its_own_call() {
    // Arrange: a tenant on each replica; every round, both replicas get the same request id
    // for different requests, each batched with unrelated callers of its own.
    let first = TestServer::start(Db::Postgres).await;
    let second = first.replica().await;
    create(&first, "left").await;
    create(&first, "right").await;
    let before = first.catalog_snapshot().await;
    const ROUNDS: usize = 25;
    const OTHERS: usize = 3;

    for round in 0..ROUNDS {
        let reused = uuid::Uuid::now_v7();
        let mut calls = Vec::new();
        for (server, slug) in [(&first, "left"), (&second, "right")] {
            let mut client = server.quotas();
            calls.push(tokio::spawn(async move {
                client.consume_quota(with_id(slug, reused)).await
            }));
            for _ in 0..OTHERS {
                let mut client = server.quotas();
                calls.push(tokio::spawn(async move {
                    client
                        .consume_quota(with_id(slug, uuid::Uuid::now_v7()))
                        .await
                }));
            }
        }
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.expect("call task"));
        }

        // Assert: every unrelated caller was admitted; of the two calls with the reused id,
        // one was admitted and the other refused as a reuse.
        let (reused_answers, others): (Vec<_>, Vec<_>) = answers
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % (OTHERS + 1) == 0);
        for (_, answer) in &others {
            assert!(
                answer.is_ok(),
                "round {round}: an unrelated call failed: {answer:?}"
            );
        }
        let refused: Vec<_> = reused_answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().err())
            .collect();
        assert_eq!(refused.len(), 1, "round {round}: {reused_answers:?}");
        assert_bad_field(refused[0], "request_id");
    }
    // Nothing refused was counted; the tenants themselves are unchanged.
    let total = used(&first, "left").await["messages_per_day"]
        + used(&first, "right").await["messages_per_day"];
    assert_eq!(total, (ROUNDS * (2 * OTHERS + 1)) as i64);
    assert_eq!(first.catalog_snapshot().await, before);
    second.stop().await;
    first.stop().await;
}

/// Deadlocks PostgreSQL has detected in the catalog database, once every other session of it
/// has ended (a session reports its counts as it ends).
async fn deadlocks_after_sessions_end(db: &DatabaseConnection) -> i64 {
    let backend = db.get_database_backend();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let others = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT COUNT(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            ))
            .await
            .expect("read sessions")
            .expect("a row")
            .try_get::<i64>("", "n")
            .expect("n");
        if others == 0 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let rows = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT application_name, state, query FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                ))
                .await
                .expect("read sessions");
            let sessions: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{:?}/{:?}",
                        r.try_get::<Option<String>>("", "state").ok().flatten(),
                        r.try_get::<Option<String>>("", "query").ok().flatten()
                    )
                })
                .collect();
            panic!("the servers' sessions did not end: {sessions:?}");
        }
        tokio::task::yield_now().await;
    }
    db.query_one_raw(Statement::from_string(
        backend,
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    ))
    .await
    .expect("read deadlocks")
    .expect("a row")
    .try_get::<i64>("", "deadlocks")
    .expect("deadlocks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_batching_the_same_counters_never_deadlock() {
    // Arrange: tenants whose consumptions always go to the catalog (an unlimited gauge is never
    // leased), so each replica's batches raise many of the same rows at once, in whatever
    // order its callers came.
    let first = TestServer::start(Db::Postgres).await;
    let second = first.replica().await;
    let slugs: Vec<String> = (0..8).map(|i| format!("busy-{i}")).collect();
    for slug in &slugs {
        create(&first, slug).await;
        set_limits(&first, slug, &[("users", -1)]).await;
        // Every row exists before the load, so batches raise them in one statement.
        first
            .quotas()
            .consume_quota(consume(slug, &[("users", 1)]))
            .await
            .expect("first use");
    }

    // Act: callers on both replicas, each going round the tenants from its own start.
    const CLIENTS: usize = 24;
    const CALLS: usize = 40;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = (if c % 2 == 0 { &first } else { &second }).quotas();
        let slugs = slugs.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..CALLS {
                let slug = &slugs[(c * 3 + i) % slugs.len()];
                client
                    .consume_quota(consume(slug, &[("users", 1)]))
                    .await
                    .unwrap_or_else(|s| panic!("consume: {s:?}"));
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }

    // Assert: every consumption counted, and PostgreSQL never had to break a deadlock.
    let mut total = 0;
    for slug in &slugs {
        total += used(&first, slug).await["users"];
    }
    assert_eq!(total, (slugs.len() + CLIENTS * CALLS) as i64);
    // One connection, so "every other session" is the servers' alone.
    let db = sea_orm::Database::connect(
        sea_orm::ConnectOptions::new(first.catalog_url.clone())
            .max_connections(1)
            .to_owned(),
    )
    .await
    .expect("connect to the catalog");
    second.stop().await;
    first.stop().await;
    assert_eq!(deadlocks_after_sessions_end(&db).await, 0);
    db.close().await.expect("close");
}
