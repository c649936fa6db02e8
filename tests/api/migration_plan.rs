//! PlanMigration, the dry run of MigrateTenant: the migrations a tenant's run would apply or
//! revert, with their statements, and nothing changed anywhere — checked in pg_catalog (every
//! relation of every tenant's storage), the version tables and the catalog's rows, including
//! for a component new to a tenant, whose version table the dry run must not make.

use sea_orm::ConnectionTrait;
use tenant_plane::proto::{self, Isolation, MigrationDirection};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::components_runs::plan_with;
use crate::plans::{plans, upsert};
use crate::provisioning::provision;
use crate::rollout_fleet::{FIFTH, SIXTH, fleet};
use crate::support::{
    Db, SAMPLE_MIGRATIONS, TestServer, assert_bad_field, column_of, create, new_tenant,
};

/// Everything a dry run or a rehearsal must leave as it was: every relation in the tenants'
/// schemas and in `databases` (tenants' own databases), with its kind; every version row there;
/// and every row of the catalog's tables of tenants, their components' versions, rollouts and
/// their targets. The audit log is compared by the caller (a rehearsal writes its row).
pub(crate) async fn world(server: &TestServer, databases: &[&proto::Tenant]) -> Vec<String> {
    let catalog = server.catalog().await;
    let mut seen = column_of(
        &catalog,
        "SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text AS name \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname LIKE 'tenant%' ORDER BY 1",
    )
    .await;
    let schemas = column_of(
        &catalog,
        "SELECT CAST(nspname AS TEXT) AS name FROM pg_namespace \
         WHERE nspname LIKE 'tenant%' ORDER BY 1",
    )
    .await;
    for schema in schemas {
        seen.extend(version_rows(&catalog, &format!("\"{schema}\"")).await);
    }
    for table in [
        "tenants",
        "tenant_components",
        "rollouts",
        "rollout_targets",
    ] {
        seen.extend(
            column_of(
                &catalog,
                &format!("SELECT row_to_json(t)::text AS name FROM {table} t ORDER BY 1"),
            )
            .await,
        );
    }
    catalog.close().await.expect("close");
    for tenant in databases {
        let conn = server.tenant_conn(tenant).await;
        seen.extend(
            column_of(
                &conn,
                "SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text AS name \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
                 ORDER BY 1",
            )
            .await,
        );
        seen.extend(version_rows(&conn, "public").await);
        conn.close().await.expect("close");
    }
    seen
}

/// Every row of every version table in `schema`, as "table:version".
async fn version_rows(conn: &sea_orm::DatabaseConnection, schema: &str) -> Vec<String> {
    let tables = column_of(
        conn,
        &format!(
            "SELECT CAST(c.relname AS TEXT) AS name FROM pg_class c \
             WHERE c.relnamespace = to_regnamespace('{}') AND c.relkind = 'r' \
             AND c.relname LIKE 'seaql_migrations%' ORDER BY 1",
            schema.replace('\'', "''")
        ),
    )
    .await;
    let mut rows = Vec::new();
    for table in tables {
        rows.extend(
            column_of(
                conn,
                &format!(
                    "SELECT '{table}:' || version || ':' || applied_at AS name \
                     FROM {schema}.\"{table}\" ORDER BY 1"
                ),
            )
            .await,
        );
    }
    rows
}

/// A slug no other test uses: tenants' own databases share the test PostgreSQL server.
pub(crate) fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}", &id[id.len() - 12..])
}

/// Every audit row of an action ending in `action`, as "action:outcome", oldest first.
pub(crate) async fn audit_rows(server: &TestServer, action: &str) -> Vec<String> {
    let catalog = server.catalog().await;
    let rows = column_of(
        &catalog,
        &format!(
            "SELECT action || ':' || outcome AS name FROM audit_events \
             WHERE action LIKE '%{action}' ORDER BY time"
        ),
    )
    .await;
    catalog.close().await.expect("close");
    rows
}

async fn plan(
    server: &TestServer,
    tenant: &str,
    component: &str,
    target_version: &str,
    direction: MigrationDirection,
) -> Result<proto::MigrationPlan, Status> {
    server
        .migrations()
        .plan_migration(proto::PlanMigrationRequest {
            tenant: tenant.into(),
            component: component.into(),
            target_version: target_version.into(),
            direction: direction.into(),
        })
        .await
        .map(|r| r.into_inner())
}

fn versions(plan: &proto::MigrationPlan) -> Vec<&str> {
    plan.migrations.iter().map(|m| m.version.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_lists_the_migrations_a_run_would_make_with_their_statements_and_changes_nothing() {
    let (server, tenants) = fleet(Db::Postgres, 1).await;
    let tenant = &tenants[0];
    let before = world(&server, &[]).await;
    let audit = audit_rows(&server, "").await;

    let up = plan(&server, &tenant.name, "", "", MigrationDirection::Up)
        .await
        .expect("plan up");
    let down = plan(
        &server,
        &tenant.name,
        "sample",
        SAMPLE_MIGRATIONS[2],
        MigrationDirection::Down,
    )
    .await
    .expect("plan down");

    assert_eq!(up.current_version, FIFTH);
    assert_eq!(up.target_version, SIXTH);
    assert_eq!(up.component, "sample");
    assert_eq!(versions(&up), [SIXTH]);
    let sixth = &up.migrations[0];
    assert_eq!(sixth.direction(), MigrationDirection::Up);
    assert_eq!(sixth.statements.len(), 1, "{sixth:?}");
    assert!(
        sixth.statements[0].starts_with("CREATE UNIQUE INDEX \"users_name_key\""),
        "{sixth:?}"
    );
    assert!(sixth.note.is_empty() && sixth.lint.is_empty(), "{sixth:?}");
    assert_eq!(down.current_version, FIFTH);
    assert_eq!(down.target_version, SAMPLE_MIGRATIONS[2]);
    assert_eq!(
        versions(&down),
        [SAMPLE_MIGRATIONS[4], SAMPLE_MIGRATIONS[3]],
        "newest first"
    );
    assert!(
        down.migrations
            .iter()
            .all(|m| m.direction() == MigrationDirection::Down)
    );
    assert!(
        down.migrations[1]
            .statements
            .iter()
            .any(|s| s.starts_with("DROP TABLE") && s.contains("audit_log")),
        "{down:?}"
    );
    assert_eq!(
        world(&server, &[]).await,
        before,
        "the dry run changed something"
    );
    assert_eq!(
        audit_rows(&server, "").await,
        audit,
        "a dry run is not recorded"
    );
    server.stop().await;
}

/// Registers `billing` (two migrations, the second of two statements) in the catalog as a push
/// would, and lists it on every plan beside the sample.
async fn billing_on_every_plan(server: &TestServer) {
    let catalog = server.catalog().await;
    catalog
        .execute_unprepared(
            "INSERT INTO components (id, description, owner, create_time) \
               VALUES ('billing', 'invoices', 'team-billing', now()); \
             INSERT INTO component_migrations (component, version, position, description, \
               up_sql, down_sql, sqlite_up_sql, sqlite_down_sql, checksum, destructive, \
               findings, create_time) VALUES \
               ('billing', '0001_create_invoices', 0, '', \
                'CREATE TABLE invoices (id integer PRIMARY KEY, total integer NOT NULL)', \
                'DROP TABLE invoices', '', '', repeat('a', 64), false, '[]', now()), \
               ('billing', '0002_invoice_notes', 1, '', \
                'ALTER TABLE invoices ADD COLUMN note text; \
                 CREATE INDEX invoices_note ON invoices (note)', \
                '', '', '', repeat('b', 64), false, '[]', now())",
        )
        .await
        .expect("register billing");
    let every_plan = column_of(&catalog, "SELECT id AS name FROM plans").await;
    catalog.close().await.expect("close");
    // Through the API, whose write drops the server's cached plan at once.
    for plan in every_plan {
        plan_with(server, &plan, &["sample", "billing"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_new_to_a_tenant_is_planned_from_its_first_migration_without_a_version_table() {
    let server = TestServer::start(Db::Postgres).await;
    plans(&server)
        .upsert_plan(upsert(
            proto::Plan {
                name: "plans/isolated".into(),
                default_isolation: Isolation::Database as i32,
                ..Default::default()
            },
            &[],
        ))
        .await
        .expect("create the plan");
    let schema_tenant = create(&server, "in-schema").await;
    let database_tenant = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(proto::Tenant {
                plan: "isolated".into(),
                ..new_tenant(&unique("own"))
            }),
            ..Default::default()
        })
        .await
        .expect("create on the isolated plan")
        .into_inner();
    assert_eq!(database_tenant.isolation(), Isolation::Database);
    billing_on_every_plan(&server).await;
    let before = world(&server, &[&database_tenant]).await;
    let audit = audit_rows(&server, "").await;

    for tenant in [&schema_tenant, &database_tenant] {
        let planned = plan(&server, &tenant.name, "billing", "", MigrationDirection::Up)
            .await
            .unwrap_or_else(|s| panic!("plan billing for {}: {s:?}", tenant.slug));
        let status = server
            .migrations()
            .get_migration_status(proto::GetMigrationStatusRequest {
                tenant: tenant.name.clone(),
                component: "billing".into(),
            })
            .await
            .expect("status")
            .into_inner();

        assert_eq!(planned.current_version, "", "{}", tenant.slug);
        assert_eq!(planned.target_version, "0002_invoice_notes");
        assert_eq!(
            versions(&planned),
            ["0001_create_invoices", "0002_invoice_notes"]
        );
        assert_eq!(
            planned.migrations[1].statements,
            [
                "ALTER TABLE invoices ADD COLUMN note text",
                "CREATE INDEX invoices_note ON invoices (note)"
            ]
        );
        assert_eq!(status.current_version, "");
        assert_eq!(status.pending.len(), 2, "{status:?}");
    }
    assert_eq!(
        world(&server, &[&database_tenant]).await,
        before,
        "the dry run or the status made something"
    );
    assert!(
        !before
            .iter()
            .any(|r| r.contains("seaql_migrations_billing")),
        "{before:?}"
    );
    assert_eq!(audit_rows(&server, "").await, audit);
    server.stop().await;
}

#[track_caller]
fn assert_precondition(status: &Status) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .get_details_precondition_failure()
            .is_some_and(|p| !p.violations.is_empty()),
        "no PreconditionFailure in {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_refused_as_the_migration_would_be_and_changes_nothing() {
    let server = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    let provisioned = create(&server, "ready").await;
    provision(&server, &provisioned.name, false, "")
        .await
        .expect("provision");
    let bare = create(&server, "bare").await;
    let gone = create(&server, "gone").await;
    provision(&server, &gone.name, false, "")
        .await
        .expect("provision");
    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: gone.name.clone(),
            ..Default::default()
        })
        .await
        .expect("delete");
    let before = world(&server, &[]).await;
    let audit = audit_rows(&server, "").await;

    let unknown_component = plan(
        &server,
        &provisioned.name,
        "nope",
        "",
        MigrationDirection::Up,
    )
    .await
    .unwrap_err();
    let unknown_version = plan(
        &server,
        &provisioned.name,
        "",
        "m0_nope",
        MigrationDirection::Up,
    )
    .await
    .unwrap_err();
    let not_applied = plan(
        &server,
        &bare.name,
        "",
        SAMPLE_MIGRATIONS[1],
        MigrationDirection::Down,
    )
    .await
    .unwrap_err();
    let deleted = plan(&server, &gone.name, "", "", MigrationDirection::Up)
        .await
        .unwrap_err();
    let first = plan(
        &server,
        &provisioned.name,
        "",
        SAMPLE_MIGRATIONS[0],
        MigrationDirection::Down,
    )
    .await
    .expect("down to the first migration");

    assert_eq!(
        unknown_component.code(),
        Code::NotFound,
        "{unknown_component:?}"
    );
    assert_eq!(
        unknown_component
            .get_details_resource_info()
            .map(|r| r.resource_name),
        Some("components/nope".to_owned())
    );
    assert_bad_field(&unknown_version, "target_version");
    assert_precondition(&not_applied);
    assert_precondition(&deleted);
    assert_eq!(first.migrations.len(), 4);
    assert_eq!(world(&server, &[]).await, before);
    assert_eq!(audit_rows(&server, "").await, audit);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_compiled_migration_is_planned_with_a_note_and_the_file_is_left_as_it_was() {
    let (server, tenants) = fleet(Db::Sqlite, 1).await;
    let tenant = &tenants[0];
    let before = crate::rollout_rehearsal::file_state(&server, tenant).await;

    let up = plan(&server, &tenant.name, "", "", MigrationDirection::Up)
        .await
        .expect("plan up");

    assert_eq!(up.current_version, FIFTH);
    assert_eq!(versions(&up), [SIXTH]);
    assert!(up.migrations[0].statements.is_empty(), "{up:?}");
    assert!(
        up.migrations[0].note.contains("statement by statement"),
        "{up:?}"
    );
    assert_eq!(
        crate::rollout_rehearsal::file_state(&server, tenant).await,
        before
    );
    server.stop().await;
}
