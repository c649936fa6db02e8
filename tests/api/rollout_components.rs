//! Rollouts of a pushed component: across SCHEMA and DATABASE tenants (only those whose plan
//! lists it, a tenant new to it installed from its first migration), two components at once, a
//! tenant whose migration fails under HALT and under CONTINUE, two replicas migrating every
//! tenant exactly once, and a server killed mid-rollout whose work a restarted one finishes.
//! What the compiled component's rollouts promise (tests/api/rollouts.rs and the others) holds
//! per component.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use tenant_plane::proto::{self, rollout::State};
use tonic::Code;

use crate::components_runs::{Script, plan_with};
use crate::on_both;
use crate::provisioning::provision;
use crate::rollout_crashes::killed_midway;
use crate::rollout_fleet::{all, finish, start};
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, new_tenant_on_plan};

on_both!(
    a_pushed_component_rolls_out_to_the_tenants_whose_plan_lists_it,
    two_components_roll_out_at_once,
    a_tenant_whose_migration_fails_halts_the_rollout_or_fails_alone,
);

/// Billing's migrations. The second builds a unique index: it fails in a tenant holding two
/// invoices with one reference, which is how a test makes one tenant's migration fail.
const BILLING: [Script; 3] = [
    (
        "0001_create_invoices",
        "CREATE TABLE invoices (id integer PRIMARY KEY, reference text NOT NULL)",
        "DROP TABLE invoices",
    ),
    (
        "0002_unique_references",
        "CREATE UNIQUE INDEX invoices_reference ON invoices (reference)",
        "DROP INDEX invoices_reference",
    ),
    (
        "0003_create_payments",
        "CREATE TABLE payments (id integer PRIMARY KEY, invoice integer NOT NULL)",
        "DROP TABLE payments",
    ),
];

const SEARCH: [Script; 2] = [
    (
        "0001_create_documents",
        "CREATE TABLE documents (id integer PRIMARY KEY, body text NOT NULL)",
        "DROP TABLE documents",
    ),
    (
        "0002_document_titles",
        "ALTER TABLE documents ADD COLUMN title text",
        "",
    ),
];

use crate::components_runs::{push, register};

/// Creates a tenant on `plan` (with `isolation`, or the server's default) and provisions it.
async fn provisioned(
    server: &TestServer,
    slug: &str,
    plan: &str,
    isolation: Option<proto::Isolation>,
) -> proto::Tenant {
    let mut tenant = new_tenant_on_plan(slug, plan);
    if let Some(isolation) = isolation {
        tenant.isolation = isolation as i32;
    }
    let tenant = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(tenant),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("create {slug}: {s:?}"))
        .into_inner();
    provision(server, &tenant.name, false, "")
        .await
        .unwrap_or_else(|s| panic!("provision {slug}: {s:?}"))
        .tenant
        .unwrap_or(tenant)
}

/// `n` tenants on the plan "suite" (billing and the sample component): on PostgreSQL SCHEMA
/// tenants and, with `database`, one DATABASE tenant; on SQLite all DATABASE tenants.
async fn suite(server: &TestServer, n: usize, database: bool) -> Vec<proto::Tenant> {
    let mut tenants = Vec::with_capacity(n + 1);
    for i in 0..n {
        tenants.push(provisioned(server, &format!("suite-{i}"), "suite", None).await);
    }
    if database {
        // A DATABASE tenant's database is named after its slug, on the PostgreSQL server
        // every test shares: a slug of its own.
        let slug = format!(
            "suite-db-{}",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        let isolated = Some(proto::Isolation::Database);
        tenants.push(provisioned(server, &slug, "suite", isolated).await);
    }
    tenants
}

fn of(component: &str) -> proto::StartRolloutRequest {
    proto::StartRolloutRequest {
        component: component.into(),
        selector: all(),
        max_concurrency: 4,
        ..Default::default()
    }
}

/// The versions in the tenant's version table of the pushed `component`, read in its storage.
async fn stored(server: &TestServer, tenant: &proto::Tenant, component: &str) -> Vec<String> {
    let conn = server.tenant_conn(tenant).await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT version FROM \"seaql_migrations_{component}\" ORDER BY version"),
        ))
        .await
        .expect("read the version table");
    conn.close().await.expect("close");
    rows.iter()
        .map(|r| r.try_get::<String>("", "version").expect("version"))
        .collect()
}

/// The catalog's mirror of the tenant's `component`: (version, last error), `None` without a
/// row.
async fn mirror(
    server: &TestServer,
    tenant: &proto::Tenant,
    component: &str,
) -> Option<(String, Option<String>)> {
    let db = server.catalog().await;
    let backend = db.get_database_backend();
    let (a, b) = match backend {
        DbBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let values: Vec<Value> = vec![tenant.slug.clone().into(), component.into()];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT coalesce(c.version, '') AS version, c.last_error \
                 FROM tenant_components c JOIN tenants t ON t.id = c.tenant_id \
                 WHERE t.slug = {a} AND c.component = {b}"
            ),
            values,
        ))
        .await
        .expect("read tenant_components");
    db.close().await.expect("close");
    row.map(|r| {
        (
            r.try_get::<String>("", "version").expect("version"),
            r.try_get::<Option<String>>("", "last_error")
                .expect("last_error"),
        )
    })
}

fn counts(rollout: &proto::Rollout) -> proto::RolloutCounts {
    rollout.counts.unwrap_or_default()
}

async fn a_pushed_component_rolls_out_to_the_tenants_whose_plan_lists_it(server: &TestServer) {
    register(server, "billing", &BILLING[..1]).await;
    plan_with(server, "suite", &["sample", "billing"]).await;
    plan_with(server, "growing", &["sample"]).await;
    let tenants = suite(server, 3, server.db == Db::Postgres).await;
    let bystander = provisioned(server, "bystander", "free", None).await;
    // Billing comes to its plan after it was provisioned: the rollout installs it.
    let late = provisioned(server, "late", "growing", None).await;
    plan_with(server, "growing", &["sample", "billing"]).await;
    push(server, "billing", &BILLING).await;

    let unknown = server.migrations().start_rollout(of("ghost")).await;
    let not_billings = server
        .migrations()
        .start_rollout(proto::StartRolloutRequest {
            target_version: SAMPLE_MIGRATIONS[4].into(),
            ..of("billing")
        })
        .await;
    let started = start(server, of("billing")).await;
    let ended = finish(server, &started).await;

    assert_eq!(
        unknown.map(|_| ()).map_err(|s| s.code()),
        Err(Code::NotFound)
    );
    crate::support::assert_bad_field(
        &not_billings.expect_err("a sample migration is not billing's"),
        "target_version",
    );
    assert_eq!(started.component, "billing");
    assert_eq!(started.target_version, BILLING[2].0);
    let total = tenants.len() as i32 + 1;
    assert_eq!(
        counts(&started).total,
        total,
        "the bystander's plan lacks billing"
    );
    assert_eq!(ended.state(), State::Succeeded, "{ended:?}");
    assert_eq!(ended.component, "billing");
    assert_eq!((counts(&ended).migrated, counts(&ended).failed), (total, 0));
    let all_three: Vec<String> = BILLING.iter().map(|s| s.0.to_owned()).collect();
    for tenant in tenants.iter().chain([&late]) {
        assert_eq!(
            stored(server, tenant, "billing").await,
            all_three,
            "{}",
            tenant.slug
        );
        assert_eq!(
            mirror(server, tenant, "billing").await,
            Some((BILLING[2].0.to_owned(), None)),
            "{}",
            tenant.slug
        );
        // The compiled component is left as it was, in the tenant and in its mirror.
        assert_eq!(
            mirror(server, tenant, "sample").await,
            Some((SAMPLE_MIGRATIONS[4].to_owned(), None))
        );
        assert_eq!(
            crate::rollout_fleet::version_of(server, tenant).await,
            SAMPLE_MIGRATIONS[4]
        );
    }
    assert_eq!(mirror(server, &bystander, "billing").await, None);
    assert!(
        !server
            .tenant_tables(&bystander)
            .await
            .contains(&"invoices".to_owned())
    );

    // Everyone is at the target now: a second rollout skips them all without a migration.
    let again = finish(server, &start(server, of("billing")).await).await;
    assert_eq!(again.state(), State::Succeeded, "{again:?}");
    assert_eq!(
        (counts(&again).skipped, counts(&again).migrated),
        (total, 0)
    );
}

async fn two_components_roll_out_at_once(server: &TestServer) {
    register(server, "billing", &BILLING[..1]).await;
    register(server, "search", &SEARCH[..1]).await;
    plan_with(server, "suite", &["sample", "billing", "search"]).await;
    let tenants = suite(server, 4, server.db == Db::Postgres).await;
    push(server, "billing", &BILLING).await;
    push(server, "search", &SEARCH).await;

    let (billing, search) = tokio::join!(start(server, of("billing")), start(server, of("search")));
    let (billing, search) = tokio::join!(finish(server, &billing), finish(server, &search));

    for (ended, component) in [(&billing, "billing"), (&search, "search")] {
        assert_eq!(ended.state(), State::Succeeded, "{ended:?}");
        assert_eq!(ended.component, component);
        assert_eq!(counts(ended).migrated, tenants.len() as i32);
    }
    for tenant in &tenants {
        assert_eq!(stored(server, tenant, "billing").await.len(), 3);
        assert_eq!(stored(server, tenant, "search").await.len(), 2);
        assert_eq!(
            mirror(server, tenant, "billing").await,
            Some((BILLING[2].0.to_owned(), None))
        );
        assert_eq!(
            mirror(server, tenant, "search").await,
            Some((SEARCH[1].0.to_owned(), None))
        );
    }
}

/// Two invoices with one reference: billing's unique index cannot be built here.
async fn poison(server: &TestServer, tenant: &proto::Tenant) {
    let conn = server.tenant_conn(tenant).await;
    for id in [1, 2] {
        conn.execute_unprepared(&format!(
            "INSERT INTO invoices (id, reference) VALUES ({id}, 'twin')"
        ))
        .await
        .expect("insert a twin");
    }
    conn.close().await.expect("close");
}

async fn a_tenant_whose_migration_fails_halts_the_rollout_or_fails_alone(server: &TestServer) {
    register(server, "billing", &BILLING[..1]).await;
    plan_with(server, "suite", &["sample", "billing"]).await;
    let tenants = suite(server, 4, false).await;
    // The first tenant (tenant ids order the targets) fails; one by one, HALT stops there.
    let poisoned = &tenants[0];
    poison(server, poisoned).await;
    push(server, "billing", &BILLING[..2]).await;

    let halted = finish(
        server,
        &start(
            server,
            proto::StartRolloutRequest {
                max_concurrency: 1,
                error_policy: proto::ErrorPolicy::Halt as i32,
                ..of("billing")
            },
        )
        .await,
    )
    .await;
    let halted_versions = stored(server, &tenants[1], "billing").await;
    let continued = finish(
        server,
        &start(
            server,
            proto::StartRolloutRequest {
                error_policy: proto::ErrorPolicy::Continue as i32,
                ..of("billing")
            },
        )
        .await,
    )
    .await;

    assert_eq!(halted.state(), State::Halted, "{halted:?}");
    assert_eq!(
        (counts(&halted).failed, counts(&halted).migrated),
        (1, 0),
        "{halted:?}"
    );
    assert_eq!(
        halted_versions,
        [BILLING[0].0],
        "HALT left the others as they were"
    );
    assert_eq!(continued.state(), State::Failed, "{continued:?}");
    let all = tenants.len() as i32;
    assert_eq!(
        (counts(&continued).failed, counts(&continued).migrated),
        (1, all - 1),
        "{continued:?}"
    );
    assert_eq!(stored(server, poisoned, "billing").await, [BILLING[0].0]);
    let (version, error) = mirror(server, poisoned, "billing")
        .await
        .expect("billing's mirror");
    assert_eq!(version, BILLING[0].0);
    assert!(
        error.as_deref().is_some_and(|e| e.contains(BILLING[0].0)),
        "the error says where billing was left: {error:?}"
    );
    assert_eq!(
        mirror(server, poisoned, "sample").await.map(|(_, e)| e),
        Some(None),
        "the failure is billing's alone"
    );
    for tenant in &tenants[1..] {
        assert_eq!(
            stored(server, tenant, "billing").await,
            [BILLING[0].0, BILLING[1].0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_roll_a_component_out_to_every_tenant_exactly_once() {
    let a = TestServer::start(Db::Postgres).await;
    register(&a, "billing", &BILLING[..1]).await;
    plan_with(&a, "suite", &["sample", "billing"]).await;
    let tenants = suite(&a, 12, true).await;
    push(&a, "billing", &BILLING).await;
    let catalog = a.catalog_url.clone();
    let b = TestServer::start_with(Db::Postgres, |c| c.database_url = Some(catalog)).await;
    let request = proto::StartRolloutRequest {
        max_concurrency: 3,
        ..of("billing")
    };

    let (first, second) = tokio::join!(start(&a, request.clone()), start(&b, request));
    let (first, second) = tokio::join!(finish(&a, &first), finish(&b, &second));

    for ended in [&first, &second] {
        assert_eq!(ended.state(), State::Succeeded, "{ended:?}");
    }
    assert_eq!(
        counts(&first).migrated + counts(&second).migrated,
        tenants.len() as i32,
        "each tenant migrated by exactly one of the rollouts"
    );
    let db = a.catalog().await;
    let per_tenant = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT tenant_id, count(*) AS n FROM rollout_targets \
             WHERE state = 'MIGRATED' GROUP BY tenant_id",
        ))
        .await
        .expect("count migrations per tenant");
    db.close().await.expect("close");
    assert_eq!(per_tenant.len(), tenants.len());
    assert!(
        per_tenant
            .iter()
            .all(|row| row.try_get::<i64>("", "n").ok() == Some(1))
    );
    for tenant in &tenants {
        assert_eq!(
            stored(&a, tenant, "billing").await.len(),
            3,
            "{}",
            tenant.slug
        );
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_rollout_survives_a_killed_server_and_a_restart_finishes_it() {
    const TENANTS: usize = 30;
    let setup = TestServer::start(Db::Postgres).await;
    register(&setup, "billing", &BILLING[..1]).await;
    plan_with(&setup, "suite", &["sample", "billing"]).await;
    let tenants = suite(&setup, TENANTS, false).await;
    push(&setup, "billing", &BILLING).await;
    let catalog = setup.catalog_url.clone();
    setup.stop().await;

    let (second, rollout) = killed_midway(
        &catalog,
        proto::StartRolloutRequest {
            max_concurrency: 1,
            ..of("billing")
        },
    )
    .await;
    let ended = finish(&second, &rollout).await;

    assert_eq!(ended.state(), State::Succeeded, "{ended:?}");
    let counts = counts(&ended);
    assert_eq!(
        (counts.migrated + counts.skipped, counts.failed),
        (TENANTS as i32, 0)
    );
    for tenant in &tenants {
        let versions = stored(&second, tenant, "billing").await;
        assert_eq!(
            versions.len(),
            3,
            "{} is at the target, each migration applied once",
            tenant.slug
        );
        assert_eq!(
            mirror(&second, tenant, "billing").await,
            Some((BILLING[2].0.to_owned(), None))
        );
    }
    second.stop().await;
}
