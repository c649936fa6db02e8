//! QuotaService through the real client: exact under concurrency (also across two replicas),
//! all-or-nothing, idempotent retries, windows, gauges and refusals.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tenant_plane::proto::{
    self, CheckQuotaRequest, ConsumeQuotaRequest, GetUsageRequest, QuotaItem, ReportUsageRequest,
};
use tenant_plane::service::Job;
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both;
use crate::support::{Db, TestServer, assert_bad_field, create};

/// Sets the tenant's own limits.
pub async fn set_limits(server: &TestServer, slug: &str, limits: &[(&str, i64)]) {
    server
        .tenants()
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant {
                name: format!("tenants/{slug}"),
                limit_overrides: limits.iter().map(|(r, l)| ((*r).to_owned(), *l)).collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["limit_overrides".into()],
            }),
        })
        .await
        .expect("set limits");
}

pub fn consume(slug: &str, items: &[(&str, i64)]) -> ConsumeQuotaRequest {
    ConsumeQuotaRequest {
        tenant: format!("tenants/{slug}"),
        items: items
            .iter()
            .map(|(r, a)| QuotaItem {
                resource: (*r).to_owned(),
                amount: *a,
            })
            .collect(),
        request_id: String::new(),
    }
}

/// Every resource's used amount, as GetUsage reports it.
pub async fn used(server: &TestServer, slug: &str) -> HashMap<String, i64> {
    server
        .quotas()
        .get_usage(GetUsageRequest {
            tenant: format!("tenants/{slug}"),
        })
        .await
        .expect("get usage")
        .into_inner()
        .quotas
        .into_iter()
        .map(|q| (q.resource, q.used))
        .collect()
}

/// `clients` concurrent callers, each consuming 1 `per_client` times, spread over `servers`.
async fn hammer(servers: &[&TestServer], slug: &str, clients: usize, per_client: usize) -> i64 {
    let admitted = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = servers[c % servers.len()].quotas();
        let admitted = admitted.clone();
        let slug = slug.to_owned();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                match client
                    .consume_quota(consume(&slug, &[("messages_per_day", 1)]))
                    .await
                {
                    Ok(_) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(s) => assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    admitted.load(Ordering::Relaxed)
}

async fn concurrent_consumers_never_exceed_the_limit(server: &TestServer) {
    create(server, "busy").await;
    set_limits(server, "busy", &[("messages_per_day", 1000)]).await;
    let admitted = hammer(&[server], "busy", 32, 500).await;
    assert_eq!(admitted, 1000);
    assert_eq!(used(server, "busy").await["messages_per_day"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_catalog_admit_exactly_the_limit_and_keep_it_across_a_restart() {
    let first = TestServer::start(Db::Postgres).await;
    let second = first.replica().await;
    create(&first, "shared-load").await;
    set_limits(&first, "shared-load", &[("messages_per_day", 1000)]).await;
    let admitted = hammer(&[&first, &second], "shared-load", 32, 500).await;
    assert_eq!(admitted, 1000);
    second.stop().await;
    // A restarted replica still counts what was admitted.
    let third = first.replica().await;
    let refused = third
        .quotas()
        .consume_quota(consume("shared-load", &[("messages_per_day", 1)]))
        .await
        .expect_err("the day's quota is used up");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(used(&third, "shared-load").await["messages_per_day"], 1000);
    third.stop().await;
    first.stop().await;
}

async fn a_denial_names_the_resource_and_when_to_retry(server: &TestServer) {
    create(server, "denied").await;
    set_limits(server, "denied", &[("messages_per_day", 5), ("users", 2)]).await;
    let mut quotas = server.quotas();
    let ok = quotas
        .consume_quota(consume("denied", &[("messages_per_day", 4), ("users", 1)]))
        .await
        .expect("within limits")
        .into_inner();
    assert_eq!(
        ok.quotas
            .iter()
            .map(|q| (q.resource.as_str(), q.used, q.remaining))
            .collect::<Vec<_>>(),
        [("messages_per_day", 4, 1), ("users", 1, 1)]
    );
    let counter = &ok.quotas[0];
    assert_eq!(counter.kind, proto::QuotaKind::Counter as i32);
    assert_eq!(counter.window.as_ref().map(|w| w.seconds), Some(86_400));
    let reset = counter
        .reset_time
        .as_ref()
        .expect("a counter resets")
        .seconds;
    assert_eq!(reset % 86_400, 0, "the day ends at midnight UTC");

    // Over on messages, fine on users: all or nothing.
    let status = quotas
        .consume_quota(consume("denied", &[("users", 1), ("messages_per_day", 2)]))
        .await
        .expect_err("over the daily limit");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let failure = status.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(failure.violations.len(), 1);
    assert!(failure.violations[0].subject.starts_with("tenants/"));
    assert!(
        failure.violations[0]
            .description
            .contains("messages_per_day")
    );
    let retry = status.get_details_retry_info().expect("RetryInfo");
    let delay = retry.retry_delay.expect("a delay").as_secs() as i64;
    let now = chrono::Utc::now().timestamp();
    assert!(
        (reset - now - delay).abs() <= 2,
        "retry at the reset: {delay}s"
    );
    assert_eq!(
        used(server, "denied").await["users"],
        1,
        "nothing of a refused call counts"
    );

    // Only a gauge over: no RetryInfo, waiting does not help.
    let status = quotas
        .consume_quota(consume("denied", &[("users", 2)]))
        .await
        .expect_err("over the users limit");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.get_details_retry_info().is_none());
}

async fn a_retried_request_id_counts_once(server: &TestServer) {
    create(server, "retry").await;
    let mut quotas = server.quotas();
    let mut request = consume("retry", &[("messages_per_day", 3)]);
    request.request_id = uuid::Uuid::now_v7().to_string();
    let first = quotas
        .consume_quota(request.clone())
        .await
        .expect("first")
        .into_inner();
    let again = quotas
        .consume_quota(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(used(server, "retry").await["messages_per_day"], 3);
    request.items[0].amount = 4;
    let status = quotas
        .consume_quota(request)
        .await
        .expect_err("same id, other request");
    assert_bad_field(&status, "request_id");
    assert_eq!(used(server, "retry").await["messages_per_day"], 3);
}

async fn check_has_no_side_effect(server: &TestServer) {
    create(server, "checked").await;
    set_limits(server, "checked", &[("messages_per_day", 10)]).await;
    let mut quotas = server.quotas();
    let check = |amount| CheckQuotaRequest {
        tenant: "tenants/checked".into(),
        resource: "messages_per_day".into(),
        amount,
    };
    let answer = quotas
        .check_quota(check(10))
        .await
        .expect("check")
        .into_inner();
    assert!(answer.allowed);
    assert_eq!(
        answer
            .quota
            .as_ref()
            .map(|q| (q.limit, q.used, q.remaining)),
        Some((10, 0, 10))
    );
    assert!(
        !quotas
            .check_quota(check(11))
            .await
            .expect("check")
            .into_inner()
            .allowed
    );
    quotas
        .consume_quota(consume("checked", &[("messages_per_day", 7)]))
        .await
        .expect("consume");
    let answer = quotas
        .check_quota(check(3))
        .await
        .expect("check")
        .into_inner();
    assert!(
        answer.allowed,
        "this replica's own consumption is seen at once"
    );
    assert_eq!(answer.quota.map(|q| q.used), Some(7));
    assert!(
        !quotas
            .check_quota(check(4))
            .await
            .expect("check")
            .into_inner()
            .allowed
    );
    assert_eq!(used(server, "checked").await["messages_per_day"], 7);
}

async fn gauges_are_reported_and_limit_consumption(server: &TestServer) {
    create(server, "gauged").await;
    set_limits(server, "gauged", &[("users", 3)]).await;
    let mut quotas = server.quotas();
    let report = |value| ReportUsageRequest {
        tenant: "tenants/gauged".into(),
        resource: "users".into(),
        value,
    };
    let state = quotas
        .report_usage(report(2))
        .await
        .expect("report")
        .into_inner();
    assert_eq!(
        (state.used, state.remaining, state.reset_time),
        (2, 1, None)
    );
    quotas
        .consume_quota(consume("gauged", &[("users", 1)]))
        .await
        .expect("a third user fits");
    quotas
        .consume_quota(consume("gauged", &[("users", 1)]))
        .await
        .expect_err("a fourth does not");
    // A measured level above the limit is recorded; consumption is then refused.
    let state = quotas
        .report_usage(report(5))
        .await
        .expect("report")
        .into_inner();
    assert_eq!((state.used, state.remaining), (5, 0));
    let status = quotas
        .report_usage(ReportUsageRequest {
            resource: "messages_per_day".into(),
            ..report(1)
        })
        .await
        .expect_err("a counter is not reported");
    assert_bad_field(&status, "resource");
    assert_eq!(used(server, "gauged").await["users"], 5);
}

async fn storage_is_measured_for_real(server: &TestServer) {
    create(server, "measured").await;
    let state = server
        .quotas()
        .measure_storage(proto::MeasureStorageRequest {
            tenant: "tenants/measured".into(),
        })
        .await
        .expect("measure")
        .into_inner();
    assert_eq!(state.resource, "storage_bytes");
    assert!(
        state.used > 0,
        "a provisioned tenant's tables take space: {state:?}"
    );
    assert_eq!(used(server, "measured").await["storage_bytes"], state.used);
}

/// What the catalog itself counts, leases included.
async fn stored_used(server: &TestServer, resource: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = server.catalog().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT used FROM quota_usage WHERE resource = '{resource}'"),
        ))
        .await
        .expect("read usage");
    db.close().await.expect("close");
    row.map_or(0, |r| r.try_get::<i64>("", "used").expect("used"))
}

async fn units_counted_ahead_are_never_shown_and_go_back_when_idle(server: &TestServer) {
    create(server, "ahead").await;
    set_limits(server, "ahead", &[("messages_per_day", 1_000_000)]).await;
    let mut quotas = server.quotas();
    for n in 1..=5 {
        let state = quotas
            .consume_quota(consume("ahead", &[("messages_per_day", 1)]))
            .await
            .expect("consume")
            .into_inner();
        assert_eq!(state.quotas[0].used, n, "callers see what was handed out");
    }
    assert_eq!(used(server, "ahead").await["messages_per_day"], 5);
    let counted = stored_used(server, "messages_per_day").await;
    assert!(
        counted > 5,
        "the first consumption counted a lease ahead: {counted}"
    );
    // Unused for a while (a second, by the server's clock), the lease goes back.
    server
        .advance_and_pass(chrono::TimeDelta::seconds(1), Job::QuotaLeases)
        .await;
    assert_eq!(
        stored_used(server, "messages_per_day").await,
        5,
        "the idle lease was given back"
    );
    assert_eq!(used(server, "ahead").await["messages_per_day"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_gives_its_leases_back() {
    let server = TestServer::start(Db::Postgres).await;
    let other = server.replica().await;
    create(&server, "handover").await;
    set_limits(&server, "handover", &[("messages_per_day", 1_000_000)]).await;
    other
        .quotas()
        .consume_quota(consume("handover", &[("messages_per_day", 2)]))
        .await
        .expect("consume");
    assert!(
        stored_used(&server, "messages_per_day").await > 2,
        "a lease was taken"
    );
    other.stop().await;
    assert_eq!(stored_used(&server, "messages_per_day").await, 2);
    server.stop().await;
}

on_both!(
    units_counted_ahead_are_never_shown_and_go_back_when_idle,
    concurrent_consumers_never_exceed_the_limit,
    a_denial_names_the_resource_and_when_to_retry,
    a_retried_request_id_counts_once,
    check_has_no_side_effect,
    gauges_are_reported_and_limit_consumption,
    storage_is_measured_for_real,
);
