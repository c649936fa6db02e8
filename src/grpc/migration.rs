//! tenant.v1.MigrationService: decode, call one use case, encode.

use std::pin::Pin;

use tonic::{Request, Response, Status};

use super::{convert, pending::missing};
use crate::domain::Error;
use crate::proto::{self, migration_service_server::MigrationService};
use crate::service::{Direction, MigrationStatus, Migrations, TenantRef};

pub struct MigrationApi {
    migrations: Migrations,
}

impl MigrationApi {
    pub fn new(migrations: Migrations) -> Self {
        Self { migrations }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn status(s: MigrationStatus) -> proto::MigrationStatus {
    proto::MigrationStatus {
        current_version: s.current_version().unwrap_or_default().to_owned(),
        tenant: s.tenant,
        applied: s
            .applied
            .into_iter()
            .map(|(version, at)| proto::AppliedMigration {
                version,
                apply_time: Some(convert::timestamp(at)),
            })
            .collect(),
        pending: s.pending,
        last_error: s.last_error.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl MigrationService for MigrationApi {
    type WatchRolloutStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<proto::RolloutEvent, Status>> + Send + 'static>,
    >;

    async fn list_migrations(
        &self,
        _: Request<proto::ListMigrationsRequest>,
    ) -> Reply<proto::ListMigrationsResponse> {
        let migrations = self
            .migrations
            .list()
            .iter()
            .enumerate()
            .map(|(index, version)| proto::Migration {
                version: version.clone(),
                description: describe(version),
                index: index as i32,
            })
            .collect();
        Ok(Response::new(proto::ListMigrationsResponse { migrations }))
    }

    async fn get_migration_status(
        &self,
        request: Request<proto::GetMigrationStatusRequest>,
    ) -> Reply<proto::MigrationStatus> {
        let target = TenantRef::parse(&request.get_ref().tenant, "tenant")?;
        Ok(Response::new(status(
            self.migrations.status(&target).await?,
        )))
    }

    async fn migrate_tenant(
        &self,
        request: Request<proto::MigrateTenantRequest>,
    ) -> Reply<proto::MigrateTenantResponse> {
        let request = request.into_inner();
        let target = TenantRef::parse(&request.tenant, "tenant")?;
        super::check_request_id(&request.request_id)?;
        let direction = match proto::MigrationDirection::try_from(request.direction) {
            Ok(proto::MigrationDirection::Unspecified | proto::MigrationDirection::Up) => {
                Direction::Up
            }
            Ok(proto::MigrationDirection::Down) => Direction::Down,
            Err(_) => {
                return Err(Error::invalid(
                    "direction",
                    format!("{} is not a direction", request.direction),
                )
                .into());
            }
        };
        let migrated = self
            .migrations
            .migrate(&target, &request.target_version, direction)
            .await?;
        Ok(Response::new(proto::MigrateTenantResponse {
            status: Some(status(migrated.status)),
            applied: migrated.ran,
            duration: prost_types::Duration::try_from(migrated.duration).ok(),
        }))
    }

    async fn start_rollout(&self, _: Request<proto::StartRolloutRequest>) -> Reply<proto::Rollout> {
        missing("StartRollout (fleet migration rollouts)")
    }

    async fn get_rollout(&self, _: Request<proto::GetRolloutRequest>) -> Reply<proto::Rollout> {
        missing("GetRollout (fleet migration rollouts)")
    }

    async fn list_rollouts(
        &self,
        _: Request<proto::ListRolloutsRequest>,
    ) -> Reply<proto::ListRolloutsResponse> {
        missing("ListRollouts (fleet migration rollouts)")
    }

    async fn cancel_rollout(
        &self,
        _: Request<proto::CancelRolloutRequest>,
    ) -> Reply<proto::Rollout> {
        missing("CancelRollout (fleet migration rollouts)")
    }

    async fn watch_rollout(
        &self,
        _: Request<proto::WatchRolloutRequest>,
    ) -> Reply<Self::WatchRolloutStream> {
        missing("WatchRollout (fleet migration rollouts)")
    }
}

/// "m20261123_100001_create_users" -> "create users".
fn describe(version: &str) -> String {
    version
        .splitn(4, '_')
        .nth(3)
        .unwrap_or(version)
        .replace('_', " ")
}
