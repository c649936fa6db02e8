//! The fleet the rollout tests share: a server with a sixth tenant migration, tenants one step
//! behind it, and the calls that start a rollout and follow it to its end.

use std::sync::Arc;

use migration::sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager, prelude::*};
use tenant_plane::{dataplane::TenantMigrations, proto};
use tokio_stream::StreamExt;

use crate::support::{Db, TestServer, create};

/// A sixth tenant migration: a unique index on users.name. It fails in a tenant that has two
/// users of one name, which is how a test makes one tenant's migration fail.
struct UniqueUserNames;

pub(crate) const SIXTH: &str = "m20261208_000001_unique_user_names";
pub(crate) const FIFTH: &str = "m20261207_100005_tenant_scoped_keys";

impl MigrationName for UniqueUserNames {
    fn name(&self) -> &str {
        SIXTH
    }
}

#[migration::sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for UniqueUserNames {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("users_name_key")
                    .table(Alias::new("users"))
                    .col(Alias::new("name"))
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("users_name_key")
                    .table(Alias::new("users"))
                    .to_owned(),
            )
            .await
    }
}

pub(crate) fn six_migrations() -> TenantMigrations {
    TenantMigrations::new(Arc::new(|| {
        let mut migrations = migration::tenant::migrations();
        migrations.push(Box::new(UniqueUserNames));
        migrations
    }))
}

/// A server with six migrations and `n` tenants at the fifth (one step behind the latest).
pub(crate) async fn fleet(db: Db, n: usize) -> (TestServer, Vec<proto::Tenant>) {
    fleet_with(db, n, |_| {}).await
}

/// [`fleet`] on a server configured by `adjust`.
pub(crate) async fn fleet_with(
    db: Db,
    n: usize,
    adjust: impl FnOnce(&mut tenant_plane::config::Config),
) -> (TestServer, Vec<proto::Tenant>) {
    let server = TestServer::start_with_migrations(db, six_migrations(), adjust).await;
    let mut tenants = Vec::new();
    for i in 0..n {
        let tenant = create(&server, &format!("fleet-{i}")).await;
        server
            .migrations()
            .migrate_tenant(proto::MigrateTenantRequest {
                tenant: tenant.name.clone(),
                direction: proto::MigrationDirection::Down as i32,
                ..Default::default()
            })
            .await
            .expect("one step down");
        tenants.push(tenant);
    }
    (server, tenants)
}

/// Two users with one name: the sixth migration's unique index cannot be built here.
pub(crate) async fn poison(server: &TestServer, tenant: &proto::Tenant) {
    let db = server.tenant_conn(tenant).await;
    for _ in 0..2 {
        db.execute_unprepared(&format!(
            "INSERT INTO users (id, email, name) VALUES ('{}', '{}@example.com', 'twin')",
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7().simple()
        ))
        .await
        .expect("insert a user");
    }
    db.close().await.expect("close");
}

pub(crate) async fn start(
    server: &TestServer,
    request: proto::StartRolloutRequest,
) -> proto::Rollout {
    server
        .migrations()
        .start_rollout(request)
        .await
        .expect("start the rollout")
        .into_inner()
}

pub(crate) fn all() -> Option<proto::TenantSelector> {
    Some(proto::TenantSelector {
        selector: Some(proto::tenant_selector::Selector::All(true)),
    })
}

/// Follows the rollout's events until it ends, and returns it as it ended.
pub(crate) async fn finish(server: &TestServer, rollout: &proto::Rollout) -> proto::Rollout {
    let mut events = server
        .migrations()
        .watch_rollout(proto::WatchRolloutRequest {
            name: rollout.name.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the rollout ends within 60 s");
        match next {
            Some(Ok(proto::RolloutEvent {
                kind: Some(proto::rollout_event::Kind::Finished(_)),
                ..
            }))
            | None => break,
            Some(Ok(_)) => {}
            Some(Err(status)) => panic!("watch failed: {status:?}"),
        }
    }
    server
        .migrations()
        .get_rollout(proto::GetRolloutRequest {
            name: rollout.name.clone(),
        })
        .await
        .expect("get")
        .into_inner()
}

pub(crate) async fn version_of(server: &TestServer, tenant: &proto::Tenant) -> String {
    server
        .tenants()
        .get_tenant(proto::GetTenantRequest {
            name: tenant.name.clone(),
        })
        .await
        .expect("get tenant")
        .into_inner()
        .migration_version
}
