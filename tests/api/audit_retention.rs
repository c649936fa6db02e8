//! The audit log cannot be filled from outside, and does not grow forever: calls refused for
//! want of valid credentials are counted in a metric and not written as rows (refusals of
//! authenticated callers still are), and the pruning job deletes events past their retention.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tenant_plane::proto;
use tenant_plane::service::Job;
use tonic::Code;
use tonic_types::StatusExt;

use crate::metrics::{get, samples};
use crate::support::{Db, SERVICE_ACTOR, SERVICE_TOKEN, TenantServiceClient, TestServer, create};

/// Anonymous CreateTenant calls the test makes.
const ANONYMOUS: usize = 200;
/// Calls with a bearer token the server does not know.
const INVALID: usize = 20;

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("a count")
}

fn create_request(slug: &str) -> proto::CreateTenantRequest {
    proto::CreateTenantRequest {
        tenant: Some(crate::support::new_tenant(slug)),
        ..Default::default()
    }
}

fn refusals(body: &str, reason: &str) -> f64 {
    let series = format!(
        "tenant_plane_auth_refusals_total{{grpc_service=\"tenant.v1.TenantService\",\
         grpc_method=\"CreateTenant\",reason=\"{reason}\"}}"
    );
    samples(body).get(&series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_valid_credentials_are_counted_and_write_no_audit_rows() {
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "acme").await;
    let admin = server.catalog().await;
    let rows_before = count(&admin, "SELECT count(*) AS n FROM audit_events").await;
    let before = server.catalog_snapshot().await;

    let mut anonymous = TenantServiceClient::new(server.anonymous());
    for i in 0..ANONYMOUS {
        let status = anonymous
            .create_tenant(create_request(&format!("anon-{i}")))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "CREDENTIALS_MISSING");
    }
    let mut forged = TenantServiceClient::new(server.conn_as("tpa_not-a-token-of-this-server"));
    for i in 0..INVALID {
        let status = forged
            .create_tenant(create_request(&format!("forged-{i}")))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "CREDENTIALS_INVALID");
    }

    assert_eq!(
        count(&admin, "SELECT count(*) AS n FROM audit_events").await,
        rows_before,
        "refusals for want of credentials wrote audit rows"
    );
    assert_eq!(server.catalog_snapshot().await, before);
    let (_, _, body) = get(server.metrics_addr.expect("on in tests"), "/metrics").await;
    assert_eq!(refusals(&body, "CREDENTIALS_MISSING"), ANONYMOUS as f64);
    assert_eq!(refusals(&body, "CREDENTIALS_INVALID"), INVALID as f64);

    // An authenticated caller refused for its role is still recorded.
    let status = TenantServiceClient::new(server.conn_as(SERVICE_TOKEN))
        .create_tenant(create_request("by-service"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let recorded = count(
        &admin,
        &format!(
            "SELECT count(*) AS n FROM audit_events WHERE actor = '{SERVICE_ACTOR}' \
             AND action = 'tenant.v1.TenantService/CreateTenant' AND outcome = 'PERMISSION_DENIED'"
        ),
    )
    .await;
    assert_eq!(recorded, 1);
    assert_eq!(
        count(&admin, "SELECT count(*) AS n FROM audit_events").await,
        rows_before + 1
    );
    admin.close().await.expect("close");
    server.stop().await;
}

/// Writes an audit event `days` old, as the superuser.
async fn event_aged(db: &DatabaseConnection, days: i64, actor: &str) {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO audit_events (id, time, actor, action, tenant_id, request_id, outcome) \
         VALUES (gen_random_uuid(), now() - make_interval(days => $1::int), $2, \
                 'tenant.v1.TenantService/CreateTenant', NULL, 'r', 'OK')",
        [(days as i32).into(), actor.into()],
    ))
    .await
    .expect("insert an aged event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruning_job_deletes_events_past_retention_and_keeps_the_newer_ones() {
    let server = TestServer::start_with(Db::Postgres, |c| c.audit_prune_interval_secs = 0).await;
    create(&server, "acme").await;
    let admin = server.catalog().await;
    for _ in 0..3 {
        event_aged(&admin, 401, "old").await;
        event_aged(&admin, 399, "kept").await;
    }
    event_aged(&admin, 4000, "old").await;
    let recent = count(
        &admin,
        "SELECT count(*) AS n FROM audit_events WHERE time > now() - interval '1 day'",
    )
    .await;
    assert!(recent >= 1, "CreateTenant was recorded");

    // A replica with the job on (and the default retention of 400 days) prunes at start.
    let replica = server
        .replica_with(|c| c.audit_prune_interval_secs = 3600)
        .await;
    replica
        .job_pass(Job::AuditPrune, chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .await;
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'old'"
        )
        .await,
        0,
        "the first pass deleted what is past retention"
    );

    assert_eq!(
        count(
            &admin,
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'kept'"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) AS n FROM audit_events WHERE time > now() - interval '1 day'"
        )
        .await,
        recent
    );

    // Two days later by the replica's clock, the events kept so far are past retention too.
    replica
        .advance_and_pass(chrono::TimeDelta::days(2), Job::AuditPrune)
        .await;
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'kept'"
        )
        .await,
        0
    );
    admin.close().await.expect("close");
    replica.stop().await;
    server.stop().await;
}
