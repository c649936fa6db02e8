//! A change and its audit event commit together: a change whose event cannot be written does not
//! happen, and a change that fails after its event was written leaves no success event. Failures
//! that are themselves recorded (a failed migration) keep their event, without SQL text; and a
//! rollout cancelled while it runs has its one event.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tenant_plane::proto::{self, MigrationDirection};
use tonic::Code;

use crate::audit::{all_events, assert_one_event, events_of, tagged};
use crate::migrations::migrate;
use crate::rollout_fleet::{all, finish};
use crate::support::{Db, HALF_MADE, TestServer, create, new_tenant, sample_then_half_made};
use crate::{on_both, on_both_dbs};

on_both!(
    a_change_whose_event_cannot_be_written_does_not_happen,
    a_change_that_fails_after_its_event_was_written_leaves_no_success_event,
);
on_both_dbs!(a_failed_migration_keeps_its_failure_event_without_sql_text);

/// Makes the catalog refuse inserts into `table` whose row matches `when` (SQL over `NEW`).
async fn refuse_inserts(server: &TestServer, table: &str, when: &str) {
    let db = server.catalog().await;
    let statements = match server.db {
        Db::Sqlite => vec![format!(
            "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN {when} \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )],
        Db::Postgres => vec![
            "CREATE OR REPLACE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW \
                 WHEN ({when}) EXECUTE FUNCTION refuse_row()"
            ),
        ],
    };
    for sql in statements {
        db.execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    db.close().await.expect("close");
}

async fn a_change_whose_event_cannot_be_written_does_not_happen(server: &TestServer) {
    let acme = create(server, "acme").await;
    refuse_inserts(
        server,
        "audit_events",
        "NEW.action = 'tenant.v1.TenantService/SuspendTenant' AND NEW.outcome = 'OK'",
    )
    .await;
    let before = server.catalog_snapshot().await;

    let refused = server
        .tenants()
        .suspend_tenant(tagged(
            proto::SuspendTenantRequest {
                name: acme.name.clone(),
                reason: "unpaid".into(),
                etag: String::new(),
            },
            "unrecorded-suspend",
        ))
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    assert_eq!(server.catalog_snapshot().await, before, "still ACTIVE");
    let by_id = format!("tenants/{}", acme.id);
    let event = assert_one_event(
        server,
        "unrecorded-suspend",
        "TenantService/SuspendTenant",
        &by_id,
        "INTERNAL",
    )
    .await;
    assert!(!event.message.contains("refused by the test"), "{event:?}");
}

async fn a_change_that_fails_after_its_event_was_written_leaves_no_success_event(
    server: &TestServer,
) {
    // The tenant and its event are written first; the owner after them, in the same transaction.
    refuse_inserts(server, "tenant_members", "NEW.user_id = 'saboteur'").await;

    let refused = server
        .tenants()
        .create_tenant(tagged(
            proto::CreateTenantRequest {
                tenant: Some(new_tenant("acme")),
                owner_user_id: "saboteur".into(),
                ..Default::default()
            },
            "rolled-back-create",
        ))
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    assert_eq!(server.catalog_snapshot().await, [], "no tenant");
    assert_one_event(
        server,
        "rolled-back-create",
        "TenantService/CreateTenant",
        "",
        "INTERNAL",
    )
    .await;
    assert_eq!(all_events(server).await.len(), 1, "and no success event");
}

async fn a_failed_migration_keeps_its_failure_event_without_sql_text(db: Db) {
    let fail = Arc::new(AtomicBool::new(false));
    let server =
        TestServer::start_with_migrations(db, sample_then_half_made(fail.clone()), |_| {}).await;
    let tenant = create(&server, "delta").await;
    migrate(&server, &tenant.name, "", MigrationDirection::Down)
        .await
        .expect("down one step");
    fail.store(true, Ordering::SeqCst);

    let failed = server
        .migrations()
        .migrate_tenant(tagged(
            proto::MigrateTenantRequest {
                tenant: tenant.name.clone(),
                target_version: HALF_MADE.into(),
                direction: MigrationDirection::Up as i32,
                ..Default::default()
            },
            "failed-migration",
        ))
        .await
        .unwrap_err();

    assert_eq!(failed.code(), Code::FailedPrecondition, "{failed:?}");
    let by_id = format!("tenants/{}", tenant.id);
    let event = assert_one_event(
        &server,
        "failed-migration",
        "MigrationService/MigrateTenant",
        &by_id,
        "FAILED_PRECONDITION",
    )
    .await;
    assert!(event.message.contains("migration failed"), "{event:?}");
    assert!(!event.message.contains("no_such_table"), "{event:?}");
    server.stop().await;
}

/// Locks the tenant's version table until the transaction is dropped, so a migration of the
/// tenant waits (on PostgreSQL: SQLite lets a reader that wants to write fail at once instead).
async fn hold_version_table(db: &DatabaseConnection) -> sea_orm::DatabaseTransaction {
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("LOCK TABLE seaql_migrations IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("take the lock");
    txn
}

/// PostgreSQL only: a rollout can be held running only where a migration waits for a lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_cancelled_while_it_runs_has_one_event() {
    let started = TestServer::start(Db::Postgres).await;
    let server = &started;
    let acme = create(server, "acme").await;
    migrate(server, &acme.name, "", MigrationDirection::Down)
        .await
        .expect("down one step");
    let tenant_db = server.tenant_conn(&acme).await;
    let lock = hold_version_table(&tenant_db).await;
    let start = proto::StartRolloutRequest {
        selector: all(),
        ..Default::default()
    };
    let rollout = server
        .migrations()
        .start_rollout(start)
        .await
        .expect("start")
        .into_inner();

    let cancelled = server
        .migrations()
        .cancel_rollout(tagged(
            proto::CancelRolloutRequest {
                name: rollout.name.clone(),
            },
            "cancel-rollout",
        ))
        .await
        .expect("cancel while the tenant waits")
        .into_inner();
    lock.rollback().await.expect("release the lock");
    tenant_db.close().await.expect("close");

    assert_eq!(cancelled.state(), proto::rollout::State::Cancelled);
    assert_one_event(
        server,
        "cancel-rollout",
        "MigrationService/CancelRollout",
        "",
        "OK",
    )
    .await;
    finish(server, &rollout).await;
    assert_eq!(events_of(server, "cancel-rollout").await.len(), 1);
    started.stop().await;
}
