//! Marks forged on storage, and catalogs made before the catalog's schema was pinned: a role
//! that may create schemas writes the tenant's mark on one of its own, and an upgraded
//! catalog's functions, made with another search_path, are pinned by migration 000015 and then
//! dropped by 000017.

use sea_orm::{ConnectionTrait, Database};
use tenant_plane::proto;
use tonic::Code;

use crate::storage_names::{assert_taken, database_owned_by, schema_tables, start_on, unique};
use crate::support::{Db, TestServer, column_of, create};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_forged_by_another_role_is_not_taken_for_the_tenants() {
    // A control plane that is not a superuser, and a role that may create schemas in its
    // database and comment on what it owns.
    let u = unique();
    let control = format!("cp{u}");
    let forger = format!("forger{u}");
    let (admin, url) = database_owned_by(&control).await;
    let server = start_on(&url, |c| c.tenant_auto_provision = false).await;
    let late = create(&server, &format!("late{u}")).await;
    admin
        .execute_unprepared(&format!(
            "CREATE ROLE {forger}; GRANT CREATE ON DATABASE \"{database}\" TO {forger}; \
             SET ROLE {forger}; \
             CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".keep (v text); \
             COMMENT ON SCHEMA \"{schema}\" IS 'tenant-plane tenant {id}'; \
             CREATE SCHEMA tenant_shared; \
             COMMENT ON SCHEMA tenant_shared IS 'tenant-plane shared'; \
             RESET ROLE",
            database = server.catalog_url.rsplit_once('/').expect("a database").1,
            schema = late.schema_name,
            id = late.id,
        ))
        .await
        .expect("schemas with forged marks");
    let before = server.catalog_snapshot().await;

    let provision = server
        .provisioning()
        .provision_tenant(proto::ProvisionTenantRequest {
            tenant: late.name.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a schema another role owns is not adopted, whatever its comment");
    let shared = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(proto::Tenant {
                slug: format!("pub{u}"),
                isolation: proto::Isolation::Shared as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("a shared schema another role owns is not taken");

    assert_eq!(provision.code(), Code::FailedPrecondition, "{provision:?}");
    assert_taken(&shared, "PostgreSQL schema", "tenant_shared");
    assert_eq!(
        schema_tables(&admin, &late.schema_name).await,
        vec!["keep".to_owned()]
    );
    let after = server.catalog_snapshot().await;
    assert_eq!(after.len(), before.len(), "no tenant was added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_catalog_keeps_no_function_but_its_notice_trigger() {
    let server = TestServer::start(Db::Postgres).await;
    let url = server.catalog_url.clone();
    server.stop().await;
    // As a catalog migrated before the pin would have them: functions with "$user" first on
    // their search_path, and neither migration 000015 (the pin) nor 000017 (the drop) applied.
    let admin = Database::connect(url.as_str()).await.expect("superuser");
    admin
        .execute_unprepared(
            "CREATE FUNCTION tenant_plane_run_batch(statements text) RETURNS boolean \
               LANGUAGE plpgsql SET search_path = \"$user\", public \
               AS $$ BEGIN EXECUTE statements; RETURN true; END $$; \
             CREATE FUNCTION tenant_plane_enter(tenant_schema text, lock_key text) \
               RETURNS void LANGUAGE sql SET search_path = \"$user\", public AS 'SELECT'; \
             DELETE FROM catalog_migrations \
               WHERE version LIKE 'm20261207_000015%' OR version LIKE 'm20261207_000017%'",
        )
        .await
        .expect("an older catalog");
    let functions = "SELECT proname::text AS name FROM pg_proc \
                     WHERE proname LIKE 'tenant\\_plane\\_%' ORDER BY 1";
    assert_eq!(
        column_of(&admin, functions).await,
        [
            "tenant_plane_enter",
            "tenant_plane_notify_change",
            "tenant_plane_run_batch"
        ]
    );

    let restarted = start_on(&url, |_| {}).await;

    // 000015 pinned what it found, then 000017 dropped every function a plain statement
    // replaces; the trigger's function names its tables with the catalog's schema.
    assert_eq!(
        column_of(&admin, functions).await,
        ["tenant_plane_notify_change"]
    );
    let applied = "SELECT version AS name FROM catalog_migrations \
                   WHERE version LIKE 'm20261207_00001%' ORDER BY 1";
    assert_eq!(
        column_of(&admin, applied).await.len(),
        3,
        "000015 to 000017"
    );
    create(&restarted, "acme").await;
}
