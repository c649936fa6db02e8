//! How a request names its tenant without an API key (x-tenant-id, path, host, raw headers),
//! and what a named tenant's state does to it, on servers that allow such requests
//! (TENANT_ANONYMOUS_SOURCES); by default they are refused (see `anonymous`).

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use tenant_plane::proto;

use crate::support::{TestServer, create};

use super::{
    PERMISSION_DENIED, UNAUTHENTICATED, allowed, api_key, assert_allowed_as, assert_allowed_by,
    assert_denied, check, check_http, http, on_open_servers,
};

on_open_servers!(
    a_tenant_id_header_with_an_id_or_a_slug_lets_the_request_pass,
    a_tenant_host_or_path_lets_the_request_pass,
    an_application_bearer_token_is_not_checked_and_not_removed,
    requests_naming_no_known_tenant_without_credentials_are_unauthenticated,
    suspended_and_deleted_tenants_are_forbidden,
    raw_headers_alone_are_enough,
);

async fn a_tenant_id_header_with_an_id_or_a_slug_lets_the_request_pass(server: &TestServer) {
    let acme = create(server, "acme").await;

    let by_id = check(server, &[("x-tenant-id", &acme.id)]).await;
    let by_slug = check(server, &[("x-tenant-id", "acme")]).await;

    assert_allowed_as(&by_id, &acme);
    assert_allowed_as(&by_slug, &acme);
    assert!(
        allowed(&by_slug).headers_to_remove.is_empty(),
        "no secret was sent"
    );
}

async fn a_tenant_host_or_path_lets_the_request_pass(server: &TestServer) {
    let acme = create(server, "acme").await;

    let by_host = check_http(server, http(&[], "/orders", "Acme.example.com:443")).await;
    let by_path = check_http(
        server,
        http(&[], "/tenants/acme/orders?page=2", "localhost"),
    )
    .await;
    let by_authority =
        check_http(server, http(&[(":authority", "acme.example.com")], "/", "")).await;
    let bare_domain = check_http(server, http(&[], "/orders", "example.com")).await;

    assert_allowed_as(&by_host, &acme);
    assert_allowed_as(&by_path, &acme);
    assert_allowed_as(&by_authority, &acme);
    assert_denied(&bare_domain, UNAUTHENTICATED, 401, "TENANT_UNIDENTIFIED");
}

async fn an_application_bearer_token_is_not_checked_and_not_removed(server: &TestServer) {
    let acme = create(server, "acme").await;

    let foreign_bearer = check(
        server,
        &[
            ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"),
            ("x-tenant-id", "acme"),
        ],
    )
    .await;

    // An application's own bearer token is not one of our keys: untouched, not checked, and
    // the tenant is only named.
    assert_allowed_by(&foreign_bearer, &acme, Some("none"));
    assert!(allowed(&foreign_bearer).headers_to_remove.is_empty());
}

async fn requests_naming_no_known_tenant_without_credentials_are_unauthenticated(
    server: &TestServer,
) {
    let acme = create(server, "acme").await;

    let nothing = check(server, &[]).await;
    let unknown = check(server, &[("x-tenant-id", "nobody")]).await;
    let unknown_id = check(
        server,
        &[("x-tenant-id", &uuid::Uuid::now_v7().to_string())],
    )
    .await;
    let malformed = check(server, &[("x-tenant-id", "'; drop table tenants;--")]).await;
    let unknown_host = check_http(server, http(&[], "/", "nobody.example.com")).await;
    // TENANT_ID_SOURCE (subdomain by default) is looked at first: a known host decides, and
    // the unknown header is overwritten with the host's tenant.
    let host_first = check_http(
        server,
        http(&[("x-tenant-id", "nobody")], "/", "acme.example.com"),
    )
    .await;
    assert_allowed_as(&host_first, &acme);

    assert_denied(&nothing, UNAUTHENTICATED, 401, "TENANT_UNIDENTIFIED");
    for denied in [&unknown, &unknown_id, &malformed, &unknown_host] {
        assert_denied(denied, UNAUTHENTICATED, 401, "TENANT_UNKNOWN");
    }
}

async fn suspended_and_deleted_tenants_are_forbidden(server: &TestServer) {
    create(server, "paused").await;
    create(server, "gone").await;
    let (paused_secret, _) = api_key(server, "tenants/paused").await;
    let mut tenants = server.tenants();
    tenants
        .suspend_tenant(proto::SuspendTenantRequest {
            name: "tenants/paused".into(),
            reason: "unpaid".into(),
            ..Default::default()
        })
        .await
        .expect("suspend");
    tenants
        .delete_tenant(proto::DeleteTenantRequest {
            name: "tenants/gone".into(),
            ..Default::default()
        })
        .await
        .expect("delete");

    let suspended = check(server, &[("x-tenant-id", "paused")]).await;
    let suspended_by_key = check(server, &[("x-api-key", &paused_secret)]).await;
    let deleted = check_http(server, http(&[], "/", "gone.example.com")).await;

    assert_denied(&suspended, PERMISSION_DENIED, 403, "TENANT_SUSPENDED");
    assert_denied(
        &suspended_by_key,
        PERMISSION_DENIED,
        403,
        "TENANT_SUSPENDED",
    );
    assert_denied(&deleted, PERMISSION_DENIED, 403, "TENANT_DELETED");
}

async fn raw_headers_alone_are_enough(server: &TestServer) {
    let acme = create(server, "acme").await;
    let (secret, _) = api_key(server, "tenants/acme").await;
    let raw = |key: &str, value: &str| HeaderValue {
        key: key.into(),
        value: String::new(),
        raw_value: value.as_bytes().to_vec(),
    };
    // encode_raw_headers: true leaves `headers` empty and fills only `header_map`.
    let raw_only = |headers| HttpRequest {
        header_map: Some(HeaderMap { headers }),
        ..http(&[], "/", "localhost")
    };

    let by_key = check_http(server, raw_only(vec![raw("x-api-key", &secret)])).await;
    let by_id = check_http(server, raw_only(vec![raw("x-tenant-id", &acme.id)])).await;
    let doubled = check_http(
        server,
        raw_only(vec![raw("x-tenant-id", "acme"), raw("x-tenant-id", "acme")]),
    )
    .await;

    assert_allowed_as(&by_key, &acme);
    assert_eq!(allowed(&by_key).headers_to_remove, ["x-api-key"]);
    assert_allowed_as(&by_id, &acme);
    // Two values are "acme,acme", as Envoy's joined map would say: no one tenant.
    assert_denied(&doubled, UNAUTHENTICATED, 401, "TENANT_UNKNOWN");
}
