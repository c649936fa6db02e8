//! Pushed components in tenants' storage: two services' components provisioned into one
//! tenant and migrated independently, each with its own version table and catalog mirror; a
//! component added to a plan later; a component the plan does not list refused; SHARED tenants'
//! pushed tables secured like the compiled ones; and a version table made after the tenant's
//! role that the role still cannot write.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tenant_plane::proto::{
    self, MigrationDirection, component_service_client::ComponentServiceClient,
};
use tonic::Code;

use crate::on_both;
use crate::plans::{plans, upsert};
use crate::provisioning::provision;
use crate::support::{Conn, Db, TestServer, column_of, new_tenant_on_plan};
use crate::tenant_roles::{connect_as, denied, require_password, rotate};

on_both!(
    two_services_components_are_installed_together_and_migrated_apart,
    a_component_added_to_the_plan_later_is_installed_by_migrate_tenant,
    a_component_the_plan_does_not_list_is_refused_and_changes_nothing,
    a_pushed_migration_is_reverted_with_its_down_script,
);

fn components(server: &TestServer) -> ComponentServiceClient<Conn> {
    ComponentServiceClient::new(server.conn())
}

/// A migration of a component: version, up script, down script.
pub type Script = (&'static str, &'static str, &'static str);

const BILLING: [Script; 2] = [
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

const SEARCH: [Script; 1] = [(
    "0001_create_documents",
    "CREATE TABLE documents (id integer PRIMARY KEY, body text NOT NULL); \
     CREATE INDEX documents_body ON documents (body)",
    "",
)];

/// Registers `component` and pushes `scripts` to it.
pub async fn register(server: &TestServer, component: &str, scripts: &[Script]) {
    components(server)
        .create_component(proto::CreateComponentRequest {
            component: Some(proto::Component {
                component_id: component.into(),
                description: format!("the {component} service's tables"),
                owner: format!("team-{component}"),
                ..Default::default()
            }),
        })
        .await
        .unwrap_or_else(|s| panic!("create component {component}: {s:?}"));
    push(server, component, scripts).await;
}

/// Pushes `scripts` to `component`; their down scripts are allowed to be destructive.
pub async fn push(server: &TestServer, component: &str, scripts: &[Script]) {
    components(server)
        .push_migrations(proto::PushMigrationsRequest {
            component: format!("components/{component}"),
            migrations: scripts
                .iter()
                .map(|(version, up, down)| proto::ComponentMigration {
                    version: (*version).into(),
                    up_sql: (*up).into(),
                    down_sql: (*down).into(),
                    ..Default::default()
                })
                .collect(),
            allow: Some(proto::LintAllowances {
                destructive: true,
                ..Default::default()
            }),
            validate_only: false,
        })
        .await
        .unwrap_or_else(|s| panic!("push to {component}: {s:?}"));
}

/// Creates (or changes) `plan` to list `components`.
pub async fn plan_with(server: &TestServer, plan: &str, components: &[&str]) {
    plans(server)
        .upsert_plan(upsert(
            proto::Plan {
                name: format!("plans/{plan}"),
                components: components.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            },
            &["components"],
        ))
        .await
        .unwrap_or_else(|s| panic!("plan {plan}: {s:?}"));
}

/// Creates a tenant on `plan` and provisions it.
pub async fn provisioned_on(server: &TestServer, slug: &str, plan: &str) -> proto::Tenant {
    let tenant = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant_on_plan(slug, plan)),
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

pub async fn migrate(
    server: &TestServer,
    tenant: &str,
    component: &str,
    target_version: &str,
    direction: MigrationDirection,
) -> Result<proto::MigrateTenantResponse, tonic::Status> {
    server
        .migrations()
        .migrate_tenant(proto::MigrateTenantRequest {
            tenant: tenant.into(),
            component: component.into(),
            target_version: target_version.into(),
            direction: direction.into(),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn status(server: &TestServer, tenant: &str, component: &str) -> proto::MigrationStatus {
    server
        .migrations()
        .get_migration_status(proto::GetMigrationStatusRequest {
            tenant: tenant.into(),
            component: component.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("status of {component} in {tenant}: {s:?}"))
        .into_inner()
}

/// The versions in the tenant's version table of `component`, read in its storage.
async fn stored_versions(
    server: &TestServer,
    tenant: &proto::Tenant,
    component: &str,
) -> Vec<String> {
    let conn = server.tenant_conn(tenant).await;
    let versions = column_of(
        &conn,
        &format!("SELECT version AS name FROM \"seaql_migrations_{component}\" ORDER BY version"),
    )
    .await;
    conn.close().await.expect("close");
    versions
}

/// The catalog's mirror: each (component, version) of the tenant, by component.
async fn mirrored(server: &TestServer, tenant: &proto::Tenant) -> Vec<(String, String)> {
    let catalog = server.catalog().await;
    let backend = catalog.get_database_backend();
    let placeholder = if backend == DbBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    let sql = format!(
        "SELECT c.component, coalesce(c.version, '') AS version \
         FROM tenant_components c JOIN tenants t ON t.id = c.tenant_id \
         WHERE t.slug = {placeholder} ORDER BY c.component"
    );
    let values: Vec<sea_orm::Value> = vec![tenant.slug.clone().into()];
    let rows = catalog
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .expect("read tenant_components");
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "component").expect("component"),
                r.try_get::<String>("", "version").expect("version"),
            )
        })
        .collect()
}

fn pair(component: &str, version: &str) -> (String, String) {
    (component.to_owned(), version.to_owned())
}

async fn two_services_components_are_installed_together_and_migrated_apart(server: &TestServer) {
    register(server, "billing", &BILLING[..1]).await;
    register(server, "search", &SEARCH).await;
    plan_with(server, "suite", &["billing", "search"]).await;

    let acme = provisioned_on(server, "acme", "suite").await;

    let tables = server.tenant_tables(&acme).await;
    for table in [
        "documents",
        "invoices",
        "seaql_migrations_billing",
        "seaql_migrations_search",
    ] {
        assert!(tables.contains(&table.to_owned()), "{table} in {tables:?}");
    }
    assert!(
        !tables.contains(&"users".to_owned()),
        "the plan does not list the sample component: {tables:?}"
    );
    assert_eq!(
        stored_versions(server, &acme, "billing").await,
        [BILLING[0].0]
    );
    assert_eq!(
        mirrored(server, &acme).await,
        [pair("billing", BILLING[0].0), pair("search", SEARCH[0].0)]
    );

    let globex = provisioned_on(server, "globex", "suite").await;
    // Billing's service ships its next migration; search's tables are not touched.
    push(server, "billing", &BILLING).await;
    let pending = status(server, &acme.name, "billing").await;
    assert_eq!(pending.pending, [BILLING[1].0]);
    assert_eq!(pending.component, "billing");
    let done = migrate(server, &acme.name, "billing", "", MigrationDirection::Up)
        .await
        .expect("migrate billing");

    assert_eq!(done.applied, [BILLING[1].0]);
    assert_eq!(
        stored_versions(server, &acme, "billing").await,
        [BILLING[0].0, BILLING[1].0]
    );
    assert_eq!(
        stored_versions(server, &acme, "search").await,
        [SEARCH[0].0]
    );
    assert_eq!(
        mirrored(server, &acme).await,
        [pair("billing", BILLING[1].0), pair("search", SEARCH[0].0)]
    );
    let conn = server.tenant_conn(&acme).await;
    conn.execute_unprepared("INSERT INTO invoices (id, total, note) VALUES (1, 10, 'paid')")
        .await
        .expect("the new column is there");
    conn.close().await.expect("close");
    let search = status(server, &acme.name, "search").await;
    assert_eq!(search.current_version, SEARCH[0].0);
    assert!(search.pending.is_empty(), "{search:?}");

    // The catalog answers "who is at which version" without opening a tenant.
    assert_eq!(
        at(server, "billing", BILLING[1].0).await,
        std::slice::from_ref(&acme.slug)
    );
    assert_eq!(
        at(server, "billing", BILLING[0].0).await,
        std::slice::from_ref(&globex.slug)
    );
    assert_eq!(at(server, "search", SEARCH[0].0).await.len(), 2);
    assert!(at(server, "billing", "").await.is_empty());

    // The fleet view's counts are those of the tenants' own version tables.
    let fleet = components(server)
        .get_fleet_status(proto::GetFleetStatusRequest {})
        .await
        .expect("fleet status")
        .into_inner();
    assert_eq!(fleet.tenant_count, 2);
    for component in ["billing", "search"] {
        let mut stored: Vec<(String, i32)> = Vec::new();
        for tenant in [&acme, &globex] {
            let version = stored_versions(server, tenant, component)
                .await
                .pop()
                .unwrap_or_default();
            match stored.iter_mut().find(|(v, _)| *v == version) {
                Some((_, n)) => *n += 1,
                None => stored.push((version, 1)),
            }
        }
        stored.sort();
        let view = fleet
            .components
            .iter()
            .find(|c| c.component_id == component)
            .unwrap_or_else(|| panic!("{component} in {fleet:?}"));
        let counted: Vec<(String, i32)> = view
            .versions
            .iter()
            .map(|v| (v.version.clone(), v.tenant_count))
            .collect();
        assert_eq!(counted, stored, "{component}");
        assert_eq!(view.tenant_count, 2, "{view:?}");
        let behind = stored
            .iter()
            .filter(|(v, _)| *v != view.latest_version)
            .map(|(_, n)| n)
            .sum::<i32>();
        assert_eq!(view.pending_count, behind, "{view:?}");
        assert_eq!(view.failed_count, 0, "{view:?}");
    }
    let sample = fleet
        .components
        .iter()
        .find(|c| c.component_id == "sample")
        .expect("the compiled component is listed");
    assert_eq!(sample.tenant_count, 0, "the suite plan does not list it");
}

/// The slugs ListTenants returns for tenants at `version` of `component`.
async fn at(server: &TestServer, component: &str, version: &str) -> Vec<String> {
    let mut slugs: Vec<String> = server
        .tenants()
        .list_tenants(proto::ListTenantsRequest {
            component_version: Some(proto::ComponentVersion {
                component: component.into(),
                version: version.into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("list tenants at {component} {version}: {s:?}"))
        .into_inner()
        .tenants
        .into_iter()
        .map(|t| t.slug)
        .collect();
    slugs.sort();
    slugs
}

async fn a_component_added_to_the_plan_later_is_installed_by_migrate_tenant(server: &TestServer) {
    register(server, "billing", &BILLING).await;
    plan_with(server, "growing", &["sample"]).await;
    let acme = provisioned_on(server, "acme", "growing").await;
    assert!(
        !server
            .tenant_tables(&acme)
            .await
            .contains(&"invoices".to_owned())
    );

    plan_with(server, "growing", &["sample", "billing"]).await;
    let done = migrate(server, &acme.name, "billing", "", MigrationDirection::Up)
        .await
        .expect("install billing");

    assert_eq!(done.applied, [BILLING[0].0, BILLING[1].0]);
    assert!(
        server
            .tenant_tables(&acme)
            .await
            .contains(&"invoices".to_owned())
    );

    // Drift is judged against every component the tenant has: clean, then a hand-made column
    // in the pushed component's table is reported.
    assert!(
        !drift_of(server, &acme).await.drifted,
        "clean after the install"
    );
    let conn = server.tenant_conn(&acme).await;
    conn.execute_unprepared("ALTER TABLE invoices ADD COLUMN by_hand integer")
        .await
        .expect("a change by hand");
    conn.close().await.expect("close");
    let drifted = drift_of(server, &acme).await;
    assert!(drifted.drifted, "{drifted:?}");
    assert!(
        drifted
            .differences
            .iter()
            .any(|d| d.contains("invoices.by_hand")),
        "{drifted:?}"
    );
    assert_eq!(
        mirrored(server, &acme).await,
        [
            pair("billing", BILLING[1].0),
            pair("sample", crate::support::SAMPLE_MIGRATIONS[4])
        ]
    );
}

async fn a_component_the_plan_does_not_list_is_refused_and_changes_nothing(server: &TestServer) {
    register(server, "billing", &BILLING).await;
    let acme = provisioned_on(server, "acme", "free").await;
    let before = server.catalog_snapshot().await;
    let tables = server.tenant_tables(&acme).await;

    let unlisted = migrate(server, &acme.name, "billing", "", MigrationDirection::Up)
        .await
        .expect_err("billing is not on the free plan");
    let unknown = migrate(server, &acme.name, "nope", "", MigrationDirection::Up)
        .await
        .expect_err("no such component");

    assert_eq!(unlisted.code(), Code::FailedPrecondition, "{unlisted:?}");
    assert!(unlisted.message().contains("billing"), "{unlisted:?}");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(server.catalog_snapshot().await, before);
    assert_eq!(server.tenant_tables(&acme).await, tables);
    assert_eq!(
        mirrored(server, &acme).await,
        [pair("sample", crate::support::SAMPLE_MIGRATIONS[4])]
    );

    // A plan naming a component nobody registered is refused too.
    let refused = plans(server)
        .upsert_plan(upsert(
            proto::Plan {
                name: "plans/free".into(),
                components: vec!["sample".into(), "ghost".into()],
                ..Default::default()
            },
            &["components"],
        ))
        .await
        .expect_err("ghost is not registered");
    crate::support::assert_bad_field(&refused, "plan.components[1]");
}

async fn a_pushed_migration_is_reverted_with_its_down_script(server: &TestServer) {
    register(server, "billing", &BILLING).await;
    register(server, "search", &SEARCH).await;
    plan_with(server, "suite", &["billing", "search"]).await;
    let acme = provisioned_on(server, "acme", "suite").await;

    let down = migrate(server, &acme.name, "billing", "", MigrationDirection::Down)
        .await
        .expect("revert billing's last migration");
    let irreversible = migrate(
        server,
        &acme.name,
        "search",
        SEARCH[0].0,
        MigrationDirection::Down,
    )
    .await;

    assert_eq!(down.applied, [BILLING[1].0]);
    assert_eq!(
        stored_versions(server, &acme, "billing").await,
        [BILLING[0].0]
    );
    // Reverting search's only migration is not offered (it would leave no tables).
    assert!(irreversible.is_ok_and(|r| r.applied.is_empty()));
    assert_eq!(
        stored_versions(server, &acme, "search").await,
        [SEARCH[0].0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tenants_get_pushed_tables_with_row_security() {
    let server = TestServer::start(Db::Postgres).await;
    register(&server, "billing", &BILLING).await;
    plans(&server)
        .upsert_plan(upsert(
            proto::Plan {
                name: "plans/pooled".into(),
                components: vec!["billing".into()],
                default_isolation: proto::Isolation::Shared.into(),
                ..Default::default()
            },
            &[],
        ))
        .await
        .expect("pooled plan");
    let acme = provisioned_on(&server, "acme", "pooled").await;
    let globex = provisioned_on(&server, "globex", "pooled").await;

    let catalog = server.catalog().await;
    let secured = column_of(
        &catalog,
        &format!(
            "SELECT c.relname::text AS name FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{}' AND c.relrowsecurity AND c.relforcerowsecurity \
             ORDER BY 1",
            acme.schema_name
        ),
    )
    .await;
    assert_eq!(secured, ["invoices"], "version tables are not tenant rows");
    assert_eq!(
        mirrored(&server, &acme).await,
        [pair("billing", BILLING[1].0)]
    );
    assert_eq!(
        mirrored(&server, &globex).await,
        [pair("billing", BILLING[1].0)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_role_cannot_write_the_version_table_of_a_component_added_later() {
    let server = TestServer::start(Db::Postgres).await;
    register(&server, "billing", &BILLING).await;
    plan_with(&server, "growing", &["sample"]).await;
    let acme = provisioned_on(&server, "acme", "growing").await;
    plan_with(&server, "growing", &["sample", "billing"]).await;
    migrate(&server, &acme.name, "billing", "", MigrationDirection::Up)
        .await
        .expect("install billing");
    let credentials = rotate(&server, &acme).await;
    require_password(&server, &credentials.role_name).await;
    let database = crate::tenant_roles::catalog_database(&server);
    let role = connect_as(
        &server,
        &database,
        &credentials.role_name,
        &credentials.password,
    )
    .await
    .expect("log in as the tenant's role");
    let table = format!("\"{}\".seaql_migrations_billing", acme.schema_name);

    let read = column_of(
        &role,
        &format!("SELECT version AS name FROM {table} ORDER BY 1"),
    )
    .await;
    assert_eq!(read.len(), 2, "the role may read its versions");
    denied(&role, &format!("DELETE FROM {table}")).await;
    denied(
        &role,
        &format!("INSERT INTO {table} (version, applied_at) VALUES ('9999_skip', 0)"),
    )
    .await;
    role.execute_unprepared(&format!(
        "INSERT INTO \"{}\".invoices (id, total) VALUES (1, 1)",
        acme.schema_name
    ))
    .await
    .expect("the role writes the component's own tables");
    role.close().await.expect("close");
    server.stop().await;
}

/// CheckDrift of one tenant.
pub async fn drift_of(server: &TestServer, tenant: &proto::Tenant) -> proto::TenantDrift {
    server
        .migrations()
        .check_drift(proto::CheckDriftRequest {
            scope: Some(proto::check_drift_request::Scope::Tenant(
                tenant.name.clone(),
            )),
            drifted_only: false,
        })
        .await
        .unwrap_or_else(|s| panic!("CheckDrift of {}: {s:?}", tenant.slug))
        .into_inner()
        .tenants
        .pop()
        .expect("the tenant's check")
}

on_both!(a_rollout_told_to_skip_drifted_tenants_leaves_them_out);

async fn a_rollout_told_to_skip_drifted_tenants_leaves_them_out(server: &TestServer) {
    register(server, "billing", &BILLING[..1]).await;
    plan_with(server, "suite", &["billing"]).await;
    let acme = provisioned_on(server, "acme", "suite").await;
    let globex = provisioned_on(server, "globex", "suite").await;
    let conn = server.tenant_conn(&globex).await;
    conn.execute_unprepared("CREATE INDEX invoices_by_hand ON invoices (total)")
        .await
        .expect("a change by hand");
    conn.close().await.expect("close");
    assert!(drift_of(server, &globex).await.drifted);
    assert!(!drift_of(server, &acme).await.drifted);
    push(server, "billing", &BILLING).await;

    let rollout = server
        .migrations()
        .start_rollout(proto::StartRolloutRequest {
            component: "billing".into(),
            selector: Some(proto::TenantSelector {
                selector: Some(proto::tenant_selector::Selector::All(true)),
            }),
            skip_drifted: true,
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();

    assert_eq!(rollout.counts.unwrap_or_default().total, 1, "{rollout:?}");
    crate::support::eventually(
        "the rollout migrates acme",
        std::time::Duration::from_secs(10),
        async || (stored_versions(server, &acme, "billing").await.len() == 2).then_some(()),
    )
    .await;
    assert_eq!(
        stored_versions(server, &globex, "billing").await,
        [BILLING[0].0],
        "the drifted tenant is left as it is"
    );
}
