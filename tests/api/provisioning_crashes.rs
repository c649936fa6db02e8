//! A server killed in the middle of a tenant's first provisioning, which is one transaction,
//! leaves nothing of it behind, never a half-made tenant, and provisioning it again makes it
//! whole.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tenant_plane::proto::{self, tenant::State};

use crate::provisioning::status_of;
use crate::rollout_crashes::Process;
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, create, eventually};

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .and_then(|row| row.try_get::<i64>("", "n").ok())
        .unwrap_or_else(|| panic!("{sql}: no count"))
}

/// Waits until `sql`'s count is `n`; fails, naming `what`, if it never is within ten seconds.
async fn until(what: &str, db: &DatabaseConnection, sql: &str, n: i64) {
    eventually(what, Duration::from_secs(10), async || {
        (count(db, sql).await == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_provisioning_leaves_nothing_half_made() {
    let setup = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    // Roles outlive a test's database: a slug of this run's own finds this run's role alone.
    let unique = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let tenant = create(&setup, &format!("killed-{unique}")).await;
    let catalog = setup.catalog_url.clone();
    setup.stop().await;
    let admin = sea_orm::Database::connect(catalog.as_str())
        .await
        .expect("catalog");

    // Hold the tenant's row, so that the provisioning stops inside its transaction, after the
    // tenant's schema, tables and role, at the catalog's record of them.
    let holder = admin.begin().await.expect("begin");
    holder
        .execute_unprepared(&format!(
            "SELECT 1 FROM tenants WHERE id = '{}' FOR UPDATE",
            tenant.id
        ))
        .await
        .expect("lock the tenant's row");
    let server = Process::start(&catalog).await;
    let mut client = server.provisioning();
    let name = tenant.name.clone();
    let call = tokio::spawn(async move {
        client
            .provision_tenant(proto::ProvisionTenantRequest {
                tenant: name,
                ..Default::default()
            })
            .await
    });
    // The provisioning's record of the tenant, waiting for the row.
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND datname = current_database() \
                     AND query LIKE '%UPDATE \"tenants\"%'";
    until(
        "the provisioning waits for the tenant's row",
        &admin,
        waiting,
        1,
    )
    .await;
    drop(server); // SIGKILL, mid-provisioning
    assert!(call.await.expect("the call's task").is_err());
    holder.rollback().await.expect("let the row go");
    // PostgreSQL goes on with the statement, whose client is gone, once the row is free; the
    // transaction's commit never comes, and its session ends with it rolled back.
    let running = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE state = 'active' AND datname = current_database() \
                     AND query LIKE '%UPDATE \"tenants\"%' \
                     AND query NOT LIKE '%pg_stat_activity%'";
    until("the killed server's session ends", &admin, running, 0).await;

    let schema = format!(
        "SELECT count(*) AS n FROM pg_namespace WHERE nspname = '{}'",
        tenant.schema_name
    );
    let role = format!(
        "SELECT count(*) AS n FROM pg_roles WHERE rolname LIKE 'tenant\\_killed\\_{unique}\\_%'"
    );
    let recorded = format!(
        "SELECT count(*) AS n FROM tenants \
         WHERE id = '{}' AND provision_time IS NOT NULL AND state = 'ACTIVE'",
        tenant.id
    );
    let made = (
        count(&admin, &schema).await,
        count(&admin, &role).await,
        count(&admin, &recorded).await,
    );
    // Schema, role and record go together: here, none of them.
    assert_eq!(
        made,
        (0, 0, 0),
        "nothing of the killed provisioning is left"
    );
    let versions = format!(
        "SELECT count(*) AS n FROM \"{}\".seaql_migrations",
        tenant.schema_name
    );

    let restarted =
        TestServer::start_with(Db::Postgres, |c| c.database_url = Some(catalog.clone())).await;
    let again = restarted
        .provisioning()
        .provision_tenant(proto::ProvisionTenantRequest {
            tenant: tenant.name.clone(),
            ..Default::default()
        })
        .await
        .expect("provision again")
        .into_inner();
    assert!(again.changed, "the killed server had provisioned nothing");
    assert_eq!(again.tenant.map(|t| t.state()), Some(State::Active));
    assert_eq!(status_of(&restarted, &tenant.name).await.last_error, "");
    assert_eq!(
        count(&admin, &versions).await,
        SAMPLE_MIGRATIONS.len() as i64
    );
    assert_eq!(
        (count(&admin, &schema).await, count(&admin, &role).await),
        (1, 1)
    );
    admin.close().await.expect("close");
    restarted.stop().await;
}
