//! Migrations that only change the schema go to PostgreSQL as one batch, the others statement by
//! statement, in their order: a data migration between two batched ones sees the table the first
//! made, a statement that ends in a comment still ends, and a batch that fails leaves nothing.

use std::sync::Arc;

use migration::sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};
use sea_orm::{ConnectionTrait, DbErr};
use tenant_plane::dataplane::TenantMigrations;
use tenant_plane::proto::tenant::State;
use tonic::Code;

use crate::provisioning::{provision, status_of};
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, column_of, create};

/// A migration that sends `statements` through the connection, one at a time.
struct Raw {
    name: &'static str,
    statements: &'static [&'static str],
}

impl MigrationName for Raw {
    fn name(&self) -> &str {
        self.name
    }
}

#[migration::sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Raw {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for statement in self.statements {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        Ok(())
    }
}

/// The sample migrations, then `extra`.
fn sample_then(extra: &'static [Raw]) -> TenantMigrations {
    TenantMigrations::new(Arc::new(move || {
        let mut migrations = migration::tenant::migrations();
        for raw in extra {
            migrations.push(Box::new(Raw {
                name: raw.name,
                statements: raw.statements,
            }) as Box<dyn MigrationTrait>);
        }
        migrations
    }))
}

const MIXED: &[Raw] = &[
    Raw {
        name: "m20991231_000001_notes",
        statements: &[
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL) -- ends in a comment",
            "COMMENT ON TABLE notes IS 'one batch with the sample schema'",
        ],
    },
    Raw {
        // A data change: sent on its own, after the batch before it.
        name: "m20991231_000002_first_note",
        statements: &["INSERT INTO notes (id, body) VALUES (1, 'hello')"],
    },
    Raw {
        name: "m20991231_000003_notes_index",
        statements: &["CREATE INDEX notes_body_idx ON notes (body)"],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_and_single_migrations_run_in_their_order() {
    let server = TestServer::start_with_migrations(Db::Postgres, sample_then(MIXED), |_| {}).await;

    let tenant = create(&server, "mixed").await;

    assert_eq!(tenant.state(), State::Active);
    assert_eq!(tenant.migration_version, MIXED[2].name);
    let mut expected: Vec<String> = SAMPLE_MIGRATIONS.iter().map(|v| v.to_string()).collect();
    expected.extend(MIXED.iter().map(|raw| raw.name.to_owned()));
    assert_eq!(server.tenant_versions(&tenant).await, expected);
    let catalog = server.catalog().await;
    let notes = column_of(
        &catalog,
        "SELECT body AS name FROM \"tenant_mixed\".notes ORDER BY id",
    )
    .await;
    let indexes = column_of(
        &catalog,
        "SELECT CAST(indexname AS TEXT) AS name FROM pg_indexes \
         WHERE schemaname = 'tenant_mixed' AND tablename = 'notes' ORDER BY 1",
    )
    .await;
    let comment = column_of(
        &catalog,
        "SELECT obj_description('\"tenant_mixed\".notes'::regclass, 'pg_class') AS name",
    )
    .await;
    catalog.close().await.expect("close");
    assert_eq!(notes, ["hello"]);
    assert_eq!(indexes, ["notes_body_idx", "notes_pkey"]);
    assert_eq!(comment, ["one batch with the sample schema"]);
}

const BROKEN: &[Raw] = &[Raw {
    name: "m20991231_000001_broken",
    statements: &[
        "CREATE TABLE made_first (id INTEGER)",
        "CREATE TABLE broken (id INTEGER REFERENCES no_such_parent (id))",
    ],
}];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_leaves_nothing_behind() {
    let server = TestServer::start_with_migrations(Db::Postgres, sample_then(BROKEN), |c| {
        c.tenant_auto_provision = false
    })
    .await;
    let created = create(&server, "broken").await;

    let failed = provision(&server, &created.name, false, "")
        .await
        .unwrap_err();

    assert_eq!(failed.code(), Code::FailedPrecondition, "{failed:?}");
    assert!(failed.message().contains("no_such_parent"), "{failed:?}");
    assert!(!server.storage_exists(&created).await, "schema left behind");
    let catalog = server.catalog().await;
    let left = column_of(
        &catalog,
        "SELECT CAST(table_schema AS TEXT) AS name FROM information_schema.tables \
         WHERE table_name IN ('users', 'made_first')",
    )
    .await;
    catalog.close().await.expect("close");
    assert!(left.is_empty(), "tables left in {left:?}");
    let status = status_of(&server, &created.name).await;
    assert!(status.last_error.contains("no_such_parent"), "{status:?}");
    assert!(!status.storage_provisioned);
    assert_eq!(server.catalog_snapshot().await[0].2, "FAILED");
}
