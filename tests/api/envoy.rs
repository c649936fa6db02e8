//! The Envoy adapters through Envoy's own generated clients, as a sidecar calls them: ext_authz
//! Check (who is the tenant, may the request pass, which headers go upstream) and the
//! rate-limit service (descriptors against the tenants' quotas).

mod anonymous;
mod naming;
mod paths;
mod ratelimit;
mod real;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{self, HttpRequest};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, OkHttpResponse,
};
use tenant_plane::proto;

use tenant_plane::config::TenantIdSource;

use crate::on_both;
use crate::support::{Db, TestServer, create};

on_both!(
    an_api_key_in_either_header_lets_the_request_pass_and_goes_no_further,
    injected_headers_overwrite_what_the_client_sent,
    wrong_and_revoked_api_keys_are_forbidden,
    an_api_key_of_another_tenant_than_the_request_names_is_forbidden,
);

/// A server on `db` that lets requests without credentials name their tenant by any source
/// (TENANT_ANONYMOUS_SOURCES=subdomain,header,path), as a site of public pages might.
async fn open_server(db: Db) -> TestServer {
    TestServer::start_with(db, |config| {
        config.tenant_anonymous_sources = vec![
            TenantIdSource::Subdomain,
            TenantIdSource::Header,
            TenantIdSource::Path,
        ];
    })
    .await
}

/// `on_both!` on [`open_server`]s.
macro_rules! on_open_servers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::support::Db;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let server = $crate::envoy::open_server(Db::Sqlite).await;
                    super::$name(&server).await;
                    server.stop().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let server = $crate::envoy::open_server(Db::Postgres).await;
                    super::$name(&server).await;
                    server.stop().await;
                }
            }
        )*
    };
}
use on_open_servers;

/// An HTTP request as Envoy describes it, with these headers, path and host.
fn http(headers: &[(&str, &str)], path: &str, host: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: path.into(),
        host: host.into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

async fn check_http(server: &TestServer, http: HttpRequest) -> CheckResponse {
    server
        .authz()
        .check(CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("a Check answer, allow or deny")
        .into_inner()
}

async fn check(server: &TestServer, headers: &[(&str, &str)]) -> CheckResponse {
    check_http(server, http(headers, "/", "localhost:10000")).await
}

/// The OK response of an allowed check.
#[track_caller]
fn allowed(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(
        response.status.as_ref().map(|s| s.code),
        Some(0),
        "{response:?}"
    );
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("expected an OK response, got {other:?}"),
    }
}

/// The values set for `key` on the upstream request, with their append actions.
fn set_headers<'a>(ok: &'a OkHttpResponse, key: &str) -> Vec<(&'a str, i32)> {
    ok.headers
        .iter()
        .filter_map(|h| h.header.as_ref().map(|v| (v, h.append_action)))
        .filter(|(v, _)| v.key.eq_ignore_ascii_case(key))
        .map(|(v, action)| (v.value.as_str(), action))
        .collect()
}

/// Asserts the check allowed `tenant`, each tenant header set once, overwriting.
#[track_caller]
fn assert_allowed_as(response: &CheckResponse, tenant: &proto::Tenant) {
    assert_allowed_by(response, tenant, None);
}

/// As [`assert_allowed_as`], and `x-tenant-authenticated` is `authenticated` when given.
#[track_caller]
fn assert_allowed_by(
    response: &CheckResponse,
    tenant: &proto::Tenant,
    authenticated: Option<&str>,
) {
    let ok = allowed(response);
    let schema = if tenant.schema_name.is_empty() {
        &tenant.database_name
    } else {
        &tenant.schema_name
    };
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
    assert_eq!(
        set_headers(ok, "x-tenant-id"),
        [(tenant.id.as_str(), overwrite)]
    );
    assert_eq!(
        set_headers(ok, "x-tenant-slug"),
        [(tenant.slug.as_str(), overwrite)]
    );
    assert_eq!(
        set_headers(ok, "x-tenant-schema"),
        [(schema.as_str(), overwrite)]
    );
    let how = set_headers(ok, "x-tenant-authenticated");
    assert_eq!(how.len(), 1, "{how:?}");
    assert_eq!(how[0].1, overwrite);
    if let Some(authenticated) = authenticated {
        assert_eq!(how[0].0, authenticated);
    }
}

/// Asserts a denial with this google.rpc code, HTTP status and body code.
#[track_caller]
fn assert_denied(response: &CheckResponse, rpc_code: i32, http_status: i32, code: &str) {
    assert_eq!(
        response.status.as_ref().map(|s| s.code),
        Some(rpc_code),
        "{response:?}"
    );
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("expected a denied response, got {response:?}");
    };
    assert_eq!(denied.status.as_ref().map(|s| s.code), Some(http_status));
    let body: serde_json::Value = serde_json::from_str(&denied.body).expect("a JSON body");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let content_type = denied.headers.iter().filter_map(|h| h.header.as_ref());
    assert!(
        content_type
            .into_iter()
            .any(|h| h.key == "content-type" && h.value == "application/json"),
        "{denied:?}"
    );
}

const UNAUTHENTICATED: i32 = 16;
const PERMISSION_DENIED: i32 = 7;

/// A new API key's secret for the tenant named `parent`, and the key's name.
async fn api_key(server: &TestServer, parent: &str) -> (String, String) {
    let created = server
        .tenants()
        .create_api_key(proto::CreateApiKeyRequest {
            parent: parent.to_owned(),
            api_key: Some(proto::ApiKey::default()),
        })
        .await
        .expect("create an API key")
        .into_inner();
    (created.secret, created.api_key.expect("the key").name)
}

async fn an_api_key_in_either_header_lets_the_request_pass_and_goes_no_further(
    server: &TestServer,
) {
    let acme = create(server, "acme").await;
    let (secret, _) = api_key(server, "tenants/acme").await;

    let by_header = check(server, &[("x-api-key", &secret)]).await;
    let bearer = format!("Bearer {secret}");
    let by_bearer = check(server, &[("authorization", &bearer)]).await;

    assert_allowed_by(&by_header, &acme, Some("api-key"));
    assert_eq!(allowed(&by_header).headers_to_remove, ["x-api-key"]);
    assert_allowed_by(&by_bearer, &acme, Some("token"));
    assert_eq!(allowed(&by_bearer).headers_to_remove, ["authorization"]);
}

async fn injected_headers_overwrite_what_the_client_sent(server: &TestServer) {
    let acme = create(server, "acme").await;
    let (secret, _) = api_key(server, "tenants/acme").await;

    let smuggled = check(
        server,
        &[
            ("x-api-key", &secret),
            ("x-tenant-id", "evil"),
            ("x-tenant-slug", "evil"),
            ("x-tenant-schema", "evil"),
            ("x-tenant-authenticated", "none"),
        ],
    )
    .await;

    // Exactly one x-tenant-id, acme's, replacing the client's "evil" rather than joining it.
    assert_allowed_by(&smuggled, &acme, Some("api-key"));
    let ok = allowed(&smuggled);
    assert_eq!(ok.headers.len(), 4, "{ok:?}");
    assert!(ok.headers.iter().all(|h| !h.keep_empty_value));
}

async fn wrong_and_revoked_api_keys_are_forbidden(server: &TestServer) {
    create(server, "acme").await;
    let (secret, name) = api_key(server, "tenants/acme").await;
    server
        .tenants()
        .revoke_api_key(proto::RevokeApiKeyRequest { name })
        .await
        .expect("revoke");

    let wrong = check(
        server,
        &[("x-api-key", "tpk_not-a-key"), ("x-tenant-id", "acme")],
    )
    .await;
    let bearer = format!("Bearer {secret}");
    let revoked = check(server, &[("authorization", &bearer)]).await;

    assert_denied(&wrong, PERMISSION_DENIED, 403, "API_KEY_INVALID");
    assert_denied(&revoked, PERMISSION_DENIED, 403, "API_KEY_INVALID");
}

async fn an_api_key_of_another_tenant_than_the_request_names_is_forbidden(server: &TestServer) {
    let acme = create(server, "acme").await;
    let globex = create(server, "globex").await;
    let (secret, _) = api_key(server, "tenants/acme").await;
    let key = [("x-api-key", secret.as_str())];

    let by_header = check(server, &[key[0], ("x-tenant-id", &globex.id)]).await;
    let by_path = check_http(server, http(&key, "/tenants/globex/orders", "localhost")).await;
    let by_host = check_http(server, http(&key, "/", "globex.example.com")).await;
    let agreeing = check_http(
        server,
        http(
            &[key[0], ("x-tenant-id", &acme.id)],
            "/tenants/acme/x",
            "acme.example.com",
        ),
    )
    .await;
    let api_host = check_http(server, http(&key, "/", "api.example.com")).await;

    for denied in [&by_header, &by_path, &by_host] {
        assert_denied(denied, PERMISSION_DENIED, 403, "TENANT_MISMATCH");
    }
    assert_allowed_as(&agreeing, &acme);
    // "api" names no tenant, so it does not contradict the key.
    assert_allowed_as(&api_host, &acme);
}
