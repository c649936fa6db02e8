//! A server killed in the middle of a tenant's first provisioning leaves the tenant whole or
//! untouched, never half-made, and provisioning it again finishes it.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tenant_plane::proto::{self, tenant::State};

use crate::provisioning::status_of;
use crate::rollout_crashes::Process;
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, create};

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .and_then(|row| row.try_get::<i64>("", "n").ok())
        .unwrap_or_else(|| panic!("{sql}: no count"))
}

/// Waits until `sql`'s count is `n`; false if it never is within ten seconds.
async fn until(db: &DatabaseConnection, sql: &str, n: i64) -> bool {
    for _ in 0..400 {
        if count(db, sql).await == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_provisioning_leaves_the_tenant_whole_or_untouched() {
    let setup = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    // Roles outlive a test's database: a slug of this run's own finds this run's role alone.
    let unique = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let tenant = create(&setup, &format!("killed-{unique}")).await;
    let catalog = setup.catalog_url.clone();
    setup.stop().await;
    let admin = sea_orm::Database::connect(catalog.as_str())
        .await
        .expect("catalog");

    // Hold the tenant's row, so that the provisioning stops inside, just before its end.
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
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND datname = current_database()";
    assert!(
        until(&admin, waiting, 1).await,
        "the provisioning never waited for the tenant's row"
    );
    drop(server); // SIGKILL, mid-provisioning
    assert!(call.await.expect("the call's task").is_err());
    holder.rollback().await.expect("let the row go");
    // The killed server's sessions end once PostgreSQL finds their client gone.
    let others = "SELECT count(*) AS n FROM pg_stat_activity \
                  WHERE datname = current_database() AND application_name LIKE 'tenant-plane%'";
    assert!(
        until(&admin, others, 0).await,
        "the killed server's sessions lingered"
    );

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
    assert!(
        made == (1, 1, 1) || made == (0, 0, 0),
        "schema, role and record made together or not at all: {made:?}"
    );
    let versions = format!(
        "SELECT count(*) AS n FROM \"{}\".seaql_migrations",
        tenant.schema_name
    );
    if made == (1, 1, 1) {
        assert_eq!(
            count(&admin, &versions).await,
            SAMPLE_MIGRATIONS.len() as i64
        );
    }

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
    assert_eq!(again.changed, made == (0, 0, 0), "{made:?}");
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
