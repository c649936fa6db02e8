//! Provisioning on PostgreSQL alone: schema isolation between tenants, a database of its own for
//! the enterprise plan, and a connection count that does not grow with the number of tenants.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait,
};
use tenant_plane::proto::{self, tenant::State};

use crate::support::{
    Db, SAMPLE_MIGRATIONS, SAMPLE_TABLES, TestServer, column_of, create, new_tenant_on_plan,
};

/// Tenants created by the connection-count test: the 500 the issue asks for. They provision in
/// about 10 s on the 2-core test machine (run alone), within the ~60 s budget.
const MANY_TENANTS: usize = 500;

async fn one_value(txn: &DatabaseTransaction, sql: &str, value: &str) -> Option<String> {
    txn.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [value.into()],
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .and_then(|row| row.try_get::<Option<String>>("", "v").expect("v"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_search_path_never_reaches_another_tenants_schema() {
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    create(&server, "bravo").await;
    let catalog = server.catalog().await;
    catalog
        .execute_unprepared(
            "INSERT INTO \"tenant_alpha\".users (id, email) \
             VALUES ('01900000-0000-7000-8000-00000000000a', 'ann@alpha.example'); \
             CREATE TABLE \"tenant_alpha\".alpha_only (id INTEGER)",
        )
        .await
        .expect("a row and a table of alpha's own");
    let bravo_schema = server
        .tenants()
        .resolve_tenant(proto::ResolveTenantRequest {
            key: Some(proto::resolve_tenant_request::Key::Slug("bravo".into())),
        })
        .await
        .expect("resolve bravo")
        .into_inner()
        .location
        .expect("location")
        .schema_name;
    assert_eq!(bravo_schema, "tenant_bravo");

    let txn = catalog.begin().await.expect("begin");
    txn.execute_unprepared(&format!("SET LOCAL search_path TO \"{bravo_schema}\""))
        .await
        .expect("bravo's search_path");
    let users = column_of_txn(&txn, "SELECT email AS name FROM users").await;
    let alpha_only = one_value(
        &txn,
        "SELECT CAST(to_regclass($1) AS TEXT) AS v",
        "alpha_only",
    )
    .await;
    let mut resolved_in = Vec::new();
    for table in SAMPLE_TABLES {
        resolved_in.push(
            one_value(
                &txn,
                "SELECT CAST(n.nspname AS TEXT) AS v FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
                table,
            )
            .await,
        );
    }
    txn.rollback().await.expect("rollback");

    assert!(users.is_empty(), "bravo sees alpha's users: {users:?}");
    assert_eq!(alpha_only, None, "alpha's own table resolves from bravo");
    assert!(
        resolved_in
            .iter()
            .all(|schema| schema.as_deref() == Some("tenant_bravo")),
        "{resolved_in:?}"
    );

    let txn = catalog.begin().await.expect("begin");
    txn.execute_unprepared("SET LOCAL search_path TO \"tenant_alpha\"")
        .await
        .expect("alpha's search_path");
    assert_eq!(
        column_of_txn(&txn, "SELECT email AS name FROM users").await,
        ["ann@alpha.example"],
        "the row is there, for alpha"
    );
    txn.rollback().await.expect("rollback");
    let txn = catalog.begin().await.expect("begin");
    let in_default = one_value(&txn, "SELECT CAST(to_regclass($1) AS TEXT) AS v", "users").await;
    txn.rollback().await.expect("rollback");
    assert_eq!(
        in_default, None,
        "tenant tables are not on the catalog's search_path"
    );
    catalog.close().await.expect("close");
    assert_eq!(server.tenant_versions(&alpha).await, SAMPLE_MIGRATIONS);
    server.stop().await;
}

async fn column_of_txn(txn: &DatabaseTransaction, sql: &str) -> Vec<String> {
    txn.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.try_get::<String>("", "name").expect("name"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enterprise_tenant_gets_a_database_of_its_own_which_purge_drops() {
    let server = TestServer::start(Db::Postgres).await;
    // Databases are server-wide: a unique slug keeps parallel or repeated runs apart.
    let slug = format!("ent-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let database = format!("tenant_{}", slug.replace('-', "_"));

    let created = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant_on_plan(&slug, "enterprise")),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();

    assert_eq!(created.state(), State::Active);
    assert_eq!(created.isolation(), proto::Isolation::Database);
    assert_eq!(created.database_name, database);
    assert!(created.schema_name.is_empty());
    let catalog = server.catalog().await;
    let listed = column_of(
        &catalog,
        &format!(
            "SELECT CAST(datname AS TEXT) AS name FROM pg_database WHERE datname = '{database}'"
        ),
    )
    .await;
    assert_eq!(listed, [database.as_str()]);
    let own = Database::connect(server.postgres_url_of(&database))
        .await
        .expect("connect to the tenant's database");
    let tables = column_of(
        &own,
        "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    own.close().await.expect("close");
    assert_eq!(tables, SAMPLE_TABLES);
    assert_eq!(server.tenant_versions(&created).await, SAMPLE_MIGRATIONS);
    let in_catalog = column_of(
        &catalog,
        "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
         WHERE table_name IN ('users', 'seaql_migrations')",
    )
    .await;
    assert!(in_catalog.is_empty(), "{in_catalog:?}");

    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: created.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete");
    assert!(
        server.storage_exists(&created).await,
        "a plain delete keeps it"
    );
    server
        .provisioning()
        .deprovision_tenant(proto::DeprovisionTenantRequest {
            tenant: created.name.clone(),
            confirm_slug: slug.clone(),
            ..Default::default()
        })
        .await
        .expect("purge");

    assert!(
        !server.storage_exists(&created).await,
        "the database is dropped"
    );
    catalog.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stay_within_the_pool_while_many_tenants_are_provisioned() {
    let server = TestServer::start_with(Db::Postgres, |c| c.pool_size = 4).await;
    let mut options = ConnectOptions::new(server.catalog_url.clone());
    options.max_connections(1).sqlx_logging(false);
    let sampler_conn = Database::connect(options)
        .await
        .expect("sampler connection");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            // Client backends only: an autovacuum worker on the database is not a connection.
            let sql = "SELECT count(*) AS n FROM pg_stat_activity \
                       WHERE datname = current_database() AND backend_type = 'client backend'";
            let (mut most, mut samples) = (0_i64, 0_usize);
            let mut every = tokio::time::interval(Duration::from_millis(50));
            while !done.load(Ordering::SeqCst) {
                every.tick().await;
                let n: i64 = sampler_conn
                    .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                    .await
                    .expect("sample pg_stat_activity")
                    .expect("a row")
                    .try_get("", "n")
                    .expect("n");
                most = most.max(n);
                samples += 1;
            }
            sampler_conn.close().await.expect("close");
            (most, samples)
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (mut client, next) = (server.tenants(), next.clone());
            tokio::spawn(async move {
                let mut states = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= MANY_TENANTS {
                        return states;
                    }
                    let tenant = client
                        .create_tenant(proto::CreateTenantRequest {
                            tenant: Some(crate::support::new_tenant(&format!("many-{i}"))),
                            ..Default::default()
                        })
                        .await
                        .unwrap_or_else(|s| panic!("create many-{i}: {s:?}"))
                        .into_inner();
                    states.push(tenant.state());
                }
            })
        })
        .collect();
    let mut states = Vec::new();
    for client in clients {
        states.extend(client.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (most, samples) = sampler.await.expect("sampler task");

    assert_eq!(states.len(), MANY_TENANTS);
    assert!(states.iter().all(|s| *s == State::Active), "{states:?}");
    assert!(samples >= 2, "only {samples} samples in {elapsed:?}");
    assert!(most >= 2, "the sampler saw no server connection ({most})");
    assert!(
        most <= 4 + 1 + 1,
        "{most} connections to the catalog database with a pool of 4 (+1 change listener, +1 sampler)"
    );
    let snapshot = server.catalog_snapshot().await;
    assert_eq!(snapshot.len(), MANY_TENANTS);
    assert!(snapshot.iter().all(|(_, _, state, _)| state == "ACTIVE"));
    let catalog = server.catalog().await;
    let schemas = column_of(
        &catalog,
        "SELECT CAST(count(*) AS TEXT) AS name FROM pg_namespace WHERE nspname LIKE 'tenant_many_%'",
    )
    .await;
    catalog.close().await.expect("close");
    assert_eq!(schemas, [MANY_TENANTS.to_string()]);
    eprintln!("{MANY_TENANTS} tenants provisioned in {elapsed:?}, at most {most} connections");
    server.stop().await;
}
