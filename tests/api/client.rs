//! The client library's tenant-scoped database access: one shared pool, every transaction inside
//! one tenant's data, on real PostgreSQL provisioned by a real control plane.

use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, EntityTrait, PaginatorTrait, Set, Statement,
};
use tenant_plane::config::IsolationSetting;
use tenant_plane::proto;
use tenant_plane_client::{
    ResolverSettings, TenantContext, TenantDb, TenantDbSettings, TenantKey, TenantResolver,
};

use crate::support::{Db, TestServer, create};

/// The sample tenant schema's `users` table, as an application service would declare it.
mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub name: Option<String>,
        pub created_at: DateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

async fn context(server: &TestServer, slug: &str) -> TenantContext {
    let resolver = TenantResolver::new(server.control_plane(), ResolverSettings::default());
    let key = TenantKey::parse(slug).expect("a slug");
    resolver.resolve(&key).await.expect("resolve")
}

async fn add_user(db: &TenantDb, tenant: &TenantContext, email: &str) {
    let txn = db.begin(tenant).await.expect("begin");
    users::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        email: Set(email.to_owned()),
        name: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .expect("insert a user");
    txn.commit().await.expect("commit");
}

async fn emails(db: &TenantDb, tenant: &TenantContext) -> Vec<String> {
    let txn = db.begin(tenant).await.expect("begin");
    let mut emails: Vec<String> = users::Entity::find()
        .all(&txn)
        .await
        .expect("list users")
        .into_iter()
        .map(|u| u.email)
        .collect();
    emails.sort();
    emails
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_tenants_see_only_their_own_rows_through_one_pool() {
    // Arrange
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "alpha").await;
    create(&server, "beta").await;
    let (a, b) = (
        context(&server, "alpha").await,
        context(&server, "beta").await,
    );
    let db = TenantDb::connect(
        ConnectOptions::new(server.catalog_url.clone()),
        TenantDbSettings::default(),
    )
    .await
    .expect("connect");

    // Act
    add_user(&db, &a, "ann@alpha.example").await;
    add_user(&db, &a, "amy@alpha.example").await;
    add_user(&db, &b, "bob@beta.example").await;

    // Assert
    assert_eq!(
        emails(&db, &a).await,
        ["amy@alpha.example", "ann@alpha.example"]
    );
    assert_eq!(emails(&db, &b).await, ["bob@beta.example"]);
    let txn = db.begin(&b).await.expect("begin");
    assert_eq!(users::Entity::find().count(&txn).await.expect("count"), 1);
    let row = txn
        .query_one_raw(Statement::from_string(
            txn.get_database_backend(),
            "SELECT current_setting('search_path') AS path, current_schema() AS schema",
        ))
        .await
        .expect("read the search path")
        .expect("a row");
    // The database quoted the name: a plain lowercase name needs no quotes.
    let path = row.try_get::<String>("", "path").expect("a path");
    assert_eq!(path, "tenant_beta");
    let schema = row.try_get::<String>("", "schema").expect("a schema");
    assert_eq!(
        schema, "tenant_beta",
        "unqualified names resolve in the tenant's schema"
    );
    txn.rollback().await.expect("rollback");
    db.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_rolls_back_and_hands_the_connection_to_the_next_tenant() {
    // Arrange: one connection, so the next borrower gets the very connection alpha used.
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "alpha").await;
    create(&server, "beta").await;
    let (a, b) = (
        context(&server, "alpha").await,
        context(&server, "beta").await,
    );
    let mut options = ConnectOptions::new(server.catalog_url.clone());
    options.max_connections(1);
    let db = TenantDb::connect(options, TenantDbSettings::default())
        .await
        .expect("connect");

    // Act
    let txn = db.begin(&a).await.expect("begin");
    txn.execute_unprepared("INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'x@a')")
        .await
        .expect("insert");
    drop(txn);
    add_user(&db, &b, "bob@beta.example").await;

    // Assert
    assert!(
        emails(&db, &a).await.is_empty(),
        "dropped means rolled back"
    );
    assert_eq!(emails(&db, &b).await, ["bob@beta.example"]);
    db.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_gets_no_transaction() {
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "alpha").await;
    server
        .tenants()
        .suspend_tenant(proto::SuspendTenantRequest {
            name: "tenants/alpha".into(),
            reason: "unpaid".into(),
            ..Default::default()
        })
        .await
        .expect("suspend");
    let a = context(&server, "alpha").await;
    let db = TenantDb::connect(
        ConnectOptions::new(server.catalog_url.clone()),
        TenantDbSettings::default(),
    )
    .await
    .expect("connect");

    let refused = db.begin(&a).await.expect_err("refused");

    assert_eq!(
        tonic::Status::from(refused).code(),
        tonic::Code::FailedPrecondition
    );
    server.stop().await;
}

/// The catalog URL with another user.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tenants_see_only_their_own_rows_through_row_level_security() {
    // Arrange: shared tenants, and an ordinary role (superusers bypass row-level security).
    let server = TestServer::start_with(Db::Postgres, |c| {
        c.tenant_isolation_strategy = Some(IsolationSetting::Shared);
    })
    .await;
    create(&server, "alpha").await;
    create(&server, "beta").await;
    let (a, b) = (
        context(&server, "alpha").await,
        context(&server, "beta").await,
    );
    assert_eq!(a.schema.as_deref(), Some("tenant_shared"));
    let role = crate::support::shared_tables_app_role(&server).await;
    let db = TenantDb::connect(
        ConnectOptions::new(as_user(&server.catalog_url, &role)),
        TenantDbSettings::default(),
    )
    .await
    .expect("connect as the application role");

    // Act
    add_user(&db, &a, "ann@alpha.example").await;
    add_user(&db, &b, "bob@beta.example").await;

    // Assert
    assert_eq!(emails(&db, &a).await, ["ann@alpha.example"]);
    assert_eq!(emails(&db, &b).await, ["bob@beta.example"]);
    db.close().await.expect("close");
    server.stop().await;
}

async fn count_users(db: &TenantDb, tenant: &TenantContext) -> i64 {
    let txn = db.begin(tenant).await.expect("begin");
    let row = txn
        .query_one_raw(Statement::from_string(
            txn.get_database_backend(),
            "SELECT count(*) AS n FROM users",
        ))
        .await
        .expect("count")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_tenants_on_postgres_each_get_their_own_database_through_a_bounded_set_of_pools() {
    let server = TestServer::start_with(Db::Postgres, |c| {
        c.tenant_isolation_strategy = Some(IsolationSetting::Database);
    })
    .await;
    create(&server, "alpha").await;
    create(&server, "beta").await;
    let (a, b) = (
        context(&server, "alpha").await,
        context(&server, "beta").await,
    );
    let db = TenantDb::connect(
        ConnectOptions::new(server.catalog_url.clone()),
        // One pool at a time: every switch of tenant closes one pool and opens the other.
        TenantDbSettings {
            tenant_databases: std::num::NonZeroUsize::MIN,
            ..TenantDbSettings::default()
        },
    )
    .await
    .expect("connect");

    add_user(&db, &a, "ann@alpha.example").await;

    assert_eq!(emails(&db, &a).await, ["ann@alpha.example"]);
    assert!(emails(&db, &b).await.is_empty());
    assert_eq!(emails(&db, &a).await, ["ann@alpha.example"]);
    db.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_tenants_on_sqlite_each_get_their_own_file() {
    let server = TestServer::start(Db::Sqlite).await;
    create(&server, "alpha").await;
    create(&server, "beta").await;
    let (a, b) = (
        context(&server, "alpha").await,
        context(&server, "beta").await,
    );
    let settings = TenantDbSettings {
        sqlite_dir: Some(server.data_dir().join("tenants")),
        ..TenantDbSettings::default()
    };
    let db = TenantDb::connect(ConnectOptions::new(server.catalog_url.clone()), settings)
        .await
        .expect("connect");

    let txn = db.begin(&a).await.expect("begin");
    txn.execute_unprepared("INSERT INTO users (id, email) VALUES (x'00', 'ann@alpha.example')")
        .await
        .expect("insert");
    txn.commit().await.expect("commit");

    assert_eq!(count_users(&db, &a).await, 1);
    assert_eq!(count_users(&db, &b).await, 0);
    db.close().await.expect("close");
    server.stop().await;
}

#[test]
fn the_client_and_the_control_plane_agree_on_what_can_be_a_slug() {
    // The client repeats the slug rules so its layer can tell, without a call, whether a
    // subdomain or path names a tenant at all; this keeps the copy true.
    let long = "a".repeat(63);
    let too_long = "a".repeat(64);
    let samples = [
        "acme",
        "acme-2",
        "a",
        long.as_str(),
        too_long.as_str(),
        "",
        "Acme",
        "2acme",
        "-acme",
        "acme-",
        "a--b",
        "a_b",
        "a.b",
        "www",
        "api",
        "shared",
        "postgres",
        "template1",
        "pg-x",
        "pgx",
        "a190f1f4-8a5e-7c3b-9d2e-1f2a3b4c5d6e",
        "ä",
    ];
    for text in samples {
        assert_eq!(
            tenant_plane_client::Slug::parse(text).is_ok(),
            tenant_plane::domain::Slug::parse(text).is_ok(),
            "{text:?}"
        );
    }
}
