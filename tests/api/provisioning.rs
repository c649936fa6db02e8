//! ProvisioningService on both catalogs: the storage a tenant gets, idempotent provisioning,
//! rebuilding with force_recreate, and purging a deleted tenant.

use prost_types::FieldMask;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tenant_plane::proto::{self, tenant::State};
use tonic::{Code, Status};

use crate::support::{
    Db, SAMPLE_MIGRATIONS, SAMPLE_TABLES, TestServer, assert_bad_field, column_of, create,
};
use crate::{on_both, on_both_dbs};

on_both!(
    provisioning_creates_the_storage_and_its_tables_with_the_version_table_inside_it,
    force_recreate_needs_the_current_etag_and_then_rebuilds_the_storage_empty,
    purge_is_refused_for_a_live_tenant_or_a_wrong_slug_and_then_drops_the_storage,
    a_provisioning_that_does_nothing_keeps_the_etag,
);
on_both_dbs!(provisioning_twice_does_nothing_the_second_time);

const LATEST: &str = SAMPLE_MIGRATIONS[4];

pub async fn provision(
    server: &TestServer,
    tenant: &str,
    force_recreate: bool,
    etag: &str,
) -> Result<proto::ProvisionTenantResponse, Status> {
    server
        .provisioning()
        .provision_tenant(proto::ProvisionTenantRequest {
            tenant: tenant.to_owned(),
            force_recreate,
            etag: etag.to_owned(),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn status_of(server: &TestServer, tenant: &str) -> proto::ProvisioningStatus {
    server
        .provisioning()
        .get_provisioning_status(proto::GetProvisioningStatusRequest {
            tenant: tenant.to_owned(),
        })
        .await
        .unwrap_or_else(|s| panic!("status of {tenant}: {s:?}"))
        .into_inner()
}

async fn purge(
    server: &TestServer,
    tenant: &str,
    confirm_slug: &str,
) -> Result<proto::Tenant, Status> {
    server
        .provisioning()
        .deprovision_tenant(proto::DeprovisionTenantRequest {
            tenant: tenant.to_owned(),
            confirm_slug: confirm_slug.to_owned(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn get(server: &TestServer, name: &str) -> proto::Tenant {
    server
        .tenants()
        .get_tenant(proto::GetTenantRequest {
            name: name.to_owned(),
        })
        .await
        .unwrap_or_else(|s| panic!("get {name}: {s:?}"))
        .into_inner()
}

/// The tenant's version table, row by row, with the time each migration was applied.
async fn version_rows(server: &TestServer, tenant: &proto::Tenant) -> Vec<String> {
    let conn = server.tenant_conn(tenant).await;
    let rows = column_of(
        &conn,
        "SELECT version || ' at ' || CAST(applied_at AS TEXT) AS name FROM seaql_migrations \
         ORDER BY version",
    )
    .await;
    conn.close().await.expect("close");
    rows
}

async fn count(conn: &DatabaseConnection, sql: &str) -> i64 {
    conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .try_get("", "n")
        .expect("n")
}

async fn provisioning_creates_the_storage_and_its_tables_with_the_version_table_inside_it(
    server: &TestServer,
) {
    let tenant = create(server, "acme-corp").await;

    assert_eq!(tenant.state(), State::Active);
    assert_eq!(tenant.migration_version, LATEST);
    let catalog = server.catalog().await;
    match server.db {
        Db::Postgres => {
            assert_eq!(tenant.schema_name, "tenant_acme_corp");
            let schemas = column_of(
                &catalog,
                "SELECT CAST(nspname AS TEXT) AS name FROM pg_namespace \
                 WHERE nspname = 'tenant_acme_corp'",
            )
            .await;
            assert_eq!(schemas, ["tenant_acme_corp"]);
            let inside = column_of(
                &catalog,
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
                 WHERE table_schema = 'tenant_acme_corp' ORDER BY 1",
            )
            .await;
            assert_eq!(inside, SAMPLE_TABLES);
            let in_public = column_of(
                &catalog,
                "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_name IN \
                 ('users', 'projects', 'messages', 'audit_log', 'seaql_migrations')",
            )
            .await;
            assert!(
                in_public.is_empty(),
                "tenant tables in public: {in_public:?}"
            );
        }
        Db::Sqlite => {
            let file = server.data_dir().join("tenants/tenant_acme_corp.sqlite3");
            assert!(file.is_file(), "{} is missing", file.display());
            let conn = sea_orm::Database::connect(format!("sqlite://{}?mode=rw", file.display()))
                .await
                .expect("open the tenant file");
            let inside = column_of(
                &conn,
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .await;
            conn.close().await.expect("close");
            assert_eq!(inside, SAMPLE_TABLES);
            let in_catalog = column_of(
                &catalog,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN \
                 ('users', 'projects', 'messages', 'audit_log', 'seaql_migrations')",
            )
            .await;
            assert!(
                in_catalog.is_empty(),
                "tenant tables in the catalog: {in_catalog:?}"
            );
        }
    }
    catalog.close().await.expect("close");
    assert_eq!(server.tenant_versions(&tenant).await, SAMPLE_MIGRATIONS);
}

async fn provisioning_twice_does_nothing_the_second_time(db: Db) {
    let server = TestServer::start_with(db, |c| c.tenant_auto_provision = false).await;
    let created = create(&server, "globex").await;
    assert_eq!(created.state(), State::Provisioning);
    assert!(
        !server.storage_exists(&created).await,
        "nothing before ProvisionTenant"
    );
    let waiting = status_of(&server, &created.name).await;
    assert!(!waiting.storage_provisioned && !waiting.migrations_applied);
    assert!(waiting.current_version.is_empty() && waiting.provision_time.is_none());

    let first = provision(&server, &created.name, false, "")
        .await
        .expect("first");

    assert!(first.changed);
    let tenant = first.tenant.expect("tenant");
    assert_eq!(tenant.state(), State::Active);
    assert_eq!(tenant.migration_version, LATEST);
    let status = first.status.expect("status");
    assert!(status.storage_provisioned && status.migrations_applied);
    assert_eq!(status.current_version, LATEST);
    assert!(status.provision_time.is_some());
    assert_eq!(server.tenant_tables(&tenant).await, SAMPLE_TABLES);
    let versions = version_rows(&server, &tenant).await;
    assert_eq!(versions.len(), 5);

    let second = provision(&server, "tenants/globex", false, "")
        .await
        .expect("second");

    assert!(!second.changed, "already provisioned");
    let again = second.tenant.expect("tenant");
    assert_eq!(again.state(), State::Active);
    assert_eq!(again.migration_version, LATEST);
    assert_eq!(
        second.status.expect("status").provision_time,
        status.provision_time,
        "still the first provisioning"
    );
    assert_eq!(
        version_rows(&server, &tenant).await,
        versions,
        "version table untouched"
    );
    assert_eq!(server.tenant_tables(&tenant).await, SAMPLE_TABLES);
    server.stop().await;
}

async fn a_provisioning_that_does_nothing_keeps_the_etag(server: &TestServer) {
    let created = create(server, "soylent").await;
    let before = server.catalog_snapshot().await;

    let again = provision(server, &created.name, false, &created.etag)
        .await
        .expect("provision a provisioned tenant");

    assert!(!again.changed);
    let after = again.tenant.expect("tenant");
    assert_eq!(
        after.etag, created.etag,
        "bug: a ProvisionTenant that did nothing (changed = false) still bumps the revision, \
         so the caller's etag goes stale"
    );
    assert_eq!(after.update_time, created.update_time);
    assert_eq!(server.catalog_snapshot().await, before);
}

async fn force_recreate_needs_the_current_etag_and_then_rebuilds_the_storage_empty(
    server: &TestServer,
) {
    let created = create(server, "initech").await;
    let conn = server.tenant_conn(&created).await;
    conn.execute_unprepared(
        "INSERT INTO users (id, email, name) \
         VALUES ('01900000-0000-7000-8000-000000000001', 'peter@initech.example', 'Peter')",
    )
    .await
    .expect("a user in the tenant's storage");
    assert_eq!(count(&conn, "SELECT count(*) AS n FROM users").await, 1);
    conn.close().await.expect("close");
    let updated = server
        .tenants()
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant {
                name: created.name.clone(),
                display_name: "Initech LLC".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    let before = server.catalog_snapshot().await;

    let without = provision(server, &created.name, true, "")
        .await
        .unwrap_err();
    let stale = provision(server, &created.name, true, &created.etag)
        .await
        .unwrap_err();

    assert_bad_field(&without, "etag");
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert_eq!(server.catalog_snapshot().await, before, "nothing changed");
    let conn = server.tenant_conn(&created).await;
    assert_eq!(
        count(&conn, "SELECT count(*) AS n FROM users").await,
        1,
        "data kept"
    );
    conn.close().await.expect("close");

    let rebuilt = provision(server, &created.name, true, &updated.etag)
        .await
        .expect("force_recreate with the current etag");

    assert!(rebuilt.changed);
    let tenant = rebuilt.tenant.expect("tenant");
    assert_ne!(
        tenant.etag, updated.etag,
        "a rebuild changes the etag, so it cannot be repeated by accident"
    );
    assert_eq!(tenant.state(), State::Active);
    assert_eq!(tenant.migration_version, LATEST);
    assert_eq!(tenant.display_name, "Initech LLC");
    assert_eq!(server.tenant_tables(&tenant).await, SAMPLE_TABLES);
    assert_eq!(server.tenant_versions(&tenant).await, SAMPLE_MIGRATIONS);
    let conn = server.tenant_conn(&tenant).await;
    assert_eq!(
        count(&conn, "SELECT count(*) AS n FROM users").await,
        0,
        "data wiped"
    );
    conn.close().await.expect("close");
}

async fn purge_is_refused_for_a_live_tenant_or_a_wrong_slug_and_then_drops_the_storage(
    server: &TestServer,
) {
    let created = create(server, "hooli").await;
    let live_snapshot = server.catalog_snapshot().await;

    let live = purge(server, &created.name, "hooli").await.unwrap_err();

    assert_eq!(live.code(), Code::FailedPrecondition, "{live:?}");
    assert_eq!(server.catalog_snapshot().await, live_snapshot);
    assert!(server.storage_exists(&created).await);

    let deleted = server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: created.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.state(), State::Deleted);
    assert!(
        server.storage_exists(&created).await,
        "a plain delete keeps the data"
    );
    assert_eq!(server.tenant_tables(&created).await, SAMPLE_TABLES);
    assert!(status_of(server, &created.name).await.storage_provisioned);
    let deleted_snapshot = server.catalog_snapshot().await;

    for wrong in ["", "hool", "HOOLI", "tenants/hooli", &created.id] {
        let refused = purge(server, &created.name, wrong).await.unwrap_err();
        assert_bad_field(&refused, "confirm_slug");
    }

    assert_eq!(server.catalog_snapshot().await, deleted_snapshot);
    assert!(server.storage_exists(&created).await);

    let purged = purge(server, "tenants/hooli", "hooli")
        .await
        .expect("purge");

    assert_eq!(purged.id, created.id);
    assert_eq!(purged.state(), State::Deleted);
    assert!(!server.storage_exists(&created).await, "storage dropped");
    if server.db == Db::Sqlite {
        let left: Vec<_> = std::fs::read_dir(server.data_dir().join("tenants"))
            .expect("tenants dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }
    let status = status_of(server, &created.name).await;
    assert!(!status.storage_provisioned && !status.migrations_applied);
    assert!(status.provision_time.is_none());
    assert!(status.current_version.is_empty());
    assert_eq!(
        get(server, &created.name).await.state(),
        State::Deleted,
        "the row stays"
    );
    assert_eq!(server.catalog_snapshot().await.len(), 1);
}
