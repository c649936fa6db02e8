//! Tenant roles with DATABASE and SHARED isolation, tried by logging in as them: a database of
//! its own that no other tenant's role may enter, and shared tables where row-level security
//! bound to the role shows it its own rows whatever it sets the tenant setting to.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tenant_plane::proto;

use crate::support::{Db, TestServer, column_of, new_tenant_on_plan};
use crate::tenant_roles::{
    catalog_database, connect_as, denied, location, log_in, purge, refused, role_exists,
};

pub(crate) async fn create_with(server: &TestServer, tenant: proto::Tenant) -> proto::Tenant {
    server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(tenant),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_tenants_role_connects_only_to_its_own_database() {
    let server = TestServer::start(Db::Postgres).await;
    // Databases are server-wide: unique slugs keep parallel or repeated runs apart.
    let unique = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let a = create_with(
        &server,
        new_tenant_on_plan(&format!("ent-a-{unique}"), "enterprise"),
    )
    .await;
    let b = create_with(
        &server,
        new_tenant_on_plan(&format!("ent-b-{unique}"), "enterprise"),
    )
    .await;
    assert_eq!(a.isolation(), proto::Isolation::Database);

    let (credentials, db) = log_in(&server, &a, &a.database_name).await;

    assert_eq!(location(&server, &a).await.role_name, credentials.role_name);
    db.execute_unprepared(
        "INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'ann@a.example')",
    )
    .await
    .expect("a's role writes a's database");
    assert_eq!(
        column_of(&db, "SELECT email AS name FROM users").await,
        ["ann@a.example"]
    );
    denied(&db, "CREATE SCHEMA sneaky").await;
    denied(&db, "CREATE TABLE extra (id integer)").await;
    denied(&db, "DELETE FROM seaql_migrations").await;
    db.close().await.expect("close");
    let other = connect_as(
        &server,
        &b.database_name,
        &credentials.role_name,
        &credentials.password,
    )
    .await
    .expect_err("b's database refuses a's role");
    assert!(
        other.to_string().contains("permission denied for database"),
        "{other}"
    );
    // The control plane revoked CONNECT on the catalog database from PUBLIC at start, and a
    // DATABASE tenant's role is granted it only on its own database.
    let catalog = connect_as(
        &server,
        &catalog_database(&server),
        &credentials.role_name,
        &credentials.password,
    )
    .await
    .expect_err("the catalog database refuses a's role");
    assert!(
        catalog
            .to_string()
            .contains("permission denied for database"),
        "{catalog}"
    );

    purge(&server, &a).await;

    assert!(!role_exists(&server, &credentials.role_name).await);
    assert!(!server.storage_exists(&a).await);
    assert!(server.storage_exists(&b).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_tenants_role_sees_only_its_own_rows_whatever_it_sets() {
    let server = TestServer::start(Db::Postgres).await;
    let shared = |slug: &str| proto::Tenant {
        slug: slug.into(),
        isolation: proto::Isolation::Shared as i32,
        ..Default::default()
    };
    let a = create_with(&server, shared("shared-a")).await;
    let b = create_with(&server, shared("shared-b")).await;
    let admin = server.catalog().await;
    admin
        .execute_unprepared(&format!(
            "INSERT INTO tenant_shared.users (id, email, tenant_id) \
             VALUES (gen_random_uuid(), 'bob@b.example', '{}')",
            b.id
        ))
        .await
        .expect("a row of b's");

    let (credentials, db) = log_in(&server, &a, &catalog_database(&server)).await;

    assert_eq!(
        count(&db, "SELECT count(*) FROM users").await,
        0,
        "b's row is not a's"
    );
    db.execute_unprepared(&format!(
        "INSERT INTO users (id, email, tenant_id) VALUES (gen_random_uuid(), 'ann@a.example', '{}'); \
         SET tenant_plane.tenant_id = '{}'; \
         INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'amy@a.example')",
        a.id, a.id
    ))
    .await
    .expect("a's role writes a's rows, named or by the setting");
    db.execute_unprepared(&format!("SET tenant_plane.tenant_id = '{}'", b.id))
        .await
        .expect("the role may set the setting");
    assert_eq!(
        column_of(&db, "SELECT email AS name FROM users ORDER BY 1").await,
        ["amy@a.example", "ann@a.example"],
        "naming b in the setting shows a's role nothing of b's"
    );
    for smuggle in [
        "INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'x@b.example')".to_owned(),
        format!("UPDATE users SET tenant_id = '{}'", b.id),
    ] {
        let error = refused(&db, &smuggle).await;
        assert!(error.contains("row-level security"), "{smuggle}: {error}");
    }
    db.execute_unprepared("DELETE FROM users")
        .await
        .expect("a's role deletes what it sees");
    assert_eq!(
        count(&db, "SELECT count(*) FROM tenant_plane_roles").await,
        1
    );
    denied(
        &db,
        "INSERT INTO tenant_plane_roles VALUES ('x', gen_random_uuid())",
    )
    .await;
    denied(&db, "SELECT * FROM public.tenants").await;
    denied(&db, "CREATE SCHEMA sneaky").await;
    denied(&db, "CREATE TABLE tenant_shared.extra (id integer)").await;
    db.close().await.expect("close");
    let rows_of = |t: &proto::Tenant| {
        format!(
            "SELECT count(*) FROM tenant_shared.users WHERE tenant_id = '{}'",
            t.id
        )
    };
    assert_eq!(count(&admin, &rows_of(&a)).await, 0);
    assert_eq!(
        count(&admin, &rows_of(&b)).await,
        1,
        "b's row survived a's delete"
    );

    purge(&server, &a).await;

    assert!(!role_exists(&server, &credentials.role_name).await);
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM tenant_shared.tenant_plane_roles"
        )
        .await,
        1,
        "only b's role is left in the role table"
    );
    assert_eq!(count(&admin, &rows_of(&b)).await, 1);
    admin.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_with_createrole_and_no_superuser_manages_roles_end_to_end() {
    // A catalog owned by an ordinary role with CREATEROLE and CREATEDB, as in production.
    let catalog_url = crate::support::postgres::fresh_database_url().await;
    let catalog = catalog_url
        .rsplit_once('/')
        .expect("a database")
        .1
        .to_owned();
    let control = format!("cp_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let admin = sea_orm::Database::connect(catalog_url.as_str())
        .await
        .expect("connect as the superuser");
    admin
        .execute_unprepared(&format!(
            "CREATE ROLE {control} LOGIN CREATEROLE CREATEDB; \
             ALTER DATABASE \"{catalog}\" OWNER TO {control}"
        ))
        .await
        .expect("an ordinary control-plane role");
    let (scheme, rest) = catalog_url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    let control_url = format!("{scheme}://{control}@{host}");
    let server = TestServer::start_with(Db::Postgres, |c| c.database_url = Some(control_url)).await;
    let unique = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let alpha = create_with(&server, crate::support::new_tenant("alpha")).await;
    let ent = create_with(
        &server,
        new_tenant_on_plan(&format!("ent-{unique}"), "enterprise"),
    )
    .await;
    assert_eq!(alpha.state(), proto::tenant::State::Active, "{alpha:?}");
    assert_eq!(ent.state(), proto::tenant::State::Active, "{ent:?}");

    let (alpha_role, alpha_db) = log_in(&server, &alpha, &catalog).await;
    let (ent_role, ent_db) = log_in(&server, &ent, &ent.database_name).await;

    alpha_db
        .execute_unprepared("INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'a@x')")
        .await
        .expect("alpha's role writes alpha's schema");
    denied(&alpha_db, "SELECT * FROM public.tenants").await;
    ent_db
        .execute_unprepared("INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'e@x')")
        .await
        .expect("ent's role writes ent's database");
    ent_db.close().await.expect("close");
    purge(&server, &alpha).await;
    purge(&server, &ent).await;
    assert!(
        alpha_db.execute_unprepared("SELECT 1").await.is_err(),
        "the role's session was ended, and it cannot log in again"
    );
    assert!(!role_exists(&server, &alpha_role.role_name).await);
    assert!(!role_exists(&server, &ent_role.role_name).await);
    server.stop().await;
    admin.close().await.expect("close");
}
