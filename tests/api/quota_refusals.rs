//! QuotaService refusals: tenants that may not use quotas, malformed requests, and a purged
//! tenant's usage and API keys, which go with its data.

use sea_orm::{ConnectionTrait, Statement};
use tenant_plane::proto::{self, CheckQuotaRequest, ConsumeQuotaRequest, ReportUsageRequest};
use tonic::Code;

use crate::on_both;
use crate::quotas::{consume, set_limits, used};
use crate::support::{TestServer, assert_bad_field, create};

/// Rows of a catalog table, by a plain count.
async fn count(server: &TestServer, table: &str) -> i64 {
    let db = server.catalog().await;
    let n = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .expect("count")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("n");
    db.close().await.expect("close");
    n
}

async fn suspended_deleted_and_unknown_tenants_are_refused(server: &TestServer) {
    create(server, "paused").await;
    let mut tenants = server.tenants();
    tenants
        .suspend_tenant(proto::SuspendTenantRequest {
            name: "tenants/paused".into(),
            reason: "unpaid".into(),
            ..Default::default()
        })
        .await
        .expect("suspend");
    let mut quotas = server.quotas();
    let status = quotas
        .consume_quota(consume("paused", &[("messages_per_day", 1)]))
        .await
        .expect_err("suspended");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = quotas
        .check_quota(CheckQuotaRequest {
            tenant: "tenants/paused".into(),
            resource: "messages_per_day".into(),
            amount: 1,
        })
        .await
        .expect_err("suspended");
    assert_eq!(status.code(), Code::FailedPrecondition);
    create(server, "gone").await;
    tenants
        .delete_tenant(proto::DeleteTenantRequest {
            name: "tenants/gone".into(),
            ..Default::default()
        })
        .await
        .expect("delete");
    let status = quotas
        .consume_quota(consume("gone", &[("messages_per_day", 1)]))
        .await
        .expect_err("deleted");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = quotas
        .consume_quota(consume("nobody", &[("messages_per_day", 1)]))
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    let db = server.catalog().await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT used FROM quota_usage",
        ))
        .await
        .expect("read usage");
    assert!(rows.is_empty(), "refused calls count nothing");
    db.close().await.expect("close");
}

async fn bad_requests_are_refused_and_count_nothing(server: &TestServer) {
    create(server, "strict").await;
    let mut quotas = server.quotas();
    let cases: Vec<(ConsumeQuotaRequest, &str)> = vec![
        (consume("strict", &[]), "items"),
        (
            consume("strict", &[("messages_per_day", 0)]),
            "items[0].amount",
        ),
        (
            consume("strict", &[("messages_per_day", -3)]),
            "items[0].amount",
        ),
        (
            consume("strict", &[("users", 1), ("users", 1)]),
            "items[1].resource",
        ),
        (
            consume("strict", &[("users", 1), ("widgets", 1)]),
            "items[1].resource",
        ),
        (
            ConsumeQuotaRequest {
                tenant: "strict".into(),
                ..consume("strict", &[("users", 1)])
            },
            "tenant",
        ),
        (
            ConsumeQuotaRequest {
                tenant: "tenants/Bad Slug".into(),
                ..consume("strict", &[("users", 1)])
            },
            "tenant",
        ),
        (
            ConsumeQuotaRequest {
                request_id: "not-a-uuid".into(),
                ..consume("strict", &[("users", 1)])
            },
            "request_id",
        ),
    ];
    for (request, field) in cases {
        let status = quotas.consume_quota(request).await.expect_err(field);
        assert_bad_field(&status, field);
    }
    let status = quotas
        .check_quota(CheckQuotaRequest {
            tenant: "tenants/strict".into(),
            resource: "messages_per_day".into(),
            amount: -1,
        })
        .await
        .expect_err("negative amount");
    assert_bad_field(&status, "amount");
    let status = quotas
        .check_quota(CheckQuotaRequest {
            tenant: "tenants/strict".into(),
            resource: "widgets".into(),
            amount: 1,
        })
        .await
        .expect_err("unknown resource");
    assert_bad_field(&status, "resource");
    let status = quotas
        .report_usage(ReportUsageRequest {
            tenant: "tenants/strict".into(),
            resource: "users".into(),
            value: -1,
        })
        .await
        .expect_err("negative level");
    assert_bad_field(&status, "value");
    assert!(used(server, "strict").await.values().all(|u| *u == 0));
}

async fn purging_a_tenant_removes_its_usage_and_api_keys(server: &TestServer) {
    create(server, "leaving").await;
    let key = server
        .tenants()
        .create_api_key(proto::CreateApiKeyRequest {
            parent: "tenants/leaving".into(),
            api_key: None,
        })
        .await
        .expect("create a key")
        .into_inner()
        .secret;
    server
        .quotas()
        .consume_quota(consume("leaving", &[("messages_per_day", 2)]))
        .await
        .expect("consume");
    assert_eq!(
        (
            count(server, "quota_usage").await,
            count(server, "api_keys").await
        ),
        (1, 1)
    );
    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: "tenants/leaving".into(),
            ..Default::default()
        })
        .await
        .expect("delete");
    server
        .provisioning()
        .deprovision_tenant(proto::DeprovisionTenantRequest {
            tenant: "tenants/leaving".into(),
            confirm_slug: "leaving".into(),
            ..Default::default()
        })
        .await
        .expect("purge");
    assert_eq!(
        (
            count(server, "quota_usage").await,
            count(server, "api_keys").await
        ),
        (0, 0)
    );
    let status = server
        .tenants()
        .resolve_tenant(proto::ResolveTenantRequest {
            key: Some(proto::resolve_tenant_request::Key::ApiKey(key)),
        })
        .await
        .expect_err("the key went with the tenant");
    assert_eq!(status.code(), Code::NotFound);
}

async fn a_lowered_limit_stops_units_leased_before(server: &TestServer) {
    create(server, "lowered").await;
    set_limits(server, "lowered", &[("messages_per_day", 1_000_000)]).await;
    let mut quotas = server.quotas();
    quotas
        .consume_quota(consume("lowered", &[("messages_per_day", 1)]))
        .await
        .expect("far from the limit: a lease is taken");
    set_limits(server, "lowered", &[("messages_per_day", 1)]).await;
    let status = quotas
        .consume_quota(consume("lowered", &[("messages_per_day", 1)]))
        .await
        .expect_err("the new limit is used up");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(used(server, "lowered").await["messages_per_day"], 1);
}

on_both!(
    suspended_deleted_and_unknown_tenants_are_refused,
    bad_requests_are_refused_and_count_nothing,
    purging_a_tenant_removes_its_usage_and_api_keys,
    a_lowered_limit_stops_units_leased_before,
);
