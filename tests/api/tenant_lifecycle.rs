//! The tenant lifecycle through TenantService: create, read, update, suspend, delete, restore,
//! resolve, and idempotent retries.

use prost_types::FieldMask;
use tenant_plane::proto::{self, tenant::State};
use tonic::Code;

use crate::on_both;
use crate::support::{TestServer, create, new_tenant};

on_both!(
    create_tenant_provisions_storage_and_returns_an_active_tenant,
    without_auto_provisioning_a_new_tenant_waits_in_provisioning,
    get_tenant_finds_a_tenant_by_id_and_by_slug,
    update_tenant_changes_only_the_masked_fields_and_bumps_the_etag,
    suspend_and_resume_keep_the_reason_and_return_to_the_previous_state,
    delete_is_soft_and_undelete_restores_the_tenant,
    resolve_tenant_finds_a_tenant_by_id_slug_and_host,
    a_retried_create_with_the_same_request_id_returns_the_first_answer,
    validate_only_checks_everything_and_writes_nothing,
    two_concurrent_creates_of_one_slug_admit_exactly_one,
);

async fn create_tenant_provisions_storage_and_returns_an_active_tenant(server: &TestServer) {
    let mut labels = std::collections::HashMap::new();
    labels.insert("tier".to_owned(), "gold".to_owned());
    let tenant = proto::Tenant {
        slug: "acme-corp".into(),
        display_name: "Acme Corporation".into(),
        labels,
        ..Default::default()
    };
    let created = server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(tenant),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();

    assert_eq!(created.name, format!("tenants/{}", created.id));
    let id = uuid::Uuid::parse_str(&created.id).expect("a UUID id");
    assert_eq!(id.get_version_num(), 7, "ids are UUIDv7");
    assert_eq!(created.slug, "acme-corp");
    assert_eq!(created.display_name, "Acme Corporation");
    assert_eq!(created.plan, "free", "the default plan");
    assert_eq!(
        created.state(),
        State::Active,
        "TENANT_AUTO_PROVISION is on by default"
    );
    assert_eq!(
        created.migration_version,
        "m20261207_100005_tenant_scoped_keys"
    );
    assert_eq!(created.labels.get("tier").map(String::as_str), Some("gold"));
    match server.db {
        crate::support::Db::Postgres => {
            assert_eq!(created.isolation(), proto::Isolation::Schema);
            assert_eq!(created.schema_name, "tenant_acme_corp");
        }
        crate::support::Db::Sqlite => {
            assert_eq!(created.isolation(), proto::Isolation::Database);
            assert_eq!(created.database_name, "tenant_acme_corp.sqlite3");
        }
    }
    assert!(!created.etag.is_empty());
    assert!(created.create_time.is_some() && created.delete_time.is_none());
    assert_eq!(server.catalog_snapshot().await.len(), 1);
}

async fn without_auto_provisioning_a_new_tenant_waits_in_provisioning(server: &TestServer) {
    let manual = TestServer::start_with(server.db, |c| c.tenant_auto_provision = false).await;

    let created = create(&manual, "later").await;

    assert_eq!(created.state(), State::Provisioning);
    assert!(created.migration_version.is_empty());
    let suspended = manual
        .tenants()
        .suspend_tenant(proto::SuspendTenantRequest {
            name: created.name.clone(),
            reason: "not paid".into(),
            etag: String::new(),
        })
        .await
        .expect("a waiting tenant can be suspended")
        .into_inner();
    let resumed = manual
        .tenants()
        .resume_tenant(proto::ResumeTenantRequest {
            name: created.name,
            etag: suspended.etag,
        })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(
        resumed.state(),
        State::Provisioning,
        "back to the state it was suspended in"
    );
    manual.stop().await;
}

async fn get_tenant_finds_a_tenant_by_id_and_by_slug(server: &TestServer) {
    let created = create(server, "globex").await;
    let mut client = server.tenants();

    let by_id = client
        .get_tenant(proto::GetTenantRequest {
            name: created.name.clone(),
        })
        .await
        .expect("by id");
    let by_slug = client
        .get_tenant(proto::GetTenantRequest {
            name: "tenants/globex".into(),
        })
        .await
        .expect("by slug");

    assert_eq!(
        by_id.into_inner(),
        created,
        "a read returns exactly what the create returned"
    );
    assert_eq!(by_slug.into_inner(), created);
    let missing = client
        .get_tenant(proto::GetTenantRequest {
            name: "tenants/initech".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

async fn update_tenant_changes_only_the_masked_fields_and_bumps_the_etag(server: &TestServer) {
    let created = create(server, "umbrella").await;
    let mut client = server.tenants();
    let mut change = proto::Tenant {
        name: created.name.clone(),
        display_name: "Umbrella Corp".into(),
        plan: "pro".into(),
        etag: created.etag.clone(),
        ..Default::default()
    };
    change.labels.insert("region".into(), "eu".into());

    let updated = client
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(change),
            update_mask: Some(FieldMask {
                paths: vec!["display_name".into(), "labels".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();

    assert_eq!(updated.display_name, "Umbrella Corp");
    assert_eq!(updated.labels.get("region").map(String::as_str), Some("eu"));
    assert_eq!(updated.plan, "free", "plan was not in the mask");
    assert_ne!(updated.etag, created.etag);
    assert_eq!(updated.create_time, created.create_time);

    let mut overrides = proto::Tenant {
        name: created.name.clone(),
        ..Default::default()
    };
    overrides
        .limit_overrides
        .insert("messages_per_day".into(), 5000);
    let with_limits = client
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(overrides),
            update_mask: Some(FieldMask {
                paths: vec!["limit_overrides".into()],
            }),
        })
        .await
        .expect("update limit overrides")
        .into_inner();
    assert_eq!(
        with_limits.limit_overrides.get("messages_per_day"),
        Some(&5000)
    );
    assert_eq!(with_limits.display_name, "Umbrella Corp");
}

async fn suspend_and_resume_keep_the_reason_and_return_to_the_previous_state(server: &TestServer) {
    let created = create(server, "hooli").await;
    let mut client = server.tenants();

    let suspended = client
        .suspend_tenant(proto::SuspendTenantRequest {
            name: created.name.clone(),
            reason: "payment overdue".into(),
            etag: created.etag.clone(),
        })
        .await
        .expect("suspend")
        .into_inner();
    assert_eq!(suspended.state(), State::Suspended);
    assert_eq!(suspended.suspend_reason, "payment overdue");
    assert!(suspended.suspend_time.is_some());

    let resumed = client
        .resume_tenant(proto::ResumeTenantRequest {
            name: created.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(
        resumed.state(),
        State::Active,
        "back to the state it was suspended in"
    );
    assert_eq!(
        resumed.suspend_reason, "payment overdue",
        "the reason is kept"
    );

    let again = client
        .resume_tenant(proto::ResumeTenantRequest {
            name: created.name.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
}

async fn delete_is_soft_and_undelete_restores_the_tenant(server: &TestServer) {
    let created = create(server, "stark").await;
    let mut client = server.tenants();

    let deleted = client
        .delete_tenant(proto::DeleteTenantRequest {
            name: created.name.clone(),
            etag: created.etag.clone(),
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.state(), State::Deleted);
    let (delete_time, purge_time) = (
        deleted.delete_time.expect("delete_time"),
        deleted.purge_time.expect("purge_time"),
    );
    assert_eq!(
        purge_time.seconds - delete_time.seconds,
        30 * 24 * 3600,
        "default retention is 30 days"
    );
    assert_eq!(server.catalog_snapshot().await.len(), 1, "the row is kept");

    let listed = client
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(
        listed.tenants.is_empty(),
        "deleted tenants are hidden without show_deleted"
    );
    let still_readable = client
        .get_tenant(proto::GetTenantRequest {
            name: created.name.clone(),
        })
        .await;
    assert_eq!(
        still_readable.expect("get deleted").into_inner().state(),
        State::Deleted
    );

    let restored = client
        .undelete_tenant(proto::UndeleteTenantRequest {
            name: created.name.clone(),
            etag: deleted.etag.clone(),
        })
        .await
        .expect("undelete")
        .into_inner();
    assert_eq!(restored.state(), State::Active);
    assert!(restored.delete_time.is_none() && restored.purge_time.is_none());
}

async fn resolve_tenant_finds_a_tenant_by_id_slug_and_host(server: &TestServer) {
    use proto::resolve_tenant_request::Key;
    let created = create(server, "wayne").await;
    let mut client = server.tenants();

    for key in [
        Key::Id(created.id.clone()),
        Key::Slug("wayne".into()),
        Key::Host("wayne.example.com".into()),
        Key::Host("WAYNE.example.com:8443".into()),
    ] {
        let resolved = client
            .resolve_tenant(proto::ResolveTenantRequest {
                key: Some(key.clone()),
            })
            .await
            .unwrap_or_else(|s| panic!("{key:?}: {s:?}"))
            .into_inner();
        assert_eq!(
            resolved.tenant.as_ref().map(|t| t.id.as_str()),
            Some(created.id.as_str())
        );
        let location = resolved.location.expect("location");
        assert_eq!(location.isolation, created.isolation);
        assert_eq!(location.schema_name, created.schema_name);
        assert_eq!(location.database_name, created.database_name);
    }

    let unknown = client
        .resolve_tenant(proto::ResolveTenantRequest {
            key: Some(Key::Host("nobody.example.com".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let api_key = client
        .resolve_tenant(proto::ResolveTenantRequest {
            key: Some(Key::ApiKey("secret".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(api_key.code(), Code::NotFound, "no tenant has this key");
}

async fn a_retried_create_with_the_same_request_id_returns_the_first_answer(server: &TestServer) {
    let mut client = server.tenants();
    let request = proto::CreateTenantRequest {
        tenant: Some(new_tenant("cyberdyne")),
        request_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };

    let first = client
        .create_tenant(request.clone())
        .await
        .expect("first")
        .into_inner();
    let retry = client
        .create_tenant(request.clone())
        .await
        .expect("retry")
        .into_inner();

    assert_eq!(retry, first);
    assert_eq!(server.catalog_snapshot().await.len(), 1);

    let mut reused = request.clone();
    reused.tenant = Some(new_tenant("skynet"));
    let refused = client.create_tenant(reused).await.unwrap_err();
    crate::support::assert_bad_field(&refused, "request_id");
    assert_eq!(
        server.catalog_snapshot().await.len(),
        1,
        "nothing was created"
    );
}

async fn validate_only_checks_everything_and_writes_nothing(server: &TestServer) {
    let mut client = server.tenants();
    let checked = client
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant("tyrell")),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("validate")
        .into_inner();
    assert_eq!(checked.slug, "tyrell");
    assert!(server.catalog_snapshot().await.is_empty());

    create(server, "tyrell").await;
    let taken = client
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant("tyrell")),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
}

async fn two_concurrent_creates_of_one_slug_admit_exactly_one(server: &TestServer) {
    let attempts = (0..8).map(|_| {
        let mut client = server.tenants();
        tokio::spawn(async move {
            client
                .create_tenant(proto::CreateTenantRequest {
                    tenant: Some(new_tenant("oscorp")),
                    ..Default::default()
                })
                .await
        })
    });
    let results = futures_join(attempts).await;

    let won = results.iter().filter(|r| r.is_ok()).count();
    let lost: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(won, 1, "{results:?}");
    assert!(
        lost.iter().all(|s| s.code() == Code::AlreadyExists),
        "{lost:?}"
    );
    assert_eq!(server.catalog_snapshot().await.len(), 1);
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task"));
    }
    out
}
