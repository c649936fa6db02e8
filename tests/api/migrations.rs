//! MigrationService for single tenants on both catalogs: the known migrations, each tenant's own
//! version, and moving a tenant up and down.

use tenant_plane::proto::{self, MigrationDirection};
use tonic::Status;

use crate::on_both;
use crate::support::{SAMPLE_MIGRATIONS, SAMPLE_TABLES, TestServer, create};

on_both!(
    list_migrations_lists_the_sample_migrations_in_order,
    tenants_keep_their_own_versions_and_the_catalog_mirrors_them,
    migrate_tenant_moves_up_and_down_to_targets_and_repeats_do_nothing,
);

const USERS: &str = SAMPLE_MIGRATIONS[0];
const PROJECTS: &str = SAMPLE_MIGRATIONS[1];
const MESSAGES: &str = SAMPLE_MIGRATIONS[2];
const AUDIT_LOG: &str = SAMPLE_MIGRATIONS[3];
const SCOPED_KEYS: &str = SAMPLE_MIGRATIONS[4];

pub async fn migrate(
    server: &TestServer,
    tenant: &str,
    target_version: &str,
    direction: MigrationDirection,
) -> Result<proto::MigrateTenantResponse, Status> {
    server
        .migrations()
        .migrate_tenant(proto::MigrateTenantRequest {
            component: Default::default(),
            tenant: tenant.to_owned(),
            target_version: target_version.to_owned(),
            direction: direction.into(),
            request_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn migration_status(server: &TestServer, tenant: &str) -> proto::MigrationStatus {
    server
        .migrations()
        .get_migration_status(proto::GetMigrationStatusRequest {
            component: Default::default(),
            tenant: tenant.to_owned(),
        })
        .await
        .unwrap_or_else(|s| panic!("migration status of {tenant}: {s:?}"))
        .into_inner()
}

pub async fn catalog_version(server: &TestServer, tenant: &str) -> String {
    server
        .tenants()
        .get_tenant(proto::GetTenantRequest {
            name: tenant.to_owned(),
        })
        .await
        .unwrap_or_else(|s| panic!("get {tenant}: {s:?}"))
        .into_inner()
        .migration_version
}

fn versions(status: &proto::MigrationStatus) -> Vec<&str> {
    status.applied.iter().map(|m| m.version.as_str()).collect()
}

async fn list_migrations_lists_the_sample_migrations_in_order(server: &TestServer) {
    let listed = server
        .migrations()
        .list_migrations(proto::ListMigrationsRequest {
            component: Default::default(),
        })
        .await
        .expect("list")
        .into_inner()
        .migrations;

    let order: Vec<(&str, i32)> = listed
        .iter()
        .map(|m| (m.version.as_str(), m.index))
        .collect();
    assert_eq!(
        order,
        [
            (USERS, 0),
            (PROJECTS, 1),
            (MESSAGES, 2),
            (AUDIT_LOG, 3),
            (SCOPED_KEYS, 4)
        ]
    );
    let descriptions: Vec<&str> = listed.iter().map(|m| m.description.as_str()).collect();
    assert_eq!(
        descriptions,
        [
            "create users",
            "create projects",
            "create messages",
            "create audit log",
            "tenant scoped keys"
        ],
        "the words after the timestamp"
    );
}

async fn tenants_keep_their_own_versions_and_the_catalog_mirrors_them(server: &TestServer) {
    let alpha = create(server, "alpha").await;
    let bravo = create(server, "bravo").await;

    let down = migrate(server, &alpha.name, MESSAGES, MigrationDirection::Down)
        .await
        .expect("alpha down to messages");

    assert_eq!(down.applied, [SCOPED_KEYS, AUDIT_LOG], "the ones reverted");
    let status = down.status.expect("status");
    assert_eq!(status.current_version, MESSAGES);
    assert_eq!(status.pending, [AUDIT_LOG, SCOPED_KEYS]);

    let alpha_status = migration_status(server, "tenants/alpha").await;
    assert_eq!(alpha_status.tenant, alpha.name, "the id form");
    assert_eq!(versions(&alpha_status), [USERS, PROJECTS, MESSAGES]);
    assert_eq!(alpha_status.current_version, MESSAGES);
    assert_eq!(alpha_status.pending, [AUDIT_LOG, SCOPED_KEYS]);
    assert!(alpha_status.last_error.is_empty());
    let created = alpha.create_time.expect("create_time").seconds;
    let now = chrono::Utc::now().timestamp();
    for applied in &alpha_status.applied {
        let at = applied.apply_time.expect("apply_time").seconds;
        assert!((created - 1..=now + 1).contains(&at), "{applied:?}");
    }
    let bravo_status = migration_status(server, &bravo.name).await;
    assert_eq!(versions(&bravo_status), SAMPLE_MIGRATIONS);
    assert_eq!(bravo_status.current_version, SCOPED_KEYS);
    assert!(bravo_status.pending.is_empty());
    assert!(bravo_status.applied.iter().all(|m| m.apply_time.is_some()));

    assert_eq!(catalog_version(server, &alpha.name).await, MESSAGES);
    assert_eq!(catalog_version(server, &bravo.name).await, SCOPED_KEYS);
    assert_eq!(
        server.tenant_versions(&alpha).await,
        [USERS, PROJECTS, MESSAGES]
    );
    assert_eq!(server.tenant_versions(&bravo).await, SAMPLE_MIGRATIONS);
    let alpha_tables = server.tenant_tables(&alpha).await;
    assert!(
        !alpha_tables.iter().any(|t| t == "audit_log"),
        "{alpha_tables:?}"
    );
    assert_eq!(server.tenant_tables(&bravo).await, SAMPLE_TABLES);
}

async fn migrate_tenant_moves_up_and_down_to_targets_and_repeats_do_nothing(server: &TestServer) {
    let tenant = create(server, "gamma").await;
    let name = tenant.name.as_str();

    // (direction, target, what runs in that order, version after); each step is sent twice:
    // the repeat must run nothing.
    let steps: [(MigrationDirection, &str, &[&str], &str); 6] = [
        (
            MigrationDirection::Down,
            USERS,
            &[SCOPED_KEYS, AUDIT_LOG, MESSAGES, PROJECTS],
            USERS,
        ),
        (
            MigrationDirection::Up,
            MESSAGES,
            &[PROJECTS, MESSAGES],
            MESSAGES,
        ),
        (MigrationDirection::Up, USERS, &[], MESSAGES),
        (MigrationDirection::Down, PROJECTS, &[MESSAGES], PROJECTS),
        (
            MigrationDirection::Unspecified,
            "",
            &[MESSAGES, AUDIT_LOG, SCOPED_KEYS],
            SCOPED_KEYS,
        ),
        (MigrationDirection::Down, SCOPED_KEYS, &[], SCOPED_KEYS),
    ];
    for (direction, target, runs, version) in steps {
        let step = format!("{direction:?} to {target:?}");
        let position = SAMPLE_MIGRATIONS
            .iter()
            .position(|v| *v == version)
            .expect("a sample version");

        let first = migrate(server, name, target, direction)
            .await
            .unwrap_or_else(|s| panic!("{step}: {s:?}"));
        let repeat = migrate(server, name, target, direction)
            .await
            .unwrap_or_else(|s| panic!("{step} again: {s:?}"));

        assert_eq!(first.applied, runs, "{step}");
        assert!(first.duration.is_some(), "{step}");
        assert!(
            repeat.applied.is_empty(),
            "{step} again ran {:?}",
            repeat.applied
        );
        let status = repeat.status.expect("status");
        assert_eq!(status.current_version, version, "{step}");
        assert_eq!(versions(&status), SAMPLE_MIGRATIONS[..=position], "{step}");
        assert_eq!(status.pending, SAMPLE_MIGRATIONS[position + 1..], "{step}");
        assert_eq!(
            server.tenant_versions(&tenant).await,
            SAMPLE_MIGRATIONS[..=position],
            "{step}"
        );
        // Each sample migration but the fifth (which re-keys SHARED tables) creates one table.
        let made = position.min(3);
        let mut expected = ["users", "projects", "messages", "audit_log"][..=made].to_vec();
        expected.push("seaql_migrations");
        expected.sort();
        assert_eq!(server.tenant_tables(&tenant).await, expected, "{step}");
        assert_eq!(catalog_version(server, name).await, version, "{step}");
    }
}
