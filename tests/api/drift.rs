//! Drift: a tenant's storage changed by hand is reported, difference by difference, against the
//! shape its applied migrations produce; tenants left alone are clean; each check is recorded
//! in the catalog, and the drift job's passes feed the drifted-tenants gauge.

use chrono::TimeDelta;
use sea_orm::{ConnectionTrait, Database, Statement};
use tenant_plane::proto::{self, check_drift_request::Scope, tenant_selector::Selector};
use tenant_plane::service::Job;
use tonic::{Code, Status};

use crate::api_keys::create_key;
use crate::components_runs::{plan_with, provisioned_on, register};
use crate::metrics::{get, samples};
use crate::on_both;
use crate::support::{Db, MigrationServiceClient, TestServer, create};

async fn try_check(server: &TestServer, scope: Scope) -> Result<proto::CheckDriftResponse, Status> {
    let request = proto::CheckDriftRequest {
        scope: Some(scope),
        drifted_only: false,
    };
    Ok(server.migrations().check_drift(request).await?.into_inner())
}

async fn check(server: &TestServer, scope: Scope) -> proto::CheckDriftResponse {
    try_check(server, scope)
        .await
        .unwrap_or_else(|s| panic!("CheckDrift: {s:?}"))
}

fn all() -> Scope {
    Scope::Selector(proto::TenantSelector {
        selector: Some(Selector::All(true)),
    })
}

#[track_caller]
fn finding<'a>(
    response: &'a proto::CheckDriftResponse,
    tenant: &proto::Tenant,
) -> &'a proto::TenantDrift {
    response
        .tenants
        .iter()
        .find(|t| t.tenant == tenant.name)
        .unwrap_or_else(|| panic!("no finding for {} in {response:#?}", tenant.slug))
}

#[track_caller]
fn assert_clean(drift: &proto::TenantDrift) {
    assert!(!drift.drifted, "{drift:#?}");
    assert!(drift.differences.is_empty(), "{drift:#?}");
    assert!(drift.difference_details.is_empty(), "{drift:#?}");
    assert!(drift.error.is_empty(), "{drift:#?}");
    assert_eq!(drift.expected_fingerprint, drift.actual_fingerprint);
    assert_eq!(drift.expected_fingerprint.len(), 64);
    assert!(drift.check_time.is_some());
}

/// A difference's fields, in the order of `DriftDifference` (description left out: it is
/// `differences`' sentence, asserted there).
type Detail<'a> = (
    proto::DriftChange,
    proto::DriftObject,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

#[track_caller]
fn details(drift: &proto::TenantDrift) -> Vec<Detail<'_>> {
    assert_eq!(
        drift
            .difference_details
            .iter()
            .map(|d| d.description.as_str())
            .collect::<Vec<_>>(),
        drift.differences,
        "one detail per sentence, in the same order"
    );
    drift
        .difference_details
        .iter()
        .map(|d| {
            (
                d.change(),
                d.object(),
                d.table.as_str(),
                d.name.as_str(),
                d.aspect.as_str(),
                d.actual.as_str(),
                d.expected.as_str(),
                d.component.as_str(),
            )
        })
        .collect()
}

/// Runs `sql` on the catalog database as its superuser (a hand-made change).
async fn by_hand(server: &TestServer, sql: &str) {
    let db = server.catalog().await;
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    db.close().await.expect("close");
}

/// The catalog's record of the tenant's last check: (drifted, differences as JSON text).
async fn recorded(server: &TestServer, tenant: &proto::Tenant) -> Option<(bool, String)> {
    let db = server.catalog().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT d.drifted, CAST(d.differences AS TEXT) AS differences \
                 FROM tenant_drift d JOIN tenants t ON t.id = d.tenant_id WHERE t.slug = '{}'",
                tenant.slug
            ),
        ))
        .await
        .expect("read tenant_drift");
    db.close().await.expect("close");
    row.map(|r| {
        (
            r.try_get::<bool>("", "drifted").expect("drifted"),
            r.try_get::<String>("", "differences").expect("differences"),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_change_in_one_schema_is_reported_and_the_other_tenant_is_clean() {
    let server = TestServer::start(Db::Postgres).await;
    let acme = create(&server, "acme").await;
    let globex = create(&server, "globex").await;
    assert_eq!(acme.isolation(), proto::Isolation::Schema);

    let before = check(&server, Scope::Tenant(acme.name.clone())).await;
    assert_eq!(
        (
            before.checked_count,
            before.drifted_count,
            before.failed_count
        ),
        (1, 0, 0)
    );
    assert_clean(finding(&before, &acme));
    assert_eq!(recorded(&server, &acme).await.map(|r| r.0), Some(false));

    let schema = &acme.schema_name;
    by_hand(
        &server,
        &format!(
            "CREATE INDEX messages_tmp_idx ON \"{schema}\".messages (body); \
             ALTER TABLE \"{schema}\".users ALTER COLUMN name TYPE text; \
             ALTER TABLE \"{schema}\".audit_log DROP COLUMN actor"
        ),
    )
    .await;
    let after = check(&server, all()).await;

    assert_eq!(
        (after.checked_count, after.drifted_count, after.failed_count),
        (2, 1, 0),
        "{after:#?}"
    );
    let drifted = finding(&after, &acme);
    assert!(drifted.drifted);
    assert_eq!(
        drifted.differences,
        [
            "missing column audit_log.actor",
            "extra index messages_tmp_idx on messages",
            "column users.name is text, expected character varying(200)",
        ]
    );
    use proto::{DriftChange as C, DriftObject as O};
    assert_eq!(
        details(drifted),
        [
            (
                C::Missing,
                O::Column,
                "audit_log",
                "actor",
                "",
                "",
                "",
                "sample"
            ),
            (
                C::Extra,
                O::Index,
                "messages",
                "messages_tmp_idx",
                "",
                "",
                "",
                "sample"
            ),
            (
                C::Changed,
                O::Column,
                "users",
                "name",
                "type",
                "text",
                "character varying(200)",
                "sample"
            ),
        ]
    );
    assert_ne!(drifted.expected_fingerprint, drifted.actual_fingerprint);
    let clean = finding(&after, &globex);
    assert_clean(clean);
    assert_eq!(
        clean.expected_fingerprint, drifted.expected_fingerprint,
        "tenants at one version share the expected shape"
    );
    let (flag, differences) = recorded(&server, &acme).await.expect("a record");
    assert!(flag, "the catalog records the drift");
    let differences: serde_json::Value = serde_json::from_str(&differences).expect("JSON");
    assert_eq!(
        differences[1],
        serde_json::json!({
            "change": "extra",
            "object": "index",
            "table": "messages",
            "name": "messages_tmp_idx",
            "component": "sample",
            "description": "extra index messages_tmp_idx on messages",
        }),
        "the catalog records each difference as an object"
    );
    assert_eq!(differences[2]["what"], "type", "{differences}");
    assert_eq!(differences[2]["actual"], "text", "{differences}");
    assert_eq!(recorded(&server, &globex).await.map(|r| r.0), Some(false));

    let only = server
        .migrations()
        .check_drift(proto::CheckDriftRequest {
            scope: Some(all()),
            drifted_only: true,
        })
        .await
        .expect("CheckDrift")
        .into_inner();
    assert_eq!((only.checked_count, only.drifted_count), (2, 1));
    assert_eq!(
        only.tenants
            .iter()
            .map(|t| t.slug.as_str())
            .collect::<Vec<_>>(),
        ["acme"],
        "clean tenants are counted, not listed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_may_not_check_drift_and_a_missing_scope_or_tenant_is_refused() {
    let server = TestServer::start(Db::Postgres).await;
    let acme = create(&server, "acme").await;
    let key = create_key(&server, &acme.name, "acme's app", None).await;

    let mut as_tenant = MigrationServiceClient::new(server.conn_as(&key.secret));
    let refused = as_tenant
        .check_drift(proto::CheckDriftRequest {
            scope: Some(Scope::Tenant(acme.name.clone())),
            drifted_only: false,
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let missing = server
        .migrations()
        .check_drift(proto::CheckDriftRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    let unknown = try_check(&server, Scope::Tenant("tenants/nobody".into()))
        .await
        .expect_err("refused");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(recorded(&server, &acme).await, None, "nothing was checked");
    server.stop().await;
}

async fn create_isolated(
    server: &TestServer,
    slug: &str,
    isolation: proto::Isolation,
) -> proto::Tenant {
    server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(proto::Tenant {
                slug: slug.into(),
                isolation: isolation as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("create {slug}: {s:?}"))
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_schema_is_clean_then_drifted_for_every_shared_tenant() {
    let server = TestServer::start(Db::Postgres).await;
    let a = create_isolated(&server, "shared-a", proto::Isolation::Shared).await;
    let b = create_isolated(&server, "shared-b", proto::Isolation::Shared).await;

    let before = check(&server, all()).await;
    assert_eq!(
        (before.checked_count, before.drifted_count),
        (2, 0),
        "{before:#?}"
    );
    assert_clean(finding(&before, &a));

    by_hand(
        &server,
        "ALTER TABLE tenant_shared.projects ALTER COLUMN title DROP NOT NULL; \
         DROP POLICY tenant_isolation ON tenant_shared.messages",
    )
    .await;
    let after = check(&server, all()).await;

    assert_eq!(
        (after.checked_count, after.drifted_count),
        (2, 2),
        "{after:#?}"
    );
    for tenant in [&a, &b] {
        assert_eq!(
            finding(&after, tenant).differences,
            [
                "missing policy tenant_isolation on messages",
                "column projects.title has nullability NULL, expected NOT NULL",
            ]
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_a_database_of_its_own_is_checked_there() {
    let server = TestServer::start(Db::Postgres).await;
    let own = create_isolated(&server, "own", proto::Isolation::Database).await;
    assert_clean(finding(&check(&server, all()).await, &own));

    let db = Database::connect(server.postgres_url_of(&own.database_name))
        .await
        .expect("connect to the tenant's database");
    // An extension's functions (here in `public`, as a template database's would be) are the
    // extension's, not drift.
    db.execute_unprepared(
        "CREATE TABLE scratch (id int); ALTER TABLE users ALTER COLUMN email DROP NOT NULL; \
         CREATE EXTENSION pg_trgm",
    )
    .await
    .expect("a hand-made change");
    db.close().await.expect("close");

    let after = check(&server, Scope::Tenant(own.name.clone())).await;
    assert_eq!(
        finding(&after, &own).differences,
        [
            "extra table scratch",
            "column users.email has nullability NULL, expected NOT NULL",
        ]
    );
    assert_eq!(
        details(finding(&after, &own))
            .iter()
            .map(|d| (d.2, d.7))
            .collect::<Vec<_>>(),
        [("scratch", ""), ("users", "sample")],
        "a table no component made is no component's"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_tenant_file_is_checked_against_an_in_memory_reference() {
    let server = TestServer::start(Db::Sqlite).await;
    let file = create(&server, "filed").await;
    let other = create(&server, "other").await;
    assert_eq!(file.isolation(), proto::Isolation::Database);
    assert_clean(finding(&check(&server, all()).await, &file));

    let conn = server.tenant_conn(&file).await;
    conn.execute_unprepared(
        "CREATE INDEX users_tmp_idx ON users (name); \
         CREATE TRIGGER users_touch AFTER UPDATE ON users BEGIN SELECT 1; END",
    )
    .await
    .expect("a hand-made change");
    conn.close().await.expect("close");

    let after = check(&server, all()).await;
    assert_eq!(
        finding(&after, &file).differences,
        [
            "extra index users_tmp_idx on users",
            "extra trigger users_touch on users"
        ]
    );
    use proto::{DriftChange as C, DriftObject as O};
    assert_eq!(
        details(finding(&after, &file)),
        [
            (
                C::Extra,
                O::Index,
                "users",
                "users_tmp_idx",
                "",
                "",
                "",
                "sample"
            ),
            (
                C::Extra,
                O::Trigger,
                "users",
                "users_touch",
                "",
                "",
                "",
                "sample"
            ),
        ]
    );
    assert_clean(finding(&after, &other));
    assert_eq!(recorded(&server, &file).await.map(|r| r.0), Some(true));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_job_checks_the_fleet_on_its_interval_and_the_gauge_counts_drifted_tenants() {
    let server = TestServer::start_with(Db::Postgres, |config| {
        config.drift_check_interval_secs = 3600;
    })
    .await;
    let acme = create(&server, "acme").await;
    let globex = create(&server, "globex").await;
    by_hand(
        &server,
        &format!(
            "CREATE INDEX messages_tmp_idx ON \"{}\".messages (body)",
            acme.schema_name
        ),
    )
    .await;
    assert_eq!(
        recorded(&server, &acme).await,
        None,
        "no pass before its interval"
    );

    server
        .advance_and_pass(TimeDelta::hours(1), Job::Drift)
        .await;

    assert_eq!(recorded(&server, &acme).await.map(|r| r.0), Some(true));
    assert_eq!(recorded(&server, &globex).await.map(|r| r.0), Some(false));
    let addr = server.metrics_addr.expect("on in tests");
    let (_, _, body) = get(addr, "/metrics").await;
    assert_eq!(
        samples(&body).get("tenant_plane_drifted_tenants"),
        Some(&1.0),
        "{body}"
    );
    server.stop().await;
}

/// The catalog's mirror of the tenant's components: (component, drifted), by component.
async fn components_drifted(server: &TestServer, tenant: &proto::Tenant) -> Vec<(String, bool)> {
    let db = server.catalog().await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT c.component, c.drifted FROM tenant_components c \
                 JOIN tenants t ON t.id = c.tenant_id WHERE t.slug = '{}' ORDER BY c.component",
                tenant.slug
            ),
        ))
        .await
        .expect("read tenant_components");
    db.close().await.expect("close");
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "component").expect("component"),
                r.try_get::<bool>("", "drifted").expect("drifted"),
            )
        })
        .collect()
}

on_both!(a_difference_on_a_pushed_component_s_table_names_it_and_marks_its_mirror_drifted);

async fn a_difference_on_a_pushed_component_s_table_names_it_and_marks_its_mirror_drifted(
    server: &TestServer,
) {
    register(
        server,
        "billing",
        &[(
            "0001_create_invoices",
            "CREATE TABLE invoices (id integer PRIMARY KEY, total integer NOT NULL)",
            "DROP TABLE invoices",
        )],
    )
    .await;
    plan_with(server, "suite", &["sample", "billing"]).await;
    let acme = provisioned_on(server, "acme", "suite").await;
    let conn = server.tenant_conn(&acme).await;
    conn.execute_unprepared("CREATE INDEX invoices_by_hand ON invoices (total)")
        .await
        .expect("a change by hand");

    let drifted = check(server, Scope::Tenant(acme.name.clone())).await;

    assert_eq!(
        details(finding(&drifted, &acme)),
        [(
            proto::DriftChange::Extra,
            proto::DriftObject::Index,
            "invoices",
            "invoices_by_hand",
            "",
            "",
            "",
            "billing"
        )]
    );
    assert_eq!(
        components_drifted(server, &acme).await,
        [("billing".to_owned(), true), ("sample".to_owned(), false)]
    );

    conn.execute_unprepared("DROP INDEX invoices_by_hand")
        .await
        .expect("mended by hand");
    conn.close().await.expect("close");
    let mended = check(server, Scope::Tenant(acme.name.clone())).await;

    assert_clean(finding(&mended, &acme));
    assert_eq!(
        components_drifted(server, &acme).await,
        [("billing".to_owned(), false), ("sample".to_owned(), false)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_trigger_and_function_are_reported_and_a_component_s_own_function_is_not() {
    let server = TestServer::start(Db::Postgres).await;
    register(
        &server,
        "billing",
        &[(
            "0001_create_invoices",
            "CREATE TABLE invoices (id integer PRIMARY KEY, total integer NOT NULL); \
             CREATE FUNCTION invoice_total(invoice integer) RETURNS integer LANGUAGE sql STABLE \
               AS 'SELECT total FROM invoices WHERE id = invoice'",
            "DROP FUNCTION invoice_total(integer); DROP TABLE invoices",
        )],
    )
    .await;
    plan_with(&server, "suite", &["sample", "billing"]).await;
    let acme = provisioned_on(&server, "acme", "suite").await;
    let globex = provisioned_on(&server, "globex", "suite").await;
    assert_clean(finding(&check(&server, all()).await, &acme));

    let schema = &acme.schema_name;
    by_hand(
        &server,
        &format!(
            "CREATE FUNCTION \"{schema}\".touch() RETURNS trigger LANGUAGE plpgsql \
               AS $$ BEGIN NEW.name := lower(NEW.name); RETURN NEW; END $$; \
             CREATE TRIGGER users_touch BEFORE UPDATE ON \"{schema}\".users \
               FOR EACH ROW EXECUTE FUNCTION \"{schema}\".touch(); \
             CREATE OR REPLACE FUNCTION \"{schema}\".invoice_total(invoice integer) \
               RETURNS integer LANGUAGE sql STABLE AS 'SELECT 0'"
        ),
    )
    .await;
    let after = check(&server, all()).await;

    assert_eq!(
        (after.checked_count, after.drifted_count),
        (2, 1),
        "{after:#?}"
    );
    let drifted = finding(&after, &acme);
    let found: Vec<_> = details(drifted)
        .into_iter()
        .map(|(change, object, table, name, aspect, _, _, component)| {
            (change, object, table, name, aspect, component)
        })
        .collect();
    use proto::{DriftChange as C, DriftObject as O};
    assert_eq!(
        found,
        [
            (C::Extra, O::Function, "", "touch()", "", ""),
            (
                C::Changed,
                O::Function,
                "",
                "invoice_total(integer)",
                "definition",
                "billing"
            ),
            (C::Extra, O::Trigger, "users", "users_touch", "", "sample"),
        ]
    );
    let changed = &drifted.difference_details[1];
    assert!(changed.actual.contains("SELECT 0"), "{changed:#?}");
    assert!(
        changed.expected.contains("SELECT total FROM invoices"),
        "{changed:#?}"
    );
    assert!(
        !changed.actual.contains(schema.as_str()),
        "a definition does not name its schema: {changed:#?}"
    );
    assert_eq!(drifted.differences[2], "extra trigger users_touch on users");
    assert_eq!(drifted.differences[0], "extra function touch()");
    assert_clean(finding(&after, &globex));
    assert_eq!(
        components_drifted(&server, &acme).await,
        [("billing".to_owned(), true), ("sample".to_owned(), true)]
    );

    // A check that cannot be made (the schema is gone) leaves the components' marks.
    by_hand(
        &server,
        &format!("ALTER SCHEMA \"{schema}\" RENAME TO acme_elsewhere"),
    )
    .await;
    let failed = check(&server, Scope::Tenant(acme.name.clone())).await;
    assert_eq!(failed.failed_count, 1, "{failed:#?}");
    assert_eq!(
        components_drifted(&server, &acme).await,
        [("billing".to_owned(), true), ("sample".to_owned(), true)]
    );
    server.stop().await;
}
