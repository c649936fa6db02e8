//! A tenant's role may log in only while the tenant is neither suspended nor deleted, tried by
//! logging in as it: suspending or deleting the tenant refuses new logins and ends the role's
//! open sessions, resuming or undeleting lets the same password in again, for SCHEMA, DATABASE
//! and SHARED isolation, and no other tenant's role is touched.

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tenant_plane::proto;

use crate::support::{Db, TestServer, create, new_tenant, new_tenant_on_plan};
use crate::tenant_roles::{catalog_database, connect_as, location, log_in, rotate};
use crate::tenant_roles_isolation::create_with;

async fn suspend(server: &TestServer, tenant: &proto::Tenant) {
    server
        .tenants()
        .suspend_tenant(proto::SuspendTenantRequest {
            name: tenant.name.clone(),
            reason: "invoice unpaid".into(),
            etag: String::new(),
        })
        .await
        .expect("suspend");
}

async fn resume(server: &TestServer, tenant: &proto::Tenant) {
    server
        .tenants()
        .resume_tenant(proto::ResumeTenantRequest {
            name: tenant.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("resume");
}

async fn delete(server: &TestServer, tenant: &proto::Tenant) {
    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: tenant.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete");
}

async fn undelete(server: &TestServer, tenant: &proto::Tenant) {
    server
        .tenants()
        .undelete_tenant(proto::UndeleteTenantRequest {
            name: tenant.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("undelete");
}

/// A session held open on `db`'s one connection: a transaction that has run a statement.
async fn open_session(db: &DatabaseConnection) -> DatabaseTransaction {
    let session = db.begin().await.expect("begin");
    session
        .execute_unprepared("SELECT 1")
        .await
        .expect("the session works");
    session
}

/// Logs in to `database` as `role`, which must work, and logs out again.
async fn logs_in(server: &TestServer, database: &str, role: &str, password: &str) {
    connect_as(server, database, role, password)
        .await
        .unwrap_or_else(|e| panic!("log in as {role}: {e}"))
        .close()
        .await
        .expect("close");
}

/// Logs in to `database` as `role`, which the server must refuse for the role, not the password.
async fn login_refused(server: &TestServer, database: &str, role: &str, password: &str) {
    let error = connect_as(server, database, role, password)
        .await
        .expect_err("the role may not log in");
    assert!(
        error.to_string().contains("not permitted to log in"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_or_deleted_tenants_role_cannot_log_in_until_it_is_resumed_or_undeleted() {
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    let catalog = catalog_database(&server);
    let (credentials, db) = log_in(&server, &alpha, &catalog).await;
    let (role, password) = (&credentials.role_name, &credentials.password);
    let session = open_session(&db).await;

    suspend(&server, &alpha).await;

    assert!(
        session.execute_unprepared("SELECT 1").await.is_err(),
        "suspending ended the open session"
    );
    drop(session);
    db.close().await.ok();
    login_refused(&server, &catalog, role, password).await;
    resume(&server, &alpha).await;
    logs_in(&server, &catalog, role, password).await;
    delete(&server, &alpha).await;
    login_refused(&server, &catalog, role, password).await;
    undelete(&server, &alpha).await;
    logs_in(&server, &catalog, role, password).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_tenants_role_loses_its_own_database_while_the_tenant_is_suspended() {
    let server = TestServer::start(Db::Postgres).await;
    // Databases are server-wide: a unique slug keeps parallel or repeated runs apart.
    let unique = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let ent = create_with(
        &server,
        new_tenant_on_plan(&format!("ent-{unique}"), "enterprise"),
    )
    .await;
    assert_eq!(ent.isolation(), proto::Isolation::Database);
    let (credentials, db) = log_in(&server, &ent, &ent.database_name).await;
    let (role, password) = (&credentials.role_name, &credentials.password);
    let session = open_session(&db).await;

    suspend(&server, &ent).await;

    assert!(
        session.execute_unprepared("SELECT 1").await.is_err(),
        "the session in the tenant's own database was ended too"
    );
    drop(session);
    db.close().await.ok();
    login_refused(&server, &ent.database_name, role, password).await;
    resume(&server, &ent).await;
    logs_in(&server, &ent.database_name, role, password).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_a_shared_tenant_leaves_the_other_tenants_roles_logged_in() {
    let server = TestServer::start(Db::Postgres).await;
    let shared = |slug: &str| proto::Tenant {
        isolation: proto::Isolation::Shared as i32,
        ..new_tenant(slug)
    };
    let a = create_with(&server, shared("shared-a")).await;
    let b = create_with(&server, shared("shared-b")).await;
    let c = create(&server, "charlie").await;
    let catalog = catalog_database(&server);
    let (a_login, a_db) = log_in(&server, &a, &catalog).await;
    let (b_login, b_db) = log_in(&server, &b, &catalog).await;
    let (c_login, c_db) = log_in(&server, &c, &catalog).await;
    let b_session = open_session(&b_db).await;
    let c_session = open_session(&c_db).await;

    suspend(&server, &a).await;

    login_refused(&server, &catalog, &a_login.role_name, &a_login.password).await;
    for (session, login) in [(&b_session, &b_login), (&c_session, &c_login)] {
        session
            .execute_unprepared("SELECT 1")
            .await
            .unwrap_or_else(|e| panic!("{}'s session is still open: {e}", login.role_name));
        logs_in(&server, &catalog, &login.role_name, &login.password).await;
    }
    drop((b_session, c_session));
    for db in [a_db, b_db, c_db] {
        db.close().await.ok();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotated_while_suspended_works_once_the_tenant_is_resumed() {
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    let catalog = catalog_database(&server);
    let (first, db) = log_in(&server, &alpha, &catalog).await;
    db.close().await.expect("close");
    suspend(&server, &alpha).await;

    let second = rotate(&server, &alpha).await;

    assert_eq!(second.role_name, first.role_name);
    login_refused(&server, &catalog, &second.role_name, &second.password).await;
    resume(&server, &alpha).await;
    logs_in(&server, &catalog, &second.role_name, &second.password).await;
    let old = connect_as(&server, &catalog, &first.role_name, &first.password)
        .await
        .expect_err("the old password is refused");
    assert!(
        old.to_string().contains("password authentication failed"),
        "{old}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_a_role_is_suspended_deleted_and_restored_as_before() {
    let server = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    let acme = create(&server, "acme").await;
    assert_eq!(location(&server, &acme).await.role_name, "", "no role yet");

    suspend(&server, &acme).await;
    resume(&server, &acme).await;
    delete(&server, &acme).await;
    undelete(&server, &acme).await;

    let tenant = server
        .tenants()
        .get_tenant(proto::GetTenantRequest {
            name: acme.name.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(tenant.state(), proto::tenant::State::Provisioning);
    server.stop().await;
}

/// A tenant suspended while its provisioning waits to commit ends with a role that may not log
/// in: the provisioning locks the tenant's row and reads its state before it commits the role.
/// A first provisioning, which makes the tenant's schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_suspended_during_its_provisioning_gets_a_role_that_may_not_log_in() {
    suspended_midway(false).await;
}

/// The same where the tenant's (marked) schema was made beforehand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_suspended_during_a_provisioning_into_its_schema_gets_a_role_that_may_not_log_in()
{
    suspended_midway(true).await;
}

async fn suspended_midway(schema_beforehand: bool) {
    let server = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    let tenant = create(&server, "suspended-midway").await;
    let id = tenant.id.clone();
    let catalog = server.catalog().await;
    if schema_beforehand {
        catalog
            .execute_unprepared(&format!(
                "CREATE SCHEMA \"{0}\"; COMMENT ON SCHEMA \"{0}\" IS 'tenant-plane tenant {id}'",
                tenant.schema_name
            ))
            .await
            .expect("the schema beforehand");
    }
    // Hold the tenant's row, as a suspension in flight does.
    let holder = catalog.begin().await.expect("begin");
    holder
        .execute_unprepared(&format!(
            "SELECT 1 FROM tenants WHERE id = '{id}' FOR UPDATE"
        ))
        .await
        .expect("lock the tenant's row");
    let mut provisioning = server.provisioning();
    let name = tenant.name.clone();
    let provision = tokio::spawn(async move {
        provisioning
            .provision_tenant(proto::ProvisionTenantRequest {
                tenant: name,
                ..Default::default()
            })
            .await
    });
    // The provisioning has made the role (in the batch that migrates the tenant) and waits for
    // the row, in the catalog's record of the tenant, which then settles the role's LOGIN.
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND datname = current_database() \
           AND query LIKE '%UPDATE \"tenants\"%'";
    crate::support::eventually(
        "the provisioning waiting for the tenant's row",
        std::time::Duration::from_secs(10),
        async || {
            let row = catalog
                .query_one_raw(sea_orm::Statement::from_string(
                    catalog.get_database_backend(),
                    waiting,
                ))
                .await
                .expect("pg_stat_activity");
            let waiting = row.and_then(|r| r.try_get::<i64>("", "n").ok());
            waiting.filter(|&n| n > 0)
        },
    )
    .await;
    holder
        .execute_unprepared(&format!(
            "UPDATE tenants SET state = 'SUSPENDED', state_before_suspend = 'PROVISIONING' \
             WHERE id = '{id}'"
        ))
        .await
        .expect("suspend in SQL");
    holder.commit().await.expect("commit the suspension");
    provision
        .await
        .expect("provisioning task")
        .expect("provisioning commits");

    let status = server
        .provisioning()
        .get_provisioning_status(proto::GetProvisioningStatusRequest {
            tenant: tenant.name.clone(),
        })
        .await
        .expect("status")
        .into_inner();
    let role = status
        .location
        .map(|l| l.role_name)
        .filter(|r| !r.is_empty())
        .expect("the tenant's role");
    let row = catalog
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            catalog.get_database_backend(),
            "SELECT rolcanlogin AS login FROM pg_roles WHERE rolname = $1",
            [role.clone().into()],
        ))
        .await
        .expect("pg_roles")
        .expect("the role exists");
    assert_eq!(
        row.try_get::<bool>("", "login").ok(),
        Some(false),
        "{role} may log in"
    );
    catalog.close().await.expect("close");
    server.stop().await;
}
