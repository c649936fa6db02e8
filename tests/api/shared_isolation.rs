//! SHARED isolation: one schema for every shared tenant, each row tagged with its tenant and
//! guarded by forced row-level security keyed on the session's `tenant_plane.tenant_id`.

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use tenant_plane::proto;

use crate::support::{Db, TestServer, assert_bad_field};

async fn create_shared(server: &TestServer, slug: &str) -> proto::Tenant {
    let tenant = proto::Tenant {
        slug: slug.into(),
        isolation: proto::Isolation::Shared as i32,
        ..Default::default()
    };
    server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(tenant),
            ..Default::default()
        })
        .await
        .expect("create a shared tenant")
        .into_inner()
}

/// The catalog URL with another user.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .expect(sql)
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tenants_see_only_their_own_rows_and_purging_one_keeps_the_other() {
    let server = TestServer::start(Db::Postgres).await;
    let a = create_shared(&server, "shared-a").await;
    let b = create_shared(&server, "shared-b").await;
    assert_eq!(a.state(), proto::tenant::State::Active);
    assert_eq!(
        (a.schema_name.as_str(), b.schema_name.as_str()),
        ("tenant_shared", "tenant_shared")
    );
    assert_eq!(b.migration_version, "m20261207_100005_tenant_scoped_keys");

    let admin = server.catalog().await;
    let secured = scalar(
        &admin,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'tenant_shared' AND c.relkind = 'r' AND c.relname <> 'seaql_migrations' \
           AND c.relrowsecurity AND c.relforcerowsecurity \
           AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')",
    )
    .await;
    assert_eq!(
        secured, 4,
        "users, projects, messages and audit_log are tagged and guarded"
    );
    for sql in [
        "CREATE ROLE app_user LOGIN",
        // The control plane revoked CONNECT on the catalog database from PUBLIC.
        "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO app_user', current_database()); END $$",
        "GRANT USAGE ON SCHEMA tenant_shared TO app_user",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenant_shared TO app_user",
    ] {
        admin.execute_unprepared(sql).await.expect(sql);
    }
    // One connection, so the session setting applies to every statement that follows.
    let mut options = ConnectOptions::new(as_user(&server.catalog_url, "app_user"));
    options.max_connections(1).sqlx_logging(false);
    let app = Database::connect(options)
        .await
        .expect("connect as app_user");
    let set = |id: &str| format!("SET tenant_plane.tenant_id = '{id}'");

    app.execute_unprepared(&set(&a.id)).await.expect("act as a");
    app.execute_unprepared(
        "INSERT INTO tenant_shared.users (id, email) VALUES (gen_random_uuid(), 'ann@a.example')",
    )
    .await
    .expect("a writes its own row");
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM tenant_shared.users").await,
        1
    );

    app.execute_unprepared(&set(&b.id)).await.expect("act as b");
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM tenant_shared.users").await,
        0,
        "b cannot see a's row"
    );
    let smuggled = app
        .execute_unprepared(&format!(
            "INSERT INTO tenant_shared.users (id, email, tenant_id) VALUES (gen_random_uuid(), 'x@b.example', '{}')",
            a.id
        ))
        .await;
    assert!(smuggled.is_err(), "b cannot write a row into a");
    app.execute_unprepared(
        "INSERT INTO tenant_shared.users (id, email) VALUES (gen_random_uuid(), 'bob@b.example')",
    )
    .await
    .expect("b writes its own row");
    app.execute_unprepared("RESET tenant_plane.tenant_id")
        .await
        .expect("no tenant");
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM tenant_shared.users").await,
        0,
        "no tenant set: no rows"
    );
    app.close().await.expect("close");

    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: a.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete a");
    server
        .provisioning()
        .deprovision_tenant(proto::DeprovisionTenantRequest {
            tenant: a.name.clone(),
            confirm_slug: a.slug.clone(),
            ..Default::default()
        })
        .await
        .expect("purge a");
    let rows = |tenant: &str| {
        format!("SELECT count(*) FROM tenant_shared.users WHERE tenant_id = '{tenant}'")
    };
    assert_eq!(scalar(&admin, &rows(&a.id)).await, 0, "a's rows are gone");
    assert_eq!(scalar(&admin, &rows(&b.id)).await, 1, "b's rows are kept");
    admin.close().await.expect("close");
    server.stop().await;
}

#[tokio::test]
async fn the_embedded_catalog_refuses_shared_isolation() {
    let server = TestServer::start(Db::Sqlite).await;
    let tenant = proto::Tenant {
        slug: "acme".into(),
        isolation: proto::Isolation::Shared as i32,
        ..Default::default()
    };
    let status = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(tenant),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&status, "tenant.isolation");
    assert!(server.catalog_snapshot().await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_the_shared_schema_moves_every_shared_tenant_and_a_rollout_does_it_once() {
    use crate::rollout_fleet::{FIFTH, SIXTH, all, finish, six_migrations, start, version_of};
    let server = TestServer::start_with_migrations(Db::Postgres, six_migrations(), |_| {}).await;
    let a = create_shared(&server, "shared-a").await;
    let b = create_shared(&server, "shared-b").await;

    server
        .migrations()
        .migrate_tenant(proto::MigrateTenantRequest {
            tenant: a.name.clone(),
            direction: proto::MigrationDirection::Down as i32,
            ..Default::default()
        })
        .await
        .expect("one step down through a");

    assert_eq!(
        version_of(&server, &b).await,
        FIFTH,
        "b shares a's schema, so it moved too"
    );
    let rollout = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            ..Default::default()
        },
    )
    .await;
    let ended = finish(&server, &rollout).await;
    assert_eq!(ended.state(), proto::rollout::State::Succeeded, "{ended:?}");
    let counts = ended.counts.expect("counts");
    assert_eq!(
        (counts.migrated, counts.skipped),
        (1, 1),
        "one schema, migrated once"
    );
    assert_eq!(version_of(&server, &a).await, SIXTH);
    assert_eq!(version_of(&server, &b).await, SIXTH);
    server.stop().await;
}
