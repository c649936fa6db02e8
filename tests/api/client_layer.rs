//! The client library's tower layer and cached resolver, against a real control plane.

use std::{
    convert::Infallible,
    future::{Ready, poll_fn, ready},
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use tenant_plane_client::{
    ClientClock, Quotas, ResolverSettings, TENANT_HEADER, TenantContext, TenantKey, TenantLayer,
    TenantResolver, TenantState,
};

use tenant_plane::proto;
use tonic::Code;
use tonic_types::StatusExt;
use tower::{Layer, Service};

use crate::support::{Db, TestServer, create, eventually};

/// A handler that answers with the tenant it was given, from the request's extensions and from
/// the task-local, as "slug/slug".
#[derive(Clone)]
struct WhoAmI;

impl Service<Request<()>> for WhoAmI {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let slug = |t: Option<&TenantContext>| t.map_or("-".into(), |t| t.slug.to_string());
        let from_extensions = slug(request.extensions().get::<TenantContext>());
        let current = slug(TenantContext::current().as_ref());
        ready(Ok(Response::new(format!("{from_extensions}/{current}"))))
    }
}

fn resolver(server: &TestServer) -> TenantResolver {
    TenantResolver::new(server.control_plane(), ResolverSettings::default())
}

/// Sends `request` through the layer; the handler's answer, or the refusal's gRPC code.
async fn send(resolver: &TenantResolver, request: Request<()>) -> Result<String, Code> {
    let mut service = TenantLayer::new(resolver.clone()).layer(WhoAmI);
    poll_fn(|cx| service.poll_ready(cx)).await.expect("ready");
    let response = service.call(request).await.expect("infallible");
    match tonic::Status::from_header_map(response.headers()) {
        Some(status) => Err(status.code()),
        None => Ok(response.into_body()),
    }
}

fn with_header(value: &str) -> Request<()> {
    Request::builder()
        .uri("/tenant.v1.Example/Call")
        .header(TENANT_HEADER, value)
        .body(())
        .expect("a request")
}

async fn suspend(server: &TestServer, slug: &str) {
    server
        .tenants()
        .suspend_tenant(proto::SuspendTenantRequest {
            name: format!("tenants/{slug}"),
            reason: "unpaid".into(),
            ..Default::default()
        })
        .await
        .expect("suspend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_hands_the_handler_the_tenant_named_by_id_subdomain_or_path() {
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    create(&server, "beta").await;
    create(&server, "gamma").await;
    let resolver = resolver(&server);

    let by_id = send(&resolver, with_header(&alpha.id)).await;
    let by_host = Request::builder()
        .uri("/tenant.v1.Example/Call")
        .header(http::header::HOST, "beta.app.example.com")
        .body(())
        .expect("a request");
    let by_host = send(&resolver, by_host).await;
    let by_path = Request::builder()
        .uri("/tenants/gamma/messages")
        .body(())
        .expect("a request");
    let by_path = send(&resolver, by_path).await;

    assert_eq!(by_id, Ok("alpha/alpha".to_owned()));
    assert_eq!(by_host, Ok("beta/beta".to_owned()));
    assert_eq!(by_path, Ok("gamma/gamma".to_owned()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_refuses_no_tenant_an_unknown_one_and_a_suspended_one() {
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "alpha").await;
    suspend(&server, "alpha").await;
    let resolver = resolver(&server);
    let anonymous = Request::builder()
        .uri("/tenant.v1.Example/Call")
        .body(())
        .expect("a request");

    assert_eq!(send(&resolver, anonymous).await, Err(Code::Unauthenticated));
    assert_eq!(
        send(&resolver, with_header("nobody")).await,
        Err(Code::NotFound)
    );
    assert_eq!(
        send(&resolver, with_header("not a slug!")).await,
        Err(Code::NotFound)
    );
    assert_eq!(
        send(&resolver, with_header("alpha")).await,
        Err(Code::FailedPrecondition)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_tenant_is_served_from_memory_until_invalidated() {
    // Arrange
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    let resolver = resolver(&server);
    let by_slug = TenantKey::parse("alpha").expect("a slug");
    let by_id = TenantKey::parse(&alpha.id).expect("an id");
    resolver.resolve(&by_slug).await.expect("resolve");

    // Act: the control plane changes; this service is not told.
    suspend(&server, "alpha").await;

    // Assert: both names answer from the cache, until invalidated by either.
    for key in [&by_slug, &by_id] {
        let cached = resolver.resolve(key).await.expect("cached");
        assert_eq!(cached.state, TenantState::Active, "{key}");
    }
    resolver.invalidate(&alpha.id);
    let fresh = resolver.resolve(&by_slug).await.expect("fresh");
    assert_eq!(fresh.state, TenantState::Suspended);
    assert_eq!(
        send(&resolver, with_header("alpha")).await,
        Err(Code::FailedPrecondition)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_following_changes_drops_a_changed_tenant_at_once() {
    // Arrange: a long TTL, so only the change stream can refresh the cache.
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "alpha").await;
    create(&server, "probe").await;
    let settings = ResolverSettings {
        ttl: Duration::from_secs(600),
        ..ResolverSettings::default()
    };
    let resolver = TenantResolver::new(server.control_plane(), settings);
    let follower = {
        let resolver = resolver.clone();
        tokio::spawn(async move { resolver.follow_changes().await })
    };
    // The follower's first message is a reset: wait until it is watching before caching. It
    // is once a change only its stream can report (the TTL is ten minutes) has dropped a
    // cached tenant: its first message has then arrived.
    let probe = TenantKey::parse("probe").expect("a slug");
    resolver.resolve(&probe).await.expect("resolve the probe");
    suspend(&server, "probe").await;
    eventually("the follower watches", Duration::from_secs(5), async || {
        let seen = resolver.resolve(&probe).await.expect("resolve the probe");
        (seen.state == TenantState::Suspended).then_some(())
    })
    .await;
    let alpha = TenantKey::parse("alpha").expect("a slug");
    assert_eq!(
        resolver.resolve(&alpha).await.expect("resolve").state,
        TenantState::Active
    );

    // Act: the control plane changes.
    suspend(&server, "alpha").await;

    // Assert: the cached ACTIVE goes within a second, long before the TTL.
    eventually(
        "the suspension dropped from the cache",
        Duration::from_secs(1),
        async || {
            let seen = resolver.resolve(&alpha).await.expect("resolve");
            (seen.state == TenantState::Suspended).then_some(())
        },
    )
    .await;
    follower.abort();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_expire_after_their_ttl_unknown_tenants_sooner() {
    // Arrange
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "alpha").await;
    let ttl = Duration::from_millis(300);
    let settings = ResolverSettings {
        ttl,
        negative_ttl: ttl,
        ..ResolverSettings::default()
    };
    let clock = ClientClock::manual();
    let resolver = TenantResolver::new(server.control_plane(), settings).with_clock(clock.clone());
    let alpha = TenantKey::parse("alpha").expect("a slug");
    let late = TenantKey::parse("late").expect("a slug");
    resolver.resolve(&alpha).await.expect("resolve");
    assert!(resolver.resolve(&late).await.is_err(), "not created yet");

    // Act
    suspend(&server, "alpha").await;
    create(&server, "late").await;
    let alpha_cached = resolver.resolve(&alpha).await.expect("cached");
    let late_cached = resolver.resolve(&late).await;
    // The TTL is what is under test: no signal stands in for time passing. Just short of it,
    // the answers are still the cached ones; at it, they are gone.
    clock.advance(ttl - Duration::from_millis(1));
    let alpha_almost = resolver.resolve(&alpha).await.expect("still cached");
    assert!(resolver.resolve(&late).await.is_err(), "still cached");
    clock.advance(Duration::from_millis(1));

    // Assert
    assert_eq!(alpha_cached.state, TenantState::Active);
    assert_eq!(alpha_almost.state, TenantState::Active);
    assert!(late_cached.is_err(), "the unknown answer is cached too");
    let alpha_fresh = resolver.resolve(&alpha).await.expect("fresh");
    assert_eq!(alpha_fresh.state, TenantState::Suspended);
    resolver.resolve(&late).await.expect("found once expired");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_quota_stops_at_the_limit_with_resource_exhausted() {
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "alpha").await;
    crate::quotas::set_limits(&server, "alpha", &[("messages_per_day", 2)]).await;
    let alpha = resolver(&server)
        .resolve(&TenantKey::parse("alpha").expect("a slug"))
        .await
        .expect("resolve");
    let quotas = Quotas::new(server.control_plane());

    let first = quotas.consume(&alpha, "messages_per_day", 1, None).await;
    let second = quotas.consume(&alpha, "messages_per_day", 1, None).await;
    let third = quotas.consume(&alpha, "messages_per_day", 1, None).await;

    assert_eq!(first.expect("within the limit").used, 1);
    assert_eq!(second.expect("at the limit").remaining, 0);
    let denied = third.expect_err("over the limit");
    assert_eq!(denied.code(), Code::ResourceExhausted);
    assert!(denied.get_details_quota_failure().is_some(), "{denied:?}");
    server.stop().await;
}
