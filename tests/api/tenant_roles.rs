//! Least-privilege tenant roles on PostgreSQL, tried by logging in as them: a SCHEMA tenant's
//! role reaches its own tables (also ones a later migration adds) and nothing else, a rotated
//! password replaces the old one, and purging the tenant drops the role.
//!
//! The test cluster trusts every login (`initdb -A trust`), which would make any password work:
//! [`require_password`] makes it check the passwords of the roles under test.

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait,
};
use tenant_plane::proto;

use crate::support::{Db, TestServer, column_of, create};

/// How long a reloaded pg_hba.conf may take to be in force.
const HBA_RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// RotateTenantCredentials, which must succeed.
pub(crate) async fn rotate(
    server: &TestServer,
    tenant: &proto::Tenant,
) -> proto::RotateTenantCredentialsResponse {
    server
        .tenants()
        .rotate_tenant_credentials(proto::RotateTenantCredentialsRequest {
            name: tenant.name.clone(),
        })
        .await
        .unwrap_or_else(|s| panic!("rotate the credentials of {}: {s:?}", tenant.slug))
        .into_inner()
}

/// The database of the server's catalog.
pub(crate) fn catalog_database(server: &TestServer) -> String {
    let path = server.catalog_url.split('?').next().unwrap_or_default();
    path.rsplit_once('/').expect("a database").1.to_owned()
}

/// The URL of `database` on the catalog's server, logging in as `role` with `password`.
pub(crate) fn url_as(server: &TestServer, database: &str, role: &str, password: &str) -> String {
    let url = server.postgres_url_of(database);
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}:{password}@{host}")
}

/// One connection to `database` as `role`; the error when the server refuses the login.
pub(crate) async fn connect_as(
    server: &TestServer,
    database: &str,
    role: &str,
    password: &str,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url_as(server, database, role, password));
    options.max_connections(1).sqlx_logging(false);
    Database::connect(options).await
}

/// Runs `sql`, which must fail, and returns the error's text.
pub(crate) async fn refused(db: &DatabaseConnection, sql: &str) -> String {
    match db.execute_unprepared(sql).await {
        Ok(_) => panic!("the tenant role was allowed to run {sql}"),
        Err(e) => e.to_string(),
    }
}

/// Runs `sql`, which must fail with "permission denied".
pub(crate) async fn denied(db: &DatabaseConnection, sql: &str) {
    let error = refused(db, sql).await;
    assert!(error.contains("permission denied"), "{sql}: {error}");
}

pub(crate) async fn role_exists(server: &TestServer, role: &str) -> bool {
    let admin = server.catalog().await;
    let found = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            [role.into()],
        ))
        .await
        .expect("look for the role")
        .is_some();
    admin.close().await.expect("close");
    found
}

/// Deletes and purges `tenant`.
pub(crate) async fn purge(server: &TestServer, tenant: &proto::Tenant) {
    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: tenant.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete");
    server
        .provisioning()
        .deprovision_tenant(proto::DeprovisionTenantRequest {
            tenant: tenant.name.clone(),
            confirm_slug: tenant.slug.clone(),
            ..Default::default()
        })
        .await
        .expect("purge");
}

/// ResolveTenant's location for `tenant`.
pub(crate) async fn location(server: &TestServer, tenant: &proto::Tenant) -> proto::DataLocation {
    server
        .tenants()
        .resolve_tenant(proto::ResolveTenantRequest {
            key: Some(proto::resolve_tenant_request::Key::Id(tenant.id.clone())),
        })
        .await
        .expect("resolve")
        .into_inner()
        .location
        .expect("a location")
}

/// Makes the server check `role`'s password on TCP logins: a line for it at the top of
/// pg_hba.conf, a reload, and a wait until a wrong password is refused. A server that already
/// checks passwords is left alone.
pub(crate) async fn require_password(server: &TestServer, role: &str) {
    let database = catalog_database(server);
    if connect_as(server, &database, role, "wrong").await.is_err() {
        return;
    }
    let admin = Database::connect(server.postgres_url_of("postgres"))
        .await
        .expect("connect to the maintenance database");
    let txn = admin.begin().await.expect("begin");
    // Tests of one process share the cluster: one rewrite of the file at a time.
    txn.execute_unprepared("SELECT pg_advisory_xact_lock(7407)")
        .await
        .expect("lock");
    let text = |sql: &str| {
        let sql = sql.to_owned();
        let txn = &txn;
        async move {
            txn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .expect("read the server's settings")
                .expect("a row")
                .try_get::<String>("", "v")
                .expect("text")
        }
    };
    let path = text("SELECT current_setting('hba_file') AS v").await;
    let current = text("SELECT pg_read_file(current_setting('hba_file')) AS v").await;
    // Rules only (COPY would escape the tabs and backslashes comments may hold).
    let lines: Vec<String> =
        std::iter::once(format!("host all \"{role}\" 127.0.0.1/32 scram-sha-256"))
            .chain(
                current
                    .lines()
                    .map(|l| l.replace('\t', " ").trim().to_owned())
                    .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains('\\')),
            )
            .collect();
    let rows: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("({i}, '{}')", l.replace('\'', "''")))
        .collect();
    txn.execute_unprepared(&format!(
        "COPY (SELECT line FROM (VALUES {}) AS hba(n, line) ORDER BY n) TO '{}'",
        rows.join(", "),
        path.replace('\'', "''")
    ))
    .await
    .expect("write pg_hba.conf (the test server must be ours, or check passwords already)");
    txn.execute_unprepared("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    txn.commit().await.expect("commit");
    admin.close().await.expect("close");
    // The postmaster reloads on a signal and says nothing when done: ask until it is in force.
    crate::support::eventually(
        &format!("pg_hba.conf refusing {role} without its password"),
        HBA_RELOAD_WAIT,
        async || {
            let refused = connect_as(server, &database, role, "wrong").await.is_err();
            refused.then_some(())
        },
    )
    .await;
}

/// Rotates `tenant`'s credentials and logs in with them to `database`.
pub(crate) async fn log_in(
    server: &TestServer,
    tenant: &proto::Tenant,
    database: &str,
) -> (proto::RotateTenantCredentialsResponse, DatabaseConnection) {
    let credentials = rotate(server, tenant).await;
    require_password(server, &credentials.role_name).await;
    let db = connect_as(
        server,
        database,
        &credentials.role_name,
        &credentials.password,
    )
    .await
    .unwrap_or_else(|e| panic!("log in as {}: {e}", credentials.role_name));
    (credentials, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_tenants_role_reaches_its_own_tables_and_nothing_else() {
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    let bravo = create(&server, "bravo").await;
    let catalog = catalog_database(&server);

    let (credentials, db) = log_in(&server, &alpha, &catalog).await;

    assert_eq!(
        location(&server, &alpha).await.role_name,
        credentials.role_name
    );
    assert!(
        credentials.role_name.starts_with("tenant_alpha_"),
        "{}",
        credentials.role_name
    );
    assert_ne!(
        location(&server, &bravo).await.role_name,
        credentials.role_name
    );
    db.execute_unprepared(
        "INSERT INTO users (id, email) VALUES ('01900000-0000-7000-8000-00000000000a', 'ann@alpha.example'); \
         UPDATE users SET name = 'Ann'; \
         INSERT INTO projects (id, owner_id, title) \
           VALUES (gen_random_uuid(), '01900000-0000-7000-8000-00000000000a', 'p')",
    )
    .await
    .expect("alpha's role writes alpha's tables, found on its search_path");
    assert_eq!(
        column_of(&db, "SELECT name FROM users").await,
        ["Ann"],
        "and reads them"
    );
    assert_eq!(
        column_of(
            &db,
            "SELECT version AS name FROM seaql_migrations ORDER BY 1"
        )
        .await
        .len(),
        5,
        "it may read its version table"
    );
    denied(&db, "SELECT * FROM tenant_bravo.users").await;
    denied(
        &db,
        "INSERT INTO tenant_bravo.users (id, email) VALUES (gen_random_uuid(), 'x')",
    )
    .await;
    denied(&db, "CREATE SCHEMA sneaky").await;
    denied(&db, "SELECT * FROM public.tenants").await;
    denied(&db, "SELECT * FROM public.api_keys").await;
    denied(&db, "CREATE TABLE tenant_alpha.extra (id integer)").await;
    let drop = refused(&db, "DROP TABLE users").await;
    assert!(drop.contains("must be owner"), "{drop}");
    denied(&db, "DELETE FROM seaql_migrations").await;
    db.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_a_later_migration_adds_are_granted_to_the_role_too() {
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    let catalog = catalog_database(&server);
    let (_, db) = log_in(&server, &alpha, &catalog).await;
    let migrate = |direction: proto::MigrationDirection, target: &str| {
        let request = proto::MigrateTenantRequest {
            tenant: alpha.name.clone(),
            target_version: target.to_owned(),
            direction: direction as i32,
            ..Default::default()
        };
        let mut client = server.migrations();
        async move { client.migrate_tenant(request).await.expect("migrate") }
    };

    migrate(
        proto::MigrationDirection::Down,
        "m20261123_100001_create_users",
    )
    .await;
    migrate(proto::MigrationDirection::Up, "").await;

    db.execute_unprepared(
        "INSERT INTO users (id, email) VALUES ('01900000-0000-7000-8000-00000000000b', 'bo@alpha.example'); \
         INSERT INTO projects (id, owner_id, title) \
           VALUES (gen_random_uuid(), '01900000-0000-7000-8000-00000000000b', 'new')",
    )
    .await
    .expect("projects, made again by the control plane, is the role's to use");
    assert_eq!(
        column_of(&db, "SELECT title AS name FROM projects").await,
        ["new"]
    );
    db.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rotation_refuses_the_old_password_and_purging_drops_the_role() {
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    let catalog = catalog_database(&server);
    let (first, db) = log_in(&server, &alpha, &catalog).await;
    db.close().await.expect("close");

    let second = rotate(&server, &alpha).await;

    assert_eq!(second.role_name, first.role_name);
    assert_ne!(second.password, first.password);
    let old = connect_as(&server, &catalog, &first.role_name, &first.password)
        .await
        .expect_err("the old password is refused");
    assert!(
        old.to_string().contains("password authentication failed"),
        "{old}"
    );
    connect_as(&server, &catalog, &second.role_name, &second.password)
        .await
        .expect("the new password works")
        .close()
        .await
        .expect("close");
    let admin = server.catalog().await;
    let stored = column_of(
        &admin,
        &format!(
            "SELECT rolpassword AS name FROM pg_authid WHERE rolname = '{}'",
            second.role_name
        ),
    )
    .await;
    admin.close().await.expect("close");
    assert!(stored[0].starts_with("SCRAM-SHA-256$4096:"), "{stored:?}");
    assert!(!stored[0].contains(&second.password));

    purge(&server, &alpha).await;

    assert!(!role_exists(&server, &second.role_name).await);
    assert!(
        connect_as(&server, &catalog, &second.role_name, &second.password)
            .await
            .is_err()
    );
    let resolved = location(&server, &alpha).await;
    assert_eq!(resolved.role_name, "", "a purged tenant has no role");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_public_may_not_connect_to_the_catalog_each_role_is_granted_connect() {
    let server = TestServer::start(Db::Postgres).await;
    let catalog = catalog_database(&server);
    let admin = server.catalog().await;
    admin
        .execute_unprepared(&format!(
            "REVOKE CONNECT ON DATABASE \"{catalog}\" FROM PUBLIC"
        ))
        .await
        .expect("revoke CONNECT from PUBLIC");
    admin.close().await.expect("close");

    // At once: each grant rewrites the catalog database's row.
    let (alpha, bravo, charlie) = tokio::join!(
        create(&server, "alpha"),
        create(&server, "bravo"),
        create(&server, "charlie")
    );

    for tenant in [&alpha, &bravo, &charlie] {
        assert_eq!(tenant.state(), proto::tenant::State::Active, "{tenant:?}");
    }
    let (credentials, db) = log_in(&server, &alpha, &catalog).await;
    assert!(
        column_of(&db, "SELECT email AS name FROM users")
            .await
            .is_empty()
    );
    db.close().await.expect("close");
    tokio::join!(purge(&server, &alpha), purge(&server, &bravo));
    assert!(!role_exists(&server, &credentials.role_name).await);
    server.stop().await;
}

/// Provisioning's cost must not grow with the fleet: tenant roles connect to the catalog
/// database through one connect role, so the database's privileges (one row that each grant
/// would rewrite whole) stay as long whatever the number of tenants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_roles_connect_through_one_role_and_the_catalog_databases_privileges_stay_short() {
    let server = TestServer::start(Db::Postgres).await;
    let catalog = catalog_database(&server);
    let admin = server.catalog().await;
    let privileges = "SELECT cardinality(datacl)::text AS name FROM pg_database \
                      WHERE datname = current_database()";
    let alpha = create(&server, "alpha").await;
    let after_one = column_of(&admin, privileges).await;

    let bravo = create(&server, "bravo").await;
    let charlie = create(&server, "charlie").await;

    assert_eq!(column_of(&admin, privileges).await, after_one);
    let mut roles = Vec::new();
    for tenant in [&alpha, &bravo, &charlie] {
        roles.push(format!("'{}'", location(&server, tenant).await.role_name));
    }
    let connect_roles = column_of(
        &admin,
        &format!(
            "SELECT DISTINCT g.rolname::text || ' ' || g.rolcanlogin::text || ' ' \
               || has_database_privilege(g.oid, current_database(), 'CONNECT')::text AS name \
             FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
               JOIN pg_roles r ON r.oid = m.member \
             WHERE r.rolname IN ({})",
            roles.join(", ")
        ),
    )
    .await;
    admin.close().await.expect("close");
    assert_eq!(
        connect_roles.len(),
        1,
        "every tenant role is a member of one role, and only of it: {connect_roles:?}"
    );
    assert!(
        connect_roles[0].starts_with("tenant-plane-connect-")
            && connect_roles[0].ends_with(" false true"),
        "the connect role may not log in, and may connect: {connect_roles:?}"
    );
    let (_, db) = log_in(&server, &charlie, &catalog).await;
    assert!(
        column_of(&db, "SELECT email AS name FROM users")
            .await
            .is_empty()
    );
    db.close().await.expect("close");
    server.stop().await;
}
