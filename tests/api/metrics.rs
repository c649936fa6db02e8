//! The Prometheus endpoint, scraped over real HTTP: RPCs by method and code with their latency,
//! pools, quota decisions, rollout progress and tenants by state.
//!
//! RPC and quota counters are process-wide, and `cargo test` runs every test in one process:
//! they are checked as "at least", the catalog's gauges exactly.

use std::collections::HashMap;
use std::net::SocketAddr;

use tenant_plane::config::Listen;
use tenant_plane::proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::quotas::{consume, set_limits};
use crate::rollout_fleet::{all, finish, fleet, start};
use crate::support::{Db, TestServer};

/// An HTTP/1.1 GET of `path`: the status line, the headers and the body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers, then a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

/// Every sample of an exposition, by its series as written (`name{labels}`).
pub(crate) fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[track_caller]
fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rpcs_quota_decisions_rollouts_pools_and_tenants() {
    // Arrange: one tenant, a step behind the latest migration.
    let (server, tenants) = fleet(Db::Sqlite, 1).await;
    let addr = server
        .metrics_addr
        .expect("the metrics endpoint is on in tests");
    let slug = &tenants[0].slug;

    // Act: a failing RPC, an admitted and a refused consumption, a rollout.
    let missing = server
        .tenants()
        .get_tenant(proto::GetTenantRequest {
            name: "tenants/nobody-here".into(),
        })
        .await
        .expect_err("no such tenant");
    assert_eq!(missing.code(), Code::NotFound);
    set_limits(&server, slug, &[("messages_per_day", 3)]).await;
    let mut quotas = server.quotas();
    quotas
        .consume_quota(consume(slug, &[("messages_per_day", 1)]))
        .await
        .expect("within the limit");
    let refused = quotas
        .consume_quota(consume(slug, &[("messages_per_day", 5)]))
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let rollout = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            ..Default::default()
        },
    )
    .await;
    finish(&server, &rollout).await;
    let (status, headers, body) = get(addr, "/metrics").await;

    // Assert
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: application/openmetrics-text"),
        "{headers}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
    let s = samples(&body);
    let tenant_service = r#"grpc_service="tenant.v1.TenantService""#;
    for (series, at_least) in [
        (
            format!(r#"grpc_server_handled_total{{{tenant_service},grpc_method="CreateTenant",grpc_code="OK"}}"#),
            1.0,
        ),
        (
            format!(r#"grpc_server_handled_total{{{tenant_service},grpc_method="GetTenant",grpc_code="NOT_FOUND"}}"#),
            1.0,
        ),
        (
            r#"grpc_server_handled_total{grpc_service="tenant.v1.QuotaService",grpc_method="ConsumeQuota",grpc_code="RESOURCE_EXHAUSTED"}"#.to_owned(),
            1.0,
        ),
        (
            format!(r#"grpc_server_handling_seconds_count{{{tenant_service},grpc_method="CreateTenant"}}"#),
            1.0,
        ),
        (
            format!(r#"grpc_server_handling_seconds_bucket{{le="+Inf",{tenant_service},grpc_method="CreateTenant"}}"#),
            1.0,
        ),
        (
            r#"tenant_plane_quota_decisions_total{operation="consume",resource="messages_per_day",decision="admitted"}"#.to_owned(),
            1.0,
        ),
        (
            r#"tenant_plane_quota_decisions_total{operation="consume",resource="messages_per_day",decision="denied"}"#.to_owned(),
            1.0,
        ),
        (
            r#"tenant_plane_rollout_targets_finished_total{outcome="migrated"}"#.to_owned(),
            1.0,
        ),
    ] {
        assert!(value(&s, &series) >= at_least, "{series}");
    }
    assert!(
        s.keys()
            .any(|k| k.starts_with("grpc_server_handling_seconds_bucket{")
                && k.contains(r#"le="0.005""#)),
        "latency buckets down to milliseconds"
    );
    assert_eq!(value(&s, r#"tenant_plane_tenants{state="ACTIVE"}"#), 1.0);
    assert_eq!(value(&s, r#"tenant_plane_tenants{state="SUSPENDED"}"#), 0.0);
    assert_eq!(
        value(
            &s,
            r#"tenant_plane_db_pool_max_connections{pool="catalog"}"#
        ),
        10.0,
        "the default pool size"
    );
    let catalog_open = value(
        &s,
        r#"tenant_plane_db_pool_connections{pool="catalog",state="idle"}"#,
    ) + value(
        &s,
        r#"tenant_plane_db_pool_connections{pool="catalog",state="in_use"}"#,
    );
    assert!(
        catalog_open >= 1.0,
        "the catalog pool has a connection open"
    );
    assert!(
        s.contains_key(r#"tenant_plane_db_pool_connections{pool="tenant_databases",state="idle"}"#)
    );
    assert_eq!(value(&s, "tenant_plane_rollouts_active"), 0.0);
    assert!(
        !s.keys()
            .any(|k| k.starts_with("tenant_plane_rollout_targets{")),
        "a finished rollout leaves the progress gauges"
    );
    assert!(
        !body.contains(&tenants[0].name),
        "no series is labelled by tenant"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_metrics_port_answers_only_metrics_and_can_be_turned_off() {
    let server = TestServer::start(Db::Sqlite).await;
    let addr = server.metrics_addr.expect("on in tests");
    let (status, _, _) = get(addr, "/").await;
    assert!(status.contains(" 404 "), "{status}");
    server.stop().await;

    let off =
        TestServer::start_with(Db::Sqlite, |config| config.metrics_listen = Listen::Off).await;
    assert_eq!(off.metrics_addr, None);
    off.stop().await;
}
