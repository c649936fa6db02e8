//! ComponentService: components are registered idempotently, their migrations pushed as a
//! whole history or a tail and listed in order, and the compiled sample component is listed
//! beside them.

use sea_orm::{ConnectionTrait, Statement};
use tenant_plane::dataplane::TenantMigrations;
use tenant_plane::proto::{self, component_service_client::ComponentServiceClient};
use tonic::{Code, Status};

use crate::on_both;
use crate::support::{Conn, TestServer};

on_both!(
    create_component_is_idempotent_and_refuses_a_different_one_with_the_same_id,
    pushing_a_history_again_changes_nothing_and_a_longer_one_registers_only_its_tail,
    the_sample_component_is_listed_first_as_compiled_with_the_builtin_versions,
    list_components_pages_through_every_component,
    migrations_of_loads_the_registered_migrations_of_several_components_in_order,
);

pub fn components(server: &TestServer) -> ComponentServiceClient<Conn> {
    ComponentServiceClient::new(server.conn())
}

pub fn component(id: &str) -> proto::Component {
    proto::Component {
        component_id: id.to_owned(),
        description: format!("{id}'s tables"),
        owner: "team-payments".into(),
        ..Default::default()
    }
}

pub async fn create_component(server: &TestServer, id: &str) -> proto::Component {
    components(server)
        .create_component(proto::CreateComponentRequest {
            component: Some(component(id)),
        })
        .await
        .unwrap_or_else(|s| panic!("create component {id}: {s:?}"))
        .into_inner()
}

/// A migration with this version and up script.
pub fn migration(version: &str, up: &str) -> proto::ComponentMigration {
    proto::ComponentMigration {
        version: version.to_owned(),
        description: format!("migration {version}"),
        up_sql: up.to_owned(),
        down_sql: String::new(),
        ..Default::default()
    }
}

/// The first three migrations of a billing component.
pub fn billing_history() -> Vec<proto::ComponentMigration> {
    vec![
        proto::ComponentMigration {
            down_sql: "DROP TABLE invoices".into(),
            ..migration(
                "0001_create_invoices",
                "CREATE TABLE invoices (id bigint PRIMARY KEY, total numeric NOT NULL)",
            )
        },
        migration(
            "0002_invoice_number",
            "ALTER TABLE invoices ADD COLUMN number text",
        ),
        migration(
            "0003_invoice_lines",
            "CREATE TABLE invoice_lines (invoice_id bigint NOT NULL REFERENCES invoices (id), \
             amount numeric NOT NULL);\nCREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id)",
        ),
    ]
}

pub fn push_request(
    component: &str,
    migrations: Vec<proto::ComponentMigration>,
) -> proto::PushMigrationsRequest {
    proto::PushMigrationsRequest {
        component: format!("components/{component}"),
        migrations,
        ..Default::default()
    }
}

pub async fn push(
    server: &TestServer,
    component: &str,
    migrations: Vec<proto::ComponentMigration>,
) -> Result<proto::PushMigrationsResponse, Status> {
    Ok(components(server)
        .push_migrations(push_request(component, migrations))
        .await?
        .into_inner())
}

pub async fn list_migrations(
    server: &TestServer,
    component: &str,
) -> Vec<proto::ComponentMigration> {
    components(server)
        .list_component_migrations(proto::ListComponentMigrationsRequest {
            parent: format!("components/{component}"),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("list the migrations of {component}: {s:?}"))
        .into_inner()
        .migrations
}

/// Every registered migration as (component, version, position, checksum), and every
/// component as (id, description, owner, update_time), for "nothing changed" assertions.
pub async fn registry_rows(server: &TestServer) -> (Vec<String>, Vec<String>) {
    let db = server.catalog().await;
    let backend = db.get_database_backend();
    let migrations = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT component || '/' || version || '@' || CAST(position AS TEXT) || ':' || checksum \
             AS row FROM component_migrations ORDER BY component, position",
        ))
        .await
        .expect("read the migrations");
    let components = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id || '|' || description || '|' || owner || '|' || \
             COALESCE(CAST(update_time AS TEXT), '-') AS row FROM components ORDER BY id",
        ))
        .await
        .expect("read the components");
    let text = |rows: Vec<sea_orm::QueryResult>| {
        rows.iter()
            .map(|r| r.try_get::<String>("", "row").expect("row"))
            .collect()
    };
    let rows = (text(migrations), text(components));
    db.close().await.expect("close");
    rows
}

async fn create_component_is_idempotent_and_refuses_a_different_one_with_the_same_id(
    server: &TestServer,
) {
    let created = create_component(server, "billing").await;
    assert_eq!(created.name, "components/billing");
    assert_eq!(created.version_table, "seaql_migrations_billing");
    assert!(!created.compiled);
    assert!(created.create_time.is_some());
    assert!(created.update_time.is_none(), "no migration pushed yet");
    assert_eq!(
        (created.migration_count, created.latest_version.as_str()),
        (0, "")
    );

    // Again, the same: the same answer.
    let again = create_component(server, "billing").await;
    assert_eq!(again, created);

    // Another owner under the same id: refused, and nothing changed.
    let before = registry_rows(server).await;
    let conflicting = components(server)
        .create_component(proto::CreateComponentRequest {
            component: Some(proto::Component {
                owner: "team-search".into(),
                ..component("billing")
            }),
        })
        .await
        .expect_err("a different component under an existing id");
    assert_eq!(conflicting.code(), Code::AlreadyExists, "{conflicting:?}");
    assert_eq!(registry_rows(server).await, before);

    let got = components(server)
        .get_component(proto::GetComponentRequest {
            name: "components/billing".into(),
        })
        .await
        .expect("get billing")
        .into_inner();
    assert_eq!(got, created);
    let missing = components(server)
        .get_component(proto::GetComponentRequest {
            name: "components/nobody".into(),
        })
        .await
        .expect_err("no such component");
    assert_eq!(missing.code(), Code::NotFound);
}

async fn pushing_a_history_again_changes_nothing_and_a_longer_one_registers_only_its_tail(
    server: &TestServer,
) {
    create_component(server, "billing").await;
    let history = billing_history();

    let first = push(server, "billing", history[..2].to_vec())
        .await
        .expect("push the first two");
    let versions =
        |ms: &[proto::ComponentMigration]| ms.iter().map(|m| m.version.clone()).collect::<Vec<_>>();
    assert_eq!(
        versions(&first.registered),
        ["0001_create_invoices", "0002_invoice_number"]
    );
    assert!(first.unchanged.is_empty());
    for (i, m) in first.registered.iter().enumerate() {
        assert_eq!(m.index, i as i32);
        assert_eq!(m.checksum.len(), 64, "a SHA-256 in hex: {}", m.checksum);
        assert!(m.create_time.is_some());
        assert_eq!(
            m.name,
            format!("components/billing/migrations/{}", m.version)
        );
    }
    let component = first.component.expect("the component after the push");
    assert_eq!(
        (component.migration_count, component.latest_version.as_str()),
        (2, "0002_invoice_number")
    );
    assert!(component.update_time.is_some());

    // The same history again: every migration unchanged, nothing registered.
    let before = registry_rows(server).await;
    let again = push(server, "billing", history[..2].to_vec())
        .await
        .expect("push the same again");
    assert!(again.registered.is_empty(), "{:?}", again.registered);
    assert_eq!(
        again.unchanged,
        ["0001_create_invoices", "0002_invoice_number"]
    );
    assert_eq!(registry_rows(server).await, before, "nothing written");

    // The whole, longer history, sent newest first: only its tail is registered.
    let mut longer = history.clone();
    longer.reverse();
    let tail = push(server, "billing", longer)
        .await
        .expect("push the longer history");
    assert_eq!(versions(&tail.registered), ["0003_invoice_lines"]);
    assert_eq!(tail.registered[0].index, 2);
    assert_eq!(tail.unchanged.len(), 2);

    let listed = list_migrations(server, "billing").await;
    assert_eq!(
        versions(&listed),
        [
            "0001_create_invoices",
            "0002_invoice_number",
            "0003_invoice_lines"
        ]
    );
    assert_eq!(listed[0].up_sql, history[0].up_sql);
    assert_eq!(listed[0].down_sql, "DROP TABLE invoices");
    assert_eq!(listed[0].checksum, first.registered[0].checksum);

    let one = components(server)
        .get_component_migration(proto::GetComponentMigrationRequest {
            name: "components/billing/migrations/0003_invoice_lines".into(),
        })
        .await
        .expect("get one migration")
        .into_inner();
    assert_eq!(one, listed[2]);
    let missing = components(server)
        .get_component_migration(proto::GetComponentMigrationRequest {
            name: "components/billing/migrations/0004_nope".into(),
        })
        .await
        .expect_err("no such migration");
    assert_eq!(missing.code(), Code::NotFound);

    // Each push that registered something is in the audit log.
    let db = server.catalog().await;
    let pushes = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT outcome FROM audit_events \
             WHERE action = 'tenant.v1.ComponentService/PushMigrations' ORDER BY time",
        ))
        .await
        .expect("read the audit log");
    let outcomes: Vec<String> = pushes
        .iter()
        .map(|r| r.try_get::<String>("", "outcome").expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["OK", "OK", "OK"]);
    db.close().await.expect("close");
}

async fn the_sample_component_is_listed_first_as_compiled_with_the_builtin_versions(
    server: &TestServer,
) {
    create_component(server, "billing").await;
    create_component(server, "aardvark").await;
    let listed = components(server)
        .list_components(proto::ListComponentsRequest::default())
        .await
        .expect("list components")
        .into_inner();
    let ids: Vec<_> = listed
        .components
        .iter()
        .map(|c| c.component_id.as_str())
        .collect();
    assert_eq!(ids, ["sample", "aardvark", "billing"]);
    assert!(listed.next_page_token.is_empty());

    let builtin = TenantMigrations::builtin();
    let sample = &listed.components[0];
    assert!(sample.compiled);
    assert_eq!(sample.name, "components/sample");
    assert_eq!(sample.version_table, "seaql_migrations");
    assert_eq!(sample.migration_count as usize, builtin.names().len());
    assert_eq!(Some(sample.latest_version.as_str()), builtin.latest());

    let versions: Vec<String> = list_migrations(server, "sample")
        .await
        .into_iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, builtin.names());
    let first = format!("components/sample/migrations/{}", builtin.names()[0]);
    let one = components(server)
        .get_component_migration(proto::GetComponentMigrationRequest {
            name: first.clone(),
        })
        .await
        .expect("get a compiled migration")
        .into_inner();
    assert_eq!((one.name, one.index), (first, 0));
}

async fn list_components_pages_through_every_component(server: &TestServer) {
    for id in ["delta", "alpha", "charlie", "bravo"] {
        create_component(server, id).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = components(server)
            .list_components(proto::ListComponentsRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("a page")
            .into_inner();
        assert!(page.components.len() <= 2);
        seen.extend(page.components.into_iter().map(|c| c.component_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["sample", "alpha", "bravo", "charlie", "delta"]);

    let negative = components(server)
        .list_components(proto::ListComponentsRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .expect_err("a negative page size");
    assert_eq!(negative.code(), Code::InvalidArgument);
}

async fn migrations_of_loads_the_registered_migrations_of_several_components_in_order(
    server: &TestServer,
) {
    use tenant_plane::domain::ComponentId;
    use tenant_plane::store::components::migrations_of;

    create_component(server, "billing").await;
    create_component(server, "search").await;
    create_component(server, "empty").await;
    let billing = billing_history();
    push(server, "billing", billing.clone())
        .await
        .expect("push billing");
    let search = vec![
        proto::ComponentMigration {
            sqlite_up_sql: "CREATE TABLE documents (id integer)".into(),
            ..migration("0001_documents", "CREATE TABLE documents (id bigint)")
        },
        migration("0002_terms", "CREATE TABLE terms (id bigint)"),
    ];
    push(server, "search", search.clone())
        .await
        .expect("push search");
    let registered = list_migrations(server, "billing").await;

    let id = |text: &str| ComponentId::parse(text).expect("an id");
    let db = server.catalog().await;
    let loaded = migrations_of(
        &db,
        &[
            id("search"),
            id("billing"),
            id("empty"),
            id("sample"),
            id("nobody"),
        ],
    )
    .await
    .expect("load the migrations");
    db.close().await.expect("close");

    let versions = |c: &str| -> Vec<String> {
        loaded[&id(c)]
            .iter()
            .map(|m| m.version.to_string())
            .collect()
    };
    assert_eq!(
        versions("billing"),
        billing
            .iter()
            .map(|m| m.version.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(versions("search"), ["0001_documents", "0002_terms"]);
    for nothing in ["empty", "sample", "nobody"] {
        assert!(versions(nothing).is_empty(), "{nothing}");
    }
    let first = &loaded[&id("billing")][0];
    assert_eq!(first.up_sql, billing[0].up_sql);
    assert_eq!(first.down_sql, "DROP TABLE invoices");
    assert_eq!(first.checksum, registered[0].checksum);
    assert_eq!(
        loaded[&id("search")][0].sqlite_up_sql,
        "CREATE TABLE documents (id integer)"
    );
}
