//! `tenant-plane migrate --component`, run as a process on a real PostgreSQL catalog with no
//! server running: a pushed component rolled out with `--all` to the tenants whose plan lists
//! it, one tenant's status, history, down and up of it, and the refusals (an unknown
//! component, one the tenant's plan does not list, a version that is not the component's),
//! each exiting non-zero and changing nothing.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tenant_plane::proto;

use crate::cli::{migrate, stdout};
use crate::components_runs::{plan_with, provisioned_on, register};
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, column_of};

/// Billing's two migrations: version, up script, down script.
const BILLING: [(&str, &str, &str); 2] = [
    (
        "0001_create_invoices",
        "CREATE TABLE invoices (id integer PRIMARY KEY, total integer NOT NULL)",
        "DROP TABLE invoices",
    ),
    (
        "0002_invoice_notes",
        "ALTER TABLE invoices ADD COLUMN note text",
        "ALTER TABLE invoices DROP COLUMN note",
    ),
];

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What a refused command must leave as it was: every (tenant, component, version) the
/// catalog mirrors, every billing table in any schema, and how many rollouts were started.
#[derive(Debug, PartialEq)]
struct Billing {
    mirrors: Vec<String>,
    tables: Vec<String>,
    rollouts: Vec<String>,
}

async fn billing(catalog: &DatabaseConnection) -> Billing {
    Billing {
        mirrors: column_of(
            catalog,
            "SELECT t.slug || ' ' || c.component || ' ' || coalesce(c.version, '(none)') AS name \
             FROM tenant_components c JOIN tenants t ON t.id = c.tenant_id ORDER BY name",
        )
        .await,
        tables: column_of(
            catalog,
            "SELECT CAST(table_schema || '.' || table_name AS TEXT) AS name \
             FROM information_schema.tables \
             WHERE table_name IN ('invoices', 'seaql_migrations_billing') ORDER BY name",
        )
        .await,
        rollouts: column_of(
            catalog,
            "SELECT CAST(id AS TEXT) AS name FROM rollouts ORDER BY name",
        )
        .await,
    }
}

/// The versions in the tenant's billing version table.
async fn stored(catalog: &DatabaseConnection, tenant: &proto::Tenant) -> Vec<String> {
    column_of(
        catalog,
        &format!(
            "SELECT version AS name FROM \"{}\".seaql_migrations_billing ORDER BY version",
            tenant.schema_name
        ),
    )
    .await
}

/// The catalog's mirror of the tenant's `component`: its version, `None` without a row.
async fn mirrored(
    catalog: &DatabaseConnection,
    tenant: &proto::Tenant,
    component: &str,
) -> Option<String> {
    catalog
        .query_one_raw(Statement::from_sql_and_values(
            catalog.get_database_backend(),
            "SELECT coalesce(c.version, '') AS version FROM tenant_components c \
             JOIN tenants t ON t.id = c.tenant_id WHERE t.slug = $1 AND c.component = $2",
            [tenant.slug.clone().into(), component.into()],
        ))
        .await
        .expect("read tenant_components")
        .map(|r| r.try_get::<String>("", "version").expect("version"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_component_rolls_out_to_the_plans_that_list_it_and_moves_one_tenant() {
    let server = TestServer::start(Db::Postgres).await;
    register(&server, "billing", &BILLING).await;
    // Billing comes to the suite plan after its tenants were provisioned: nothing of it is
    // installed yet. The free plan never lists it.
    plan_with(&server, "suite", &["sample"]).await;
    let acme = provisioned_on(&server, "acme", "suite").await;
    let globex = provisioned_on(&server, "globex", "suite").await;
    let initech = provisioned_on(&server, "initech", "free").await;
    plan_with(&server, "suite", &["sample", "billing"]).await;
    let url = server.catalog_url.clone();
    server.stop().await;
    let catalog = Database::connect(&url)
        .await
        .expect("connect to the catalog");

    let before = migrate(
        &url,
        &["--tenant", "acme", "--component", "billing", "status"],
    );
    let to_first = migrate(
        &url,
        &["--all", "--component", "billing", "--to", BILLING[0].0],
    );
    let first = (
        stored(&catalog, &acme).await,
        stored(&catalog, &globex).await,
    );
    let all = migrate(
        &url,
        &["--all", "--component", "billing", "--concurrency", "2"],
    );

    assert!(before.status.success(), "{before:?}");
    assert!(
        stdout(&before).contains("acme (billing): at (none)"),
        "{}",
        stdout(&before)
    );
    assert!(stdout(&before).contains(&format!("pending  {}", BILLING[1].0)));
    assert!(to_first.status.success(), "{to_first:?}");
    assert_eq!(
        first,
        (vec![BILLING[0].0.to_owned()], vec![BILLING[0].0.to_owned()])
    );
    assert!(all.status.success(), "{all:?}");
    assert!(
        stdout(&all).contains(&format!("of billing to {}: 2 tenants", BILLING[1].0)),
        "{}",
        stdout(&all)
    );
    assert!(stdout(&all).contains("SUCCEEDED"), "{}", stdout(&all));
    assert!(stderr(&all).contains("2 migrated"), "{}", stderr(&all));
    let both: Vec<String> = BILLING.iter().map(|m| m.0.to_owned()).collect();
    for tenant in [&acme, &globex] {
        assert_eq!(stored(&catalog, tenant).await, both, "{}", tenant.slug);
        assert_eq!(
            mirrored(&catalog, tenant, "billing").await.as_deref(),
            Some(BILLING[1].0),
            "{}",
            tenant.slug
        );
        assert_eq!(
            mirrored(&catalog, tenant, "sample").await.as_deref(),
            Some(SAMPLE_MIGRATIONS[4]),
            "the compiled component is left as it was"
        );
    }
    assert_eq!(mirrored(&catalog, &initech, "billing").await, None);
    assert!(
        !billing(&catalog)
            .await
            .tables
            .iter()
            .any(|t| t.starts_with(&format!("{}.", initech.schema_name))),
        "the free plan does not list billing"
    );

    // One tenant, back one step, read, and up again; the other tenant is not touched.
    let down = migrate(
        &url,
        &["--tenant", "acme", "--component", "billing", "down"],
    );
    let after_down = stored(&catalog, &acme).await;
    let mirror_after_down = mirrored(&catalog, &acme, "billing").await;
    let status = migrate(
        &url,
        &["--tenant", "acme", "--component", "billing", "status"],
    );
    let history = migrate(
        &url,
        &["--tenant", "acme", "--component", "billing", "history"],
    );
    let sample = migrate(&url, &["--tenant", "acme", "status"]);
    let up = migrate(&url, &["--tenant", "acme", "--component", "billing", "up"]);

    assert!(down.status.success(), "{down:?}");
    assert!(
        stdout(&down).contains(&format!("reverted {}", BILLING[1].0)),
        "{}",
        stdout(&down)
    );
    assert_eq!(after_down, [BILLING[0].0]);
    assert_eq!(mirror_after_down.as_deref(), Some(BILLING[0].0));
    assert_eq!(stored(&catalog, &globex).await, both);
    assert!(status.status.success(), "{status:?}");
    assert!(
        stdout(&status).contains(&format!("acme (billing): at {}", BILLING[0].0)),
        "{}",
        stdout(&status)
    );
    assert!(
        stdout(&status).contains(&format!("pending  {}", BILLING[1].0)),
        "{}",
        stdout(&status)
    );
    assert!(history.status.success(), "{history:?}");
    assert_eq!(stdout(&history).lines().count(), 1, "{}", stdout(&history));
    assert!(
        stdout(&history).contains(BILLING[0].0),
        "{}",
        stdout(&history)
    );
    assert!(
        stdout(&sample).contains(&format!("acme (sample): at {}", SAMPLE_MIGRATIONS[4])),
        "--component defaults to sample: {}",
        stdout(&sample)
    );
    assert!(up.status.success(), "{up:?}");
    assert!(
        stdout(&up).contains(&format!("applied  {}", BILLING[1].0)),
        "{}",
        stdout(&up)
    );
    assert_eq!(stored(&catalog, &acme).await, both);
    catalog.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_component_refusals_exit_non_zero_say_why_and_change_nothing() {
    let server = TestServer::start(Db::Postgres).await;
    register(&server, "billing", &BILLING[..1]).await;
    plan_with(&server, "suite", &["sample"]).await;
    let acme = provisioned_on(&server, "acme", "suite").await;
    provisioned_on(&server, "initech", "free").await;
    plan_with(&server, "suite", &["sample", "billing"]).await;
    let url = server.catalog_url.clone();
    server.stop().await;
    let catalog = Database::connect(&url)
        .await
        .expect("connect to the catalog");
    let before = billing(&catalog).await;

    let refusals = [
        (
            migrate(&url, &["--all", "--component", "ghost"]),
            "component components/ghost not found",
        ),
        (
            migrate(&url, &["--tenant", "acme", "--component", "ghost", "up"]),
            "component components/ghost not found",
        ),
        (
            migrate(
                &url,
                &["--tenant", "acme", "--component", "ghost", "status"],
            ),
            "component components/ghost not found",
        ),
        (
            migrate(
                &url,
                &["--tenant", "initech", "--component", "billing", "up"],
            ),
            "the plan of tenant initech (free) does not list component billing",
        ),
        (
            migrate(
                &url,
                &["--tenant", "initech", "--component", "billing", "down"],
            ),
            "the plan of tenant initech (free) does not list component billing",
        ),
        (
            migrate(
                &url,
                &["--all", "--component", "billing", "--to", "0009_nope"],
            ),
            "--to: '0009_nope' is not a migration of component 'billing'",
        ),
        // A version of the compiled component is not one of billing's.
        (
            migrate(
                &url,
                &[
                    "--all",
                    "--component",
                    "billing",
                    "--to",
                    SAMPLE_MIGRATIONS[1],
                ],
            ),
            "is not a migration of component 'billing'",
        ),
        (
            migrate(
                &url,
                &[
                    "--tenant",
                    "acme",
                    "--component",
                    "billing",
                    "up",
                    "--to",
                    "0009_nope",
                ],
            ),
            "--to: '0009_nope' is not a migration of component 'billing'",
        ),
        // And the compiled component's --to as before, naming its component.
        (
            migrate(&url, &["--all", "--to", BILLING[0].0]),
            "is not a migration of component 'sample'",
        ),
    ];
    // A status of a component the plan does not list reads what is there and says so.
    let unlisted = migrate(
        &url,
        &["--tenant", "initech", "--component", "billing", "status"],
    );

    for (output, why) in &refusals {
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        assert!(stderr(output).contains(why), "{why}: {}", stderr(output));
    }
    assert!(unlisted.status.success(), "{unlisted:?}");
    assert!(
        stdout(&unlisted).contains("initech (billing): at (none)"),
        "{}",
        stdout(&unlisted)
    );
    assert!(
        stderr(&unlisted).contains("does not list component billing"),
        "{}",
        stderr(&unlisted)
    );
    assert_eq!(billing(&catalog).await, before, "a refusal changes nothing");
    assert!(before.rollouts.is_empty());
    assert_eq!(mirrored(&catalog, &acme, "billing").await, None);
    catalog.close().await.expect("close");
}
