//! Requests without credentials: by default one that names a tenant is refused, whether the
//! tenant exists or not; TENANT_ANONYMOUS_SOURCES lets named sources through for public pages,
//! marked `x-tenant-authenticated: none`; and such traffic spends no tenant's quota unless
//! TENANT_ANONYMOUS_QUOTA says so.

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use tenant_plane::config::{Config, TenantIdSource};

use crate::quotas::{set_limits, used};
use crate::support::{Db, TestServer, create};
use crate::{on_both, on_both_dbs};

use super::ratelimit::{at_a_new_minute, descriptor, should_rate_limit};
use super::{UNAUTHENTICATED, assert_allowed_by, assert_denied, check, check_http, http};

on_both!(a_request_naming_a_tenant_without_credentials_is_refused_by_default);

on_both_dbs!(
    anonymous_requests_name_their_tenant_only_by_the_configured_sources,
    anonymous_requests_count_against_no_quota_unless_configured,
);

async fn a_request_naming_a_tenant_without_credentials_is_refused_by_default(server: &TestServer) {
    let acme = create(server, "acme").await;
    let before = server.catalog_snapshot().await;

    let by_slug = check(server, &[("x-tenant-id", "acme")]).await;
    let by_id = check(server, &[("x-tenant-id", &acme.id)]).await;
    let by_host = check_http(server, http(&[], "/", "acme.example.com")).await;
    let by_path = check_http(server, http(&[], "/tenants/acme/orders", "localhost")).await;
    // An unknown tenant gets the same answer: nothing tells a caller which tenants exist.
    let unknown = check(server, &[("x-tenant-id", "nobody")]).await;
    let nothing = check(server, &[]).await;

    for denied in [&by_slug, &by_id, &by_host, &by_path, &unknown] {
        assert_denied(denied, UNAUTHENTICATED, 401, "CREDENTIALS_REQUIRED");
    }
    assert_denied(&nothing, UNAUTHENTICATED, 401, "TENANT_UNIDENTIFIED");
    assert_eq!(server.catalog_snapshot().await, before);
}

/// A server that lets requests without credentials name their tenant by host only.
fn public_hosts(config: &mut Config) {
    config.tenant_anonymous_sources = vec![TenantIdSource::Subdomain];
}

async fn anonymous_requests_name_their_tenant_only_by_the_configured_sources(db: Db) {
    let server = TestServer::start_with(db, public_hosts).await;
    let acme = create(&server, "acme").await;

    let by_host = check_http(&server, http(&[], "/", "acme.example.com")).await;
    let by_header = check(&server, &[("x-tenant-id", "acme")]).await;
    let by_path = check_http(&server, http(&[], "/tenants/acme/x", "localhost")).await;
    // Every source that names a tenant must be allowed, not only the one that would decide.
    let host_and_header = check_http(
        &server,
        http(&[("x-tenant-id", "globex")], "/", "acme.example.com"),
    )
    .await;
    let host_and_path =
        check_http(&server, http(&[], "/tenants/globex/x", "acme.example.com")).await;
    let unknown_host = check_http(&server, http(&[], "/", "nobody.example.com")).await;

    assert_allowed_by(&by_host, &acme, Some("none"));
    for denied in [&by_header, &by_path, &host_and_header, &host_and_path] {
        assert_denied(denied, UNAUTHENTICATED, 401, "CREDENTIALS_REQUIRED");
    }
    assert_denied(&unknown_host, UNAUTHENTICATED, 401, "TENANT_UNKNOWN");
    server.stop().await;
}

/// Rate-limit answers for one anonymous and one keyed descriptor of `tenant`.
async fn anonymous_then_keyed(server: &TestServer, tenant: &str) -> (i32, i32, bool) {
    let anonymous = should_rate_limit(
        server,
        vec![descriptor(&[
            ("tenant_id", tenant),
            ("authenticated", "none"),
        ])],
        1,
    )
    .await;
    let keyed = should_rate_limit(
        server,
        vec![descriptor(&[
            ("tenant_id", tenant),
            ("authenticated", "api-key"),
        ])],
        1,
    )
    .await;
    (
        anonymous.overall_code,
        keyed.overall_code,
        anonymous.statuses[0].current_limit.is_some(),
    )
}

async fn anonymous_requests_count_against_no_quota_unless_configured(db: Db) {
    let default = TestServer::start_with(db, public_hosts).await;
    create(&default, "acme").await;
    set_limits(&default, "acme", &[("api_calls_per_minute", 10)]).await;
    let charging = TestServer::start_with(db, |config| {
        public_hosts(config);
        config.tenant_anonymous_quota = true;
    })
    .await;
    create(&charging, "acme").await;
    set_limits(&charging, "acme", &[("api_calls_per_minute", 10)]).await;
    at_a_new_minute(&[&default, &charging]);

    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(anonymous_then_keyed(&default, "acme").await);
    }
    let charged = anonymous_then_keyed(&charging, "acme").await;

    let ok = Code::Ok as i32;
    assert_eq!(
        answers,
        [(ok, ok, false); 3],
        "anonymous: OK, without a limit"
    );
    assert_eq!(
        used(&default, "acme").await["api_calls_per_minute"],
        3,
        "only the keyed calls counted"
    );
    assert_eq!(charged, (ok, ok, true));
    assert_eq!(used(&charging, "acme").await["api_calls_per_minute"], 2);
    default.stop().await;
    charging.stop().await;
}
