//! Bad input to create, get and resolve gets a clear error, names the field, and changes nothing.

use tenant_plane::proto;
use tonic::Code;

use crate::on_both;
use crate::support::{TestServer, assert_bad_field, create, new_tenant};

on_both!(
    create_tenant_refuses_hostile_and_malformed_slugs,
    create_tenant_refuses_an_unknown_plan_or_isolation_and_names_every_bad_field,
    create_tenant_refuses_output_only_fields_and_a_malformed_request_id,
    a_slug_too_long_for_a_postgres_identifier_with_the_prefix_is_refused,
    malformed_tenant_names_are_refused,
    resolve_tenant_refuses_a_missing_or_malformed_key,
);

async fn create_tenant_refuses_hostile_and_malformed_slugs(server: &TestServer) {
    create(server, "existing").await;
    let before = server.catalog_snapshot().await;
    let mut client = server.tenants();
    let long = "a".repeat(64);
    let hostile = [
        "acme'; DROP TABLE tenants; --",
        "acme\"; DROP SCHEMA public CASCADE; --",
        "acme corp",
        "Acme",
        "ünïcode",
        "1acme",
        "-acme",
        "acme-",
        "",
        long.as_str(),
        "public",
        "pg_catalog",
        "information_schema",
        "pg_toast",
        "pg-anything",
        "tenant_x",
    ];
    for slug in hostile {
        let status = client
            .create_tenant(proto::CreateTenantRequest {
                tenant: Some(new_tenant(slug)),
                ..Default::default()
            })
            .await
            .expect_err(slug);
        assert_bad_field(&status, "tenant.slug");
        assert!(
            !status.message().to_lowercase().contains("insert"),
            "no SQL in errors: {}",
            status.message()
        );
    }
    assert_eq!(server.catalog_snapshot().await, before, "nothing changed");
}

async fn create_tenant_refuses_an_unknown_plan_or_isolation_and_names_every_bad_field(
    server: &TestServer,
) {
    let mut client = server.tenants();
    let tenant = proto::Tenant {
        slug: "Bad Slug".into(),
        plan: "platinum".into(),
        isolation: 42,
        ..Default::default()
    };

    let status = client
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(tenant),
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_bad_field(&status, "tenant.slug");
    assert_bad_field(&status, "tenant.plan");
    assert_bad_field(&status, "tenant.isolation");
    let malformed_plan = proto::Tenant {
        slug: "ok".into(),
        plan: "Pro Plan".into(),
        ..Default::default()
    };
    let status = client
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(malformed_plan),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&status, "tenant.plan");
    if server.db == crate::support::Db::Sqlite {
        let schema = proto::Tenant {
            slug: "ok".into(),
            isolation: proto::Isolation::Schema as i32,
            ..Default::default()
        };
        let status = client
            .create_tenant(proto::CreateTenantRequest {
                tenant: Some(schema),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_bad_field(&status, "tenant.isolation");
    }
    let mut bad_labels = new_tenant("ok");
    bad_labels.labels.insert("Bad Key".into(), "v".into());
    let status = client
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(bad_labels),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&status, "tenant.labels[Bad Key]");
    let missing = client
        .create_tenant(proto::CreateTenantRequest::default())
        .await
        .unwrap_err();
    assert_bad_field(&missing, "tenant");
    assert!(server.catalog_snapshot().await.is_empty());
}

async fn create_tenant_refuses_output_only_fields_and_a_malformed_request_id(server: &TestServer) {
    let mut client = server.tenants();
    let tenant = proto::Tenant {
        slug: "ok".into(),
        id: "0190f7a4-7a1c-7cde-8f00-123456789abc".into(),
        state: proto::tenant::State::Active as i32,
        schema_name: "public".into(),
        ..Default::default()
    };
    let status = client
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(tenant),
            request_id: "not-a-uuid".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    for field in [
        "tenant.id",
        "tenant.state",
        "tenant.schema_name",
        "request_id",
    ] {
        assert_bad_field(&status, field);
    }
    assert!(server.catalog_snapshot().await.is_empty());
}

async fn a_slug_too_long_for_a_postgres_identifier_with_the_prefix_is_refused(server: &TestServer) {
    let mut client = server.tenants();
    // 57 characters + "tenant_" = 64 bytes: one over PostgreSQL's identifier limit.
    let slug = "a".repeat(57);
    let status = client
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant(&slug)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&status, "tenant.slug");
    assert!(status.message().contains("63"), "{}", status.message());
    let fits = "a".repeat(56);
    create(server, &fits).await;
    assert_eq!(server.catalog_snapshot().await.len(), 1);
}

async fn malformed_tenant_names_are_refused(server: &TestServer) {
    create(server, "acme").await;
    let before = server.catalog_snapshot().await;
    let mut client = server.tenants();
    for name in [
        "acme",
        "tenants/",
        "tenants/Acme",
        "tenants/acme/extra",
        "tenants/0190f7a4-zzzz",
        "projects/acme",
    ] {
        let get = client
            .get_tenant(proto::GetTenantRequest { name: name.into() })
            .await
            .unwrap_err();
        assert_bad_field(&get, "name");
        let delete = client
            .delete_tenant(proto::DeleteTenantRequest {
                name: name.into(),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_bad_field(&delete, "name");
    }
    let unknown_id = format!("tenants/{}", uuid::Uuid::now_v7());
    let status = client
        .get_tenant(proto::GetTenantRequest { name: unknown_id })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(server.catalog_snapshot().await, before);
}

async fn resolve_tenant_refuses_a_missing_or_malformed_key(server: &TestServer) {
    use proto::resolve_tenant_request::Key;
    let mut client = server.tenants();
    let none = client
        .resolve_tenant(proto::ResolveTenantRequest { key: None })
        .await
        .unwrap_err();
    assert_bad_field(&none, "key");
    let id = client
        .resolve_tenant(proto::ResolveTenantRequest {
            key: Some(Key::Id("42".into())),
        })
        .await
        .unwrap_err();
    assert_bad_field(&id, "id");
    let slug = client
        .resolve_tenant(proto::ResolveTenantRequest {
            key: Some(Key::Slug("a'b".into())),
        })
        .await
        .unwrap_err();
    assert_bad_field(&slug, "slug");
    let host = client
        .resolve_tenant(proto::ResolveTenantRequest {
            key: Some(Key::Host("'; select 1;--.example.com".into())),
        })
        .await
        .unwrap_err();
    assert_bad_field(&host, "host");
}
