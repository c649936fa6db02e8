//! tenant.v1.MigrationService: decode, call one use case, encode.

use std::pin::Pin;

use tonic::{Request, Response, Status};

use super::context::call_context;

use tokio_stream::StreamExt;

use super::convert;
use super::rollout_wire::{
    event_to_wire, rehearsal_to_wire, rollout_id, rollout_to_wire, state_from_wire,
};
use crate::domain::{Error, ErrorPolicy};
use crate::proto::{self, migration_service_server::MigrationService};
use crate::service::{
    Direction, Drifts, MigrationPlan, MigrationStatus, Migrations, Rollouts, SelectorInput,
    StartRolloutInput, TenantRef,
};

pub struct MigrationApi {
    migrations: Migrations,
    rollouts: Rollouts,
    drifts: Drifts,
}

impl MigrationApi {
    pub fn new(migrations: Migrations, rollouts: Rollouts, drifts: Drifts) -> Self {
        Self {
            migrations,
            rollouts,
            drifts,
        }
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
        component: s.component,
    }
}

#[tonic::async_trait]
impl MigrationService for MigrationApi {
    type WatchRolloutStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<proto::RolloutEvent, Status>> + Send + 'static>,
    >;

    async fn check_drift(
        &self,
        request: Request<proto::CheckDriftRequest>,
    ) -> Reply<proto::CheckDriftResponse> {
        super::drift::check_drift(&self.drifts, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_migrations(
        &self,
        request: Request<proto::ListMigrationsRequest>,
    ) -> Reply<proto::ListMigrationsResponse> {
        let migrations = self
            .migrations
            .list(&request.get_ref().component)
            .await?
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
            self.migrations
                .status(&target, &request.get_ref().component)
                .await?,
        )))
    }

    async fn migrate_tenant(
        &self,
        request: Request<proto::MigrateTenantRequest>,
    ) -> Reply<proto::MigrateTenantResponse> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let target = TenantRef::parse(&request.tenant, "tenant")?;
        let key = super::request_key(&request.request_id, &request)
            .map_err(|v| Error::InvalidArgument(vec![v]))?;
        let direction = direction_from_wire(request.direction)?;
        let migrated = self
            .migrations
            .migrate(
                &ctx,
                &target,
                &request.component,
                &request.target_version,
                direction,
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(proto::MigrateTenantResponse {
            status: Some(status(migrated.status)),
            applied: migrated.ran,
            duration: prost_types::Duration::try_from(migrated.duration).ok(),
        }))
    }

    async fn plan_migration(
        &self,
        request: Request<proto::PlanMigrationRequest>,
    ) -> Reply<proto::MigrationPlan> {
        let request = request.into_inner();
        let target = TenantRef::parse(&request.tenant, "tenant")?;
        let direction = direction_from_wire(request.direction)?;
        let plan = self
            .migrations
            .plan(
                &target,
                &request.component,
                &request.target_version,
                direction,
            )
            .await?;
        Ok(Response::new(plan_to_wire(plan)))
    }

    async fn start_rollout(
        &self,
        request: Request<proto::StartRolloutRequest>,
    ) -> Reply<proto::Rollout> {
        let ctx = call_context(&request);
        use proto::tenant_selector::Selector as Wire;
        let request = request.into_inner();
        let key = super::request_key(&request.request_id, &request)
            .map_err(|v| Error::InvalidArgument(vec![v]))?;
        let selector = match request.selector.and_then(|s| s.selector) {
            None => SelectorInput::Missing,
            Some(Wire::All(all)) => SelectorInput::All(all),
            Some(Wire::Labels(labels)) => {
                SelectorInput::Labels(labels.match_labels.into_iter().collect())
            }
            Some(Wire::Tenants(list)) => SelectorInput::Tenants(list.tenants),
        };
        let error_policy = match proto::ErrorPolicy::try_from(request.error_policy) {
            Ok(proto::ErrorPolicy::Unspecified) => None,
            Ok(proto::ErrorPolicy::Continue) => Some(Ok(ErrorPolicy::Continue)),
            Ok(proto::ErrorPolicy::Halt) => Some(Ok(ErrorPolicy::Halt)),
            Err(_) => Some(Err(request.error_policy)),
        };
        let input = StartRolloutInput {
            target_version: request.target_version,
            component: request.component,
            selector,
            max_concurrency: request.max_concurrency,
            canary_count: request.canary_count,
            error_policy,
            max_failure_ratio: request.max_failure_ratio,
            request: key,
            validate_only: request.validate_only,
            rehearsal_sample_size: request.rehearsal_sample_size,
            skip_drifted: request.skip_drifted,
        };
        if input.validate_only {
            let rehearsal = self.rollouts.rehearse(input).await?;
            return Ok(Response::new(rehearsal_to_wire(rehearsal)));
        }
        let rollout = self.rollouts.start(&ctx, input).await?;
        Ok(Response::new(rollout_to_wire(rollout)))
    }

    async fn get_rollout(
        &self,
        request: Request<proto::GetRolloutRequest>,
    ) -> Reply<proto::Rollout> {
        let id = rollout_id(&request.get_ref().name)?;
        Ok(Response::new(rollout_to_wire(self.rollouts.get(id).await?)))
    }

    async fn list_rollouts(
        &self,
        request: Request<proto::ListRolloutsRequest>,
    ) -> Reply<proto::ListRolloutsResponse> {
        let request = request.into_inner();
        let mut states = Vec::new();
        for (i, raw) in request.states.iter().enumerate() {
            match proto::rollout::State::try_from(*raw)
                .ok()
                .and_then(state_from_wire)
            {
                Some(state) => states.push(state),
                None => {
                    return Err(Error::invalid(
                        format!("states[{i}]"),
                        format!("{raw} is not a rollout state"),
                    )
                    .into());
                }
            }
        }
        let (rollouts, next_page_token) = self
            .rollouts
            .list(request.page_size, &request.page_token, states)
            .await?;
        Ok(Response::new(proto::ListRolloutsResponse {
            rollouts: rollouts.into_iter().map(rollout_to_wire).collect(),
            next_page_token,
        }))
    }

    async fn cancel_rollout(
        &self,
        request: Request<proto::CancelRolloutRequest>,
    ) -> Reply<proto::Rollout> {
        let ctx = call_context(&request);
        let id = rollout_id(&request.get_ref().name)?;
        Ok(Response::new(rollout_to_wire(
            self.rollouts.cancel(&ctx, id).await?,
        )))
    }

    async fn watch_rollout(
        &self,
        request: Request<proto::WatchRolloutRequest>,
    ) -> Reply<Self::WatchRolloutStream> {
        let id = rollout_id(&request.get_ref().name)?;
        let name = format!("rollouts/{id}");
        let items = self.rollouts.watch(id).await?;
        let stream =
            items.map(move |item| item.map(|i| event_to_wire(&name, i)).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}
/// "m20261123_100001_create_users" -> "create users".
fn describe(version: &str) -> String {
    version
        .splitn(3, '_')
        .nth(2)
        .unwrap_or(version)
        .replace('_', " ")
}

/// A direction as MigrateTenant and PlanMigration read it.
fn direction_from_wire(raw: i32) -> Result<Direction, Status> {
    match proto::MigrationDirection::try_from(raw) {
        Ok(proto::MigrationDirection::Unspecified | proto::MigrationDirection::Up) => {
            Ok(Direction::Up)
        }
        Ok(proto::MigrationDirection::Down) => Ok(Direction::Down),
        Err(_) => Err(Error::invalid("direction", format!("{raw} is not a direction")).into()),
    }
}

fn direction_to_wire(direction: Direction) -> i32 {
    match direction {
        Direction::Up => proto::MigrationDirection::Up as i32,
        Direction::Down => proto::MigrationDirection::Down as i32,
    }
}

fn plan_to_wire(plan: MigrationPlan) -> proto::MigrationPlan {
    proto::MigrationPlan {
        tenant: plan.tenant,
        component: plan.component,
        current_version: plan.current_version.unwrap_or_default(),
        target_version: plan.target_version.unwrap_or_default(),
        migrations: plan
            .steps
            .into_iter()
            .map(|step| {
                let version = step.version;
                let lint = step
                    .lint
                    .into_iter()
                    .map(|f| proto::LintFinding {
                        version: version.clone(),
                        script: match step.direction {
                            Direction::Up => "up_sql",
                            Direction::Down => "down_sql",
                        }
                        .to_owned(),
                        statement_index: f.statement_index as i32,
                        rule: f.rule.to_owned(),
                        severity: match f.severity {
                            crate::lint::Severity::Note => proto::lint_finding::Severity::Note,
                            crate::lint::Severity::Error => proto::lint_finding::Severity::Error,
                        } as i32,
                        message: f.message,
                        statement: f.statement,
                    })
                    .collect();
                proto::PlannedMigration {
                    version,
                    direction: direction_to_wire(step.direction),
                    statements: step.statements,
                    note: step.note.unwrap_or_default(),
                    lint,
                }
            })
            .collect(),
    }
}
