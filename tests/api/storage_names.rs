//! Attacks on the names that become schemas, databases and the catalog's own schema: a tenant
//! named like the control plane's role, storage that exists before its tenant, storage names
//! that two prefixes make alike, and storage swapped under a tenant. Real server, real
//! PostgreSQL, a control-plane role that is not a superuser.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tenant_plane::{app::App, config::Config, dataplane::TenantMigrations, proto};
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{Db, TestServer, column_of, create, new_tenant, new_tenant_on_plan, postgres};

/// A fresh catalog database owned by a new login role `role` (CREATEROLE, CREATEDB, no
/// superuser), as in production; returns (superuser connection, the role's URL).
pub(crate) async fn database_owned_by(role: &str) -> (DatabaseConnection, String) {
    let url = postgres::fresh_database_url().await;
    let database = url.rsplit_once('/').expect("a database").1.to_owned();
    let admin = Database::connect(url.as_str()).await.expect("superuser");
    admin
        .execute_unprepared(&format!(
            "CREATE ROLE {role} LOGIN CREATEROLE CREATEDB; \
             ALTER DATABASE \"{database}\" OWNER TO {role}"
        ))
        .await
        .expect("the control plane's role");
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    (admin, format!("{scheme}://{role}@{host}"))
}

pub(crate) fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

pub(crate) async fn start_on(url: &str, adjust: impl FnOnce(&mut Config)) -> TestServer {
    let url = url.to_owned();
    TestServer::start_with(Db::Postgres, move |c| {
        c.database_url = Some(url);
        adjust(c);
    })
    .await
}

async fn slugs(server: &TestServer) -> Vec<String> {
    let mut slugs: Vec<String> = server
        .tenants()
        .list_tenants(proto::ListTenantsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .tenants
        .into_iter()
        .map(|t| t.slug)
        .collect();
    slugs.sort();
    slugs
}

/// Asserts `status` is ALREADY_EXISTS with a ResourceInfo naming `kind` and `name`.
#[track_caller]
pub(crate) fn assert_taken(status: &tonic::Status, kind: &str, name: &str) {
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let info = status
        .get_details_resource_info()
        .unwrap_or_else(|| panic!("no ResourceInfo in {status:?}"));
    assert_eq!(info.resource_type, kind, "{status:?}");
    assert_eq!(info.resource_name, name, "{status:?}");
}

pub(crate) async fn schema_tables(admin: &DatabaseConnection, schema: &str) -> Vec<String> {
    column_of(
        admin,
        &format!(
            "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = '{schema}' \
             ORDER BY 1"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_named_like_the_control_planes_role_cannot_shadow_the_catalog() {
    // The role `tenant_plane…`: with the default prefix `tenant_`, the slug `plane…` names a
    // schema that PostgreSQL's default search_path ("$user", public) puts before public.
    let u = unique();
    let role = format!("tenant_plane{u}");
    let (admin, url) = database_owned_by(&role).await;
    let first = start_on(&url, |_| {}).await;
    create(&first, "acme").await;
    let before = first.catalog_snapshot().await;

    let refused = first
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant(&format!("plane{u}"))),
            ..Default::default()
        })
        .await
        .expect_err("a storage name equal to a role is refused");

    assert_taken(&refused, "PostgreSQL role", &role);
    assert_eq!(first.catalog_snapshot().await, before);
    assert!(
        column_of(
            &admin,
            &format!("SELECT nspname::text AS name FROM pg_namespace WHERE nspname = '{role}'")
        )
        .await
        .is_empty(),
        "no schema was made"
    );

    // Even with a schema of the role's name there (made by hand), a restarted control plane
    // keeps its catalog where it was: the search_path is pinned.
    admin
        .execute_unprepared(&format!("CREATE SCHEMA {role} AUTHORIZATION {role}"))
        .await
        .expect("a schema named like the role");
    first.stop().await;
    let restarted = start_on(&url, |_| {}).await;
    assert_eq!(slugs(&restarted).await, vec!["acme".to_owned()]);
    assert_eq!(schema_tables(&admin, &role).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_another_catalog_schema_than_the_databases_catalog_refuses() {
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "acme").await;
    let url = server.catalog_url.clone();
    server.stop().await;

    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_tests(data_dir.path().to_path_buf(), Some(url.clone()));
    config.catalog_schema = "elsewhere".into();
    let refused = App::build_with(config, TenantMigrations::builtin())
        .await
        .err()
        .expect("the start is refused");

    let message = refused.to_string();
    assert!(message.contains("TENANT_PLANE_CATALOG_SCHEMA"), "{message}");
    assert!(message.contains("'public'"), "{message}");
    let admin = Database::connect(url.as_str()).await.expect("superuser");
    assert!(
        column_of(
            &admin,
            "SELECT nspname::text AS name FROM pg_namespace WHERE nspname = 'elsewhere'"
        )
        .await
        .is_empty(),
        "no second catalog was begun"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lives_in_the_configured_schema_whatever_the_search_path() {
    let url = postgres::fresh_database_url().await;
    // A URL whose own options point the search_path elsewhere does not move the catalog.
    let with_options = format!("{url}?options=-c%20search_path%3Dpublic");
    let server = start_on(&with_options, |c| c.catalog_schema = "control".into()).await;
    create(&server, "acme").await;

    let admin = Database::connect(url.as_str()).await.expect("superuser");
    assert!(
        schema_tables(&admin, "control")
            .await
            .contains(&"tenants".to_owned())
    );
    assert!(
        !schema_tables(&admin, "public")
            .await
            .contains(&"tenants".to_owned())
    );
    assert_eq!(slugs(&server).await, vec!["acme".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slug_whose_schema_or_database_exists_already_is_refused_and_nothing_is_adopted() {
    let server = TestServer::start(Db::Postgres).await;
    let admin = server.catalog().await;
    let u = unique();
    let schema = format!("tenant_victim{u}");
    let database = format!("tenant_bigco{u}");
    admin
        .execute_unprepared(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.secrets (v text)"
        ))
        .await
        .expect("a schema made by someone else");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {database}"))
        .await
        .expect("a database made by someone else");
    let before = server.catalog_snapshot().await;

    let on_schema = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant(&format!("victim{u}"))),
            ..Default::default()
        })
        .await
        .expect_err("an existing schema is not adopted");
    let on_database = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant_on_plan(&format!("bigco{u}"), "enterprise")),
            ..Default::default()
        })
        .await
        .expect_err("an existing database is not adopted");

    assert_taken(&on_schema, "PostgreSQL schema", &schema);
    assert_taken(&on_database, "PostgreSQL database", &database);
    assert_eq!(server.catalog_snapshot().await, before);
    assert_eq!(
        schema_tables(&admin, &schema).await,
        vec!["secrets".to_owned()]
    );
    let grants = column_of(
        &admin,
        &format!(
            "SELECT grantee::text AS name FROM information_schema.role_table_grants \
             WHERE table_schema = '{schema}' AND grantee <> current_user"
        ),
    )
    .await;
    assert_eq!(grants, Vec::<String>::new(), "nothing was granted on it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_prefixes_that_make_one_storage_name_cannot_both_have_it() {
    // `tenant_` + `acme` and `t` + `enant-acme` are both `tenant_acme`.
    let server = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    let u = unique();
    create(&server, &format!("acme{u}")).await;
    let url = server.catalog_url.clone();
    let other = start_on(&url, |c| {
        c.tenant_auto_provision = false;
        c.tenant_database_prefix = "t".into();
    })
    .await;
    let before = server.catalog_snapshot().await;

    let refused = other
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant(&format!("enant-acme{u}"))),
            ..Default::default()
        })
        .await
        .expect_err("a storage name another tenant has is refused");

    assert_taken(&refused, "tenant storage", &format!("tenant_acme{u}"));
    assert_eq!(server.catalog_snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_adopts_and_purge_drops_no_schema_without_the_tenants_mark() {
    let server = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    let admin = server.catalog().await;
    // Made between CreateTenant and ProvisionTenant by someone else.
    let late = create(&server, "late").await;
    admin
        .execute_unprepared(&format!(
            "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".keep (v text)",
            late.schema_name
        ))
        .await
        .expect("a schema made meanwhile");

    let refused = server
        .provisioning()
        .provision_tenant(proto::ProvisionTenantRequest {
            tenant: late.name.clone(),
            ..Default::default()
        })
        .await
        .expect_err("an unmarked schema is not adopted");

    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let violation = refused
        .get_details_precondition_failure()
        .and_then(|p| p.violations.into_iter().next())
        .unwrap_or_else(|| panic!("no PreconditionFailure in {refused:?}"));
    assert_eq!(violation.subject, late.name);
    assert!(
        violation.description.contains(&late.schema_name),
        "{violation:?}"
    );
    assert_eq!(
        schema_tables(&admin, &late.schema_name).await,
        vec!["keep".to_owned()]
    );
    let granted = column_of(
        &admin,
        &format!(
            "SELECT grantee::text AS name FROM information_schema.role_table_grants \
             WHERE table_schema = '{}' AND grantee <> current_user",
            late.schema_name
        ),
    )
    .await;
    assert_eq!(granted, Vec::<String>::new());

    // A provisioned tenant whose schema was swapped for one without its mark: the purge
    // refuses, and the schema stays.
    let doomed = create(&server, "doomed").await;
    server
        .provisioning()
        .provision_tenant(proto::ProvisionTenantRequest {
            tenant: doomed.name.clone(),
            ..Default::default()
        })
        .await
        .expect("provision");
    admin
        .execute_unprepared(&format!(
            "DROP SCHEMA \"{0}\" CASCADE; CREATE SCHEMA \"{0}\"; \
             CREATE TABLE \"{0}\".keep (v text)",
            doomed.schema_name
        ))
        .await
        .expect("the schema swapped");
    let deleted = server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: doomed.name.clone(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();

    let purge = server
        .provisioning()
        .deprovision_tenant(proto::DeprovisionTenantRequest {
            tenant: doomed.name.clone(),
            confirm_slug: "doomed".into(),
            ..Default::default()
        })
        .await
        .expect_err("a schema without the tenant's mark is not dropped");

    assert_eq!(purge.code(), Code::FailedPrecondition, "{purge:?}");
    assert_eq!(
        schema_tables(&admin, &doomed.schema_name).await,
        vec!["keep".to_owned()]
    );
    let after = server
        .tenants()
        .get_tenant(proto::GetTenantRequest {
            name: doomed.name.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        after.state(),
        deleted.state(),
        "the tenant is still DELETED"
    );
}
