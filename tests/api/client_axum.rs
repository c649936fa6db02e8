//! The client library's tower layer in front of an axum router, as an HTTP service would use it.

use axum::{Extension, Router, body::Body, routing::get};
use http::{Request, StatusCode};
use tenant_plane_client::{
    ResolverSettings, TENANT_HEADER, TenantContext, TenantLayer, TenantResolver,
};
use tower::ServiceExt;

use crate::support::{Db, TestServer, create};

async fn whoami(Extension(tenant): Extension<TenantContext>) -> String {
    let current = TenantContext::current().map_or("-".to_owned(), |t| t.slug.to_string());
    format!("{}/{current}", tenant.slug)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_router_behind_the_layer_gets_the_tenant_and_refusals_are_grpc_statuses() {
    // Arrange
    let server = TestServer::start(Db::Sqlite).await;
    create(&server, "acme").await;
    let resolver = TenantResolver::new(server.control_plane(), ResolverSettings::default());
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(TenantLayer::new(resolver));
    let request = |tenant: Option<&str>| {
        let mut builder = Request::builder().uri("/whoami");
        if let Some(tenant) = tenant {
            builder = builder.header(TENANT_HEADER, tenant);
        }
        builder.body(Body::empty()).expect("a request")
    };

    // Act
    let admitted = app
        .clone()
        .oneshot(request(Some("acme")))
        .await
        .expect("infallible");
    let unknown = app
        .clone()
        .oneshot(request(Some("nobody")))
        .await
        .expect("infallible");
    let anonymous = app.oneshot(request(None)).await.expect("infallible");

    // Assert
    assert_eq!(admitted.status(), StatusCode::OK);
    let body = axum::body::to_bytes(admitted.into_body(), 1024)
        .await
        .expect("a body");
    assert_eq!(
        body, "acme/acme",
        "from the extensions and from the task-local"
    );
    let code =
        |r: &http::Response<Body>| tonic::Status::from_header_map(r.headers()).map(|s| s.code());
    assert_eq!(code(&unknown), Some(tonic::Code::NotFound));
    assert_eq!(code(&anonymous), Some(tonic::Code::Unauthenticated));
    server.stop().await;
}
