//! RotateTenantCredentials refusals, each leaving everything as it was, and where the role's
//! name is reported (ResolveTenant, GetProvisioningStatus).

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tenant_plane::proto;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::support::{Db, TestServer, assert_bad_field, create};
use crate::tenant_roles::{location, role_exists, rotate};

async fn try_rotate(server: &TestServer, name: &str) -> Result<(), Status> {
    server
        .tenants()
        .rotate_tenant_credentials(proto::RotateTenantCredentialsRequest { name: name.into() })
        .await
        .map(|_| ())
}

#[track_caller]
fn assert_precondition(status: &Status, words: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains(words), "{}", status.message());
    assert!(
        status.get_details_precondition_failure().is_some(),
        "no PreconditionFailure in {status:?}"
    );
}

/// The stored password verifier of `role`; `None` while it has no password.
async fn stored_password(server: &TestServer, role: &str) -> Option<String> {
    let admin = server.catalog().await;
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            [role.into()],
        ))
        .await
        .expect("read the role")
        .expect("the role exists");
    admin.close().await.expect("close");
    row.try_get::<Option<String>>("", "rolpassword")
        .expect("rolpassword")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_credentials_refuses_a_bad_name_and_an_unknown_tenant() {
    let server = TestServer::start(Db::Postgres).await;
    let acme = create(&server, "acme").await;
    let role = location(&server, &acme).await.role_name;
    let before = server.catalog_snapshot().await;

    for bad in [
        "",
        "acme",
        "tenants/",
        "tenants/Acme",
        "tenants/a b",
        "tenants/acme/x",
    ] {
        let status = try_rotate(&server, bad).await.unwrap_err();
        assert_bad_field(&status, "name");
    }
    let unknown = try_rotate(&server, "tenants/nobody").await.unwrap_err();

    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(unknown.get_details_resource_info().is_some());
    assert_eq!(server.catalog_snapshot().await, before);
    assert_eq!(
        stored_password(&server, &role).await,
        None,
        "still no password"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_credentials_waits_for_provisioning_allows_suspension_and_refuses_deletion() {
    let server = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    let acme = create(&server, "acme").await;
    assert_eq!(
        location(&server, &acme).await.role_name,
        "",
        "no role before provisioning"
    );

    let waiting = try_rotate(&server, &acme.name).await.unwrap_err();

    assert_precondition(&waiting, "not provisioned");
    server
        .provisioning()
        .provision_tenant(proto::ProvisionTenantRequest {
            tenant: acme.name.clone(),
            ..Default::default()
        })
        .await
        .expect("provision");
    let role = location(&server, &acme).await.role_name;
    assert_eq!(
        stored_password(&server, &role).await,
        None,
        "made without a password"
    );
    server
        .tenants()
        .suspend_tenant(proto::SuspendTenantRequest {
            name: acme.name.clone(),
            reason: "leaked credentials".into(),
            etag: String::new(),
        })
        .await
        .expect("suspend");
    let rotated = rotate(&server, &acme).await;
    assert_eq!(rotated.role_name, role);
    let verifier = stored_password(&server, &role).await;
    assert!(verifier.is_some());
    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: acme.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete");
    let before = server.catalog_snapshot().await;

    let deleted = try_rotate(&server, &acme.name).await.unwrap_err();

    assert_precondition(&deleted, "DELETED");
    assert!(!deleted.message().contains(&rotated.password));
    assert_eq!(server.catalog_snapshot().await, before);
    assert_eq!(
        stored_password(&server, &role).await,
        verifier,
        "the password is kept"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_dropped_behind_the_control_planes_back_is_made_again_by_provisioning() {
    let server = TestServer::start(Db::Postgres).await;
    let acme = create(&server, "acme").await;
    let role = location(&server, &acme).await.role_name;
    let admin = server.catalog().await;
    admin
        .execute_unprepared(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""))
        .await
        .expect("drop the role");
    admin.close().await.expect("close");

    let missing = try_rotate(&server, &acme.name).await.unwrap_err();

    assert_precondition(&missing, "ProvisionTenant");
    let again = server
        .provisioning()
        .provision_tenant(proto::ProvisionTenantRequest {
            tenant: acme.name.clone(),
            ..Default::default()
        })
        .await
        .expect("provision again")
        .into_inner();
    assert_eq!(
        again.status.and_then(|s| s.location).map(|l| l.role_name),
        Some(role.clone()),
        "GetProvisioningStatus names the role too"
    );
    assert!(role_exists(&server, &role).await);
    assert_eq!(rotate(&server, &acme).await.role_name, role);
    server.stop().await;
}

#[tokio::test]
async fn the_embedded_catalog_has_no_roles_to_rotate() {
    let server = TestServer::start(Db::Sqlite).await;
    let acme = create(&server, "acme").await;
    let before = server.catalog_snapshot().await;

    let status = try_rotate(&server, &acme.name).await.unwrap_err();

    assert_precondition(&status, "PostgreSQL");
    assert_eq!(server.catalog_snapshot().await, before);
    assert_eq!(location(&server, &acme).await.role_name, "");
    let provisioning = server
        .provisioning()
        .get_provisioning_status(proto::GetProvisioningStatusRequest {
            tenant: acme.name.clone(),
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        provisioning.location.map(|l| l.role_name),
        Some(String::new())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_tenant_role_given_more_privileges_is_refused_and_a_rebuild_keeps_the_data() {
    let server = TestServer::start(Db::Postgres).await;
    let tenant = create(&server, "elevated").await;
    let role = location(&server, &tenant).await.role_name;
    let conn = server.tenant_conn(&tenant).await;
    conn.execute_unprepared(
        "INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-000000000001', 'a@x')",
    )
    .await
    .expect("a user");
    conn.close().await.expect("close");
    let admin = server.catalog().await;
    admin
        .execute_unprepared(&format!("ALTER ROLE \"{role}\" CREATEDB"))
        .await
        .expect("give the role more than a tenant role has");
    admin.close().await.expect("close");

    let refused = server
        .provisioning()
        .provision_tenant(proto::ProvisionTenantRequest {
            tenant: tenant.name.clone(),
            force_recreate: true,
            etag: tenant.etag.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a privileged role is not granted tenant data");

    assert_precondition(&refused, "more privileges than a tenant role");
    let conn = server.tenant_conn(&tenant).await;
    let users = crate::support::column_of(&conn, "SELECT email AS name FROM users").await;
    conn.close().await.expect("close");
    assert_eq!(users, ["a@x"], "the rebuild was rolled back whole");
    server.stop().await;
}
