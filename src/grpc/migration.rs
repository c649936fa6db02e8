//! tenant.v1.MigrationService: decode, call one use case, encode.

use std::pin::Pin;

use tonic::{Request, Response, Status};

use super::context::call_context;

use tokio_stream::StreamExt;
use uuid::Uuid;

use super::convert;
use crate::domain::{Error, ErrorPolicy, Rollout, RolloutCounts, RolloutState, Selector};
use crate::proto::{self, migration_service_server::MigrationService};
use crate::service::{
    Direction, Drifts, MigrationPlan, MigrationStatus, Migrations, Rehearsal, Rollouts,
    SelectorInput, StartRolloutInput, TenantRef, WatchItem,
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

fn rollout_id(name: &str) -> Result<Uuid, Error> {
    name.strip_prefix("rollouts/")
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| Error::invalid("name", "must be \"rollouts/{id}\" with a UUID id"))
}

fn state_to_wire(state: RolloutState) -> proto::rollout::State {
    use proto::rollout::State;
    match state {
        RolloutState::Pending => State::Pending,
        RolloutState::Running => State::Running,
        RolloutState::Succeeded => State::Succeeded,
        RolloutState::Failed => State::Failed,
        RolloutState::Halted => State::Halted,
        RolloutState::Cancelled => State::Cancelled,
    }
}

fn state_from_wire(state: proto::rollout::State) -> Option<RolloutState> {
    use proto::rollout::State;
    Some(match state {
        State::Unspecified => return None,
        State::Pending => RolloutState::Pending,
        State::Running => RolloutState::Running,
        State::Succeeded => RolloutState::Succeeded,
        State::Failed => RolloutState::Failed,
        State::Halted => RolloutState::Halted,
        State::Cancelled => RolloutState::Cancelled,
    })
}

fn counts_to_wire(c: RolloutCounts) -> proto::RolloutCounts {
    proto::RolloutCounts {
        total: c.total() as i32,
        pending: c.pending as i32,
        running: c.running as i32,
        migrated: c.migrated as i32,
        skipped: c.skipped as i32,
        failed: c.failed as i32,
    }
}

fn rollout_to_wire(r: Rollout) -> proto::Rollout {
    use proto::tenant_selector::Selector as Wire;
    let selector = match r.selector {
        Selector::All => Wire::All(true),
        Selector::Labels(labels) => Wire::Labels(proto::LabelSelector {
            match_labels: labels.as_map().clone().into_iter().collect(),
        }),
        Selector::Tenants(ids) => Wire::Tenants(proto::TenantList {
            tenants: ids.into_iter().map(|id| format!("tenants/{id}")).collect(),
        }),
    };
    proto::Rollout {
        name: format!("rollouts/{}", r.id),
        id: r.id.to_string(),
        target_version: r.target_version,
        component: r.component,
        selector: Some(proto::TenantSelector {
            selector: Some(selector),
        }),
        max_concurrency: r.max_concurrency as i32,
        canary_count: r.canary_count as i32,
        error_policy: match r.error_policy {
            ErrorPolicy::Continue => proto::ErrorPolicy::Continue,
            ErrorPolicy::Halt => proto::ErrorPolicy::Halt,
        } as i32,
        max_failure_ratio: r.max_failure_ratio,
        state: state_to_wire(r.state) as i32,
        counts: Some(counts_to_wire(r.counts)),
        create_time: Some(convert::timestamp(r.create_time)),
        start_time: r.start_time.map(convert::timestamp),
        end_time: r.end_time.map(convert::timestamp),
        error: r.error.unwrap_or_default(),
        rehearsal: Vec::new(),
    }
}

fn event_to_wire(rollout: &str, item: WatchItem) -> proto::RolloutEvent {
    use proto::rollout_event::Kind;
    let counts = Some(counts_to_wire(item.counts));
    let Some(event) = item.event else {
        return proto::RolloutEvent {
            rollout: rollout.to_owned(),
            event_time: None,
            kind: None,
            counts,
        };
    };
    let tenant = event
        .tenant
        .map(|t| format!("tenants/{t}"))
        .unwrap_or_default();
    let text = |key: &str| {
        event
            .detail
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let kind = match event.kind.as_str() {
        "started" => Some(Kind::Started(proto::TargetStarted { tenant })),
        "migrated" => Some(Kind::Migrated(proto::TargetMigrated {
            tenant,
            from_version: text("from"),
            to_version: text("to"),
            duration: event
                .detail
                .get("duration_ms")
                .and_then(|v| v.as_u64())
                .and_then(|ms| {
                    prost_types::Duration::try_from(std::time::Duration::from_millis(ms)).ok()
                }),
        })),
        "skipped" => Some(Kind::Skipped(proto::TargetSkipped {
            tenant,
            version: text("version"),
            reason: text("reason"),
        })),
        "failed" => Some(Kind::Failed(proto::TargetFailed {
            tenant,
            error: text("error"),
            attempt: event
                .detail
                .get("attempt")
                .and_then(|v| v.as_i64())
                .unwrap_or(1) as i32,
        })),
        "finished" => Some(Kind::Finished(proto::RolloutFinished {
            state: RolloutState::parse(&text("state")).map_or(0, |s| state_to_wire(s) as i32),
        })),
        _ => None,
    };
    proto::RolloutEvent {
        rollout: rollout.to_owned(),
        event_time: Some(convert::timestamp(event.time)),
        kind,
        counts,
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

/// A rehearsal's answer: the rollout that would start, without a name (none exists), and the
/// rehearsed tenants.
fn rehearsal_to_wire(rehearsal: Rehearsal) -> proto::Rollout {
    let mut wire = rollout_to_wire(rehearsal.rollout);
    wire.name.clear();
    wire.id.clear();
    wire.rehearsal = rehearsal
        .targets
        .into_iter()
        .map(|t| proto::RehearsedTarget {
            tenant: t.tenant,
            from_version: t.from_version.unwrap_or_default(),
            to_version: t.to_version.unwrap_or_default(),
            ok: t.error.is_none(),
            error: t.error.unwrap_or_default(),
            duration: prost_types::Duration::try_from(t.duration).ok(),
        })
        .collect();
    wire
}
