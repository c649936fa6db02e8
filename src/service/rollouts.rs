//! Rollout use cases: start (select the tenants, skip those already at the target without
//! opening their schema), read, list, cancel and watch. The work itself is done by
//! [`super::rollout_worker`] on every replica.
//!
//! A rollout is of one component: its target is one of that component's migrations, it
//! selects only tenants whose plan lists the component, and it reads and writes the catalog's
//! mirror of that component alone (`tenant_components`), so rollouts of different components
//! neither skip nor block each other's tenants beyond the per-tenant lock.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::Notify;
use uuid::Uuid;

use super::component_sets;
use super::paging::{PageSize, PageToken, fingerprint};
use super::tenants::{RequestKey, TenantRef, load};
use crate::dataplane::{DataPlane, TenantMigrations};
use crate::domain::SAMPLE;
use crate::domain::{
    CallContext, Error, ErrorPolicy, FieldViolation, Labels, Rollout, RolloutCounts, RolloutState,
    Selector, TargetState,
};
use crate::store::{Catalog, Event, NewTarget};

/// Rollout limits from the configuration.
#[derive(Debug, Clone)]
pub struct RolloutSettings {
    /// Concurrency of a rollout that does not ask for one.
    pub default_concurrency: u32,
    /// Highest concurrency a rollout may ask for: each running tenant holds a connection.
    pub max_concurrency: u32,
    /// How long a claimed target stays with its worker without a renewal.
    pub lease: Duration,
    /// How often workers and watchers look for new work and events.
    pub poll_interval: Duration,
    /// Attempts at a tenant before a transient error (e.g. a lost connection) counts as failed.
    pub max_attempts: i32,
}

/// A selector as the caller sent it.
#[derive(Debug, Clone)]
pub enum SelectorInput {
    Missing,
    All(bool),
    Labels(BTreeMap<String, String>),
    Tenants(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct StartRolloutInput {
    /// The component to roll out, by id; empty: the compiled one.
    pub component: String,
    pub target_version: String,
    pub selector: SelectorInput,
    pub max_concurrency: i32,
    pub canary_count: i32,
    /// `None`: unspecified (HALT); `Some(Err(n))`: an unknown value.
    pub error_policy: Option<Result<ErrorPolicy, i32>>,
    pub max_failure_ratio: f64,
    pub request: Option<RequestKey>,
    /// Rehearse instead of starting (see `super::rehearsal`).
    pub validate_only: bool,
    /// Tenants to rehearse; 0: the default.
    pub rehearsal_sample_size: i32,
    /// Leave out the tenants whose last drift check found them drifted.
    pub skip_drifted: bool,
}

/// One item of a watched rollout.
#[derive(Debug, Clone)]
pub struct WatchItem {
    /// `None` for the first item, a snapshot of the counts.
    pub event: Option<Event>,
    pub counts: RolloutCounts,
}

#[derive(Clone)]
pub struct Rollouts {
    pub(super) catalog: Catalog,
    pub(super) settings: RolloutSettings,
    /// Wakes this replica's worker when a rollout starts here.
    wake: Arc<Notify>,
    /// Holds the compiled component, and is where rehearsals run (see `super::rehearsal`);
    /// pushed components are read from the catalog.
    pub(super) dataplane: Arc<DataPlane>,
}

impl Rollouts {
    pub fn new(
        catalog: Catalog,
        dataplane: Arc<DataPlane>,
        settings: RolloutSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            catalog,
            dataplane,
            settings,
            wake,
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn start(
        &self,
        ctx: &CallContext,
        input: StartRolloutInput,
    ) -> Result<Rollout, Error> {
        let (rollout, targets, _) = self.prepare(&input).await?;
        let pending = targets
            .iter()
            .filter(|t| t.state == TargetState::Pending)
            .count();
        let request = input
            .request
            .as_ref()
            .map(|k| (k.id, k.request_hash.as_str()));
        if let Some((first, hash)) = self
            .catalog
            .insert_rollout(ctx, &rollout, request, &targets)
            .await?
        {
            if hash.as_deref() != request.map(|(_, h)| h) {
                return Err(Error::invalid(
                    "request_id",
                    "was already used for a different request",
                ));
            }
            ctx.replayed();
            return self.get(first).await;
        }
        if pending == 0 {
            self.catalog
                .transition_rollout(
                    ctx,
                    rollout.id,
                    &RolloutState::ACTIVE,
                    RolloutState::Succeeded,
                    None,
                )
                .await?;
        } else {
            self.wake.notify_one();
        }
        tracing::info!(
            rollout = %rollout.id,
            component = %rollout.component,
            targets = targets.len(),
            pending,
            "rollout started"
        );
        self.get(rollout.id).await
    }

    /// Checks a StartRollout and finds its targets, writing nothing: the rollout it would
    /// start (PENDING, its counts not yet known), its targets, in tenant id order, and the
    /// component's migrations. Shared by starting a rollout and rehearsing one.
    pub(super) async fn prepare(
        &self,
        input: &StartRolloutInput,
    ) -> Result<(Rollout, Vec<NewTarget>, TenantMigrations), Error> {
        let component = if input.component.is_empty() {
            SAMPLE
        } else {
            input.component.as_str()
        };
        let migrations =
            component_sets::of_component(&self.catalog, &self.dataplane, component).await?;
        let mut violations = Vec::new();
        let target = if input.target_version.is_empty() {
            migrations
                .latest()
                .map(|v| (migrations.names().len() - 1, v.to_owned()))
        } else {
            migrations
                .check_version(&input.target_version, "target_version")
                .map(|i| (i, input.target_version.clone()))
                .map_err(|e| violations.extend(e.into_violations()))
                .ok()
        };
        let max_concurrency = match input.max_concurrency {
            n if n < 0 => {
                violations.push(FieldViolation::new(
                    "max_concurrency",
                    "must not be negative",
                ));
                1
            }
            0 => self.settings.default_concurrency,
            n => (n as u32).min(self.settings.max_concurrency),
        };
        if input.canary_count < 0 {
            violations.push(FieldViolation::new("canary_count", "must not be negative"));
        }
        let error_policy = match input.error_policy {
            None => ErrorPolicy::Halt,
            Some(Ok(policy)) => policy,
            Some(Err(n)) => {
                violations.push(FieldViolation::new(
                    "error_policy",
                    format!("{n} is not an error policy"),
                ));
                ErrorPolicy::Halt
            }
        };
        if !(0.0..=1.0).contains(&input.max_failure_ratio) {
            violations.push(FieldViolation::new(
                "max_failure_ratio",
                "must be between 0 and 1",
            ));
        }
        let selector = self
            .selector(input.selector.clone(), &mut violations)
            .await?;
        Error::check(violations)?;
        let (Some((target_index, target_version)), Some(selector)) = (target, selector) else {
            return Err(Error::invalid(
                "target_version",
                "there are no tenant migrations to roll out",
            ));
        };

        let candidates = self
            .catalog
            .rollout_candidates(&selector, migrations.id(), input.skip_drifted)
            .await?;
        let targets: Vec<NewTarget> = candidates
            .into_iter()
            .map(|c| {
                let at_target = c
                    .version
                    .as_deref()
                    .and_then(|v| migrations.position(v))
                    .is_some_and(|i| i >= target_index);
                NewTarget {
                    tenant: c.tenant,
                    state: if at_target {
                        TargetState::Skipped
                    } else {
                        TargetState::Pending
                    },
                    from_version: c.version,
                }
            })
            .collect();
        let rollout = Rollout {
            id: Uuid::now_v7(),
            component: migrations.id().to_owned(),
            target_version,
            selector,
            max_concurrency,
            canary_count: input.canary_count.max(0) as u32,
            error_policy,
            max_failure_ratio: input.max_failure_ratio,
            state: RolloutState::Pending,
            error: None,
            create_time: self.catalog.now(),
            start_time: None,
            end_time: None,
            counts: RolloutCounts::default(),
        };
        Ok((rollout, targets, migrations))
    }

    pub(super) async fn selector(
        &self,
        input: SelectorInput,
        violations: &mut Vec<FieldViolation>,
    ) -> Result<Option<Selector>, Error> {
        Ok(match input {
            SelectorInput::All(true) => Some(Selector::All),
            SelectorInput::Missing | SelectorInput::All(false) => {
                violations.push(FieldViolation::new(
                    "selector",
                    "choose all, labels or a list of tenants",
                ));
                None
            }
            SelectorInput::Labels(labels) if labels.is_empty() => {
                violations.push(FieldViolation::new(
                    "selector.labels.match_labels",
                    "must name at least one label",
                ));
                None
            }
            SelectorInput::Labels(labels) => match Labels::parse(&labels) {
                Ok(labels) => Some(Selector::Labels(labels)),
                Err(errors) => {
                    for (key, why) in errors {
                        violations.push(FieldViolation::new(
                            format!("selector.labels.match_labels[{key}]"),
                            why,
                        ));
                    }
                    None
                }
            },
            SelectorInput::Tenants(names) if names.is_empty() => {
                violations.push(FieldViolation::new(
                    "selector.tenants.tenants",
                    "must name at least one tenant",
                ));
                None
            }
            SelectorInput::Tenants(names) => {
                let mut ids = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    let field = format!("selector.tenants.tenants[{i}]");
                    match TenantRef::parse(name, &field) {
                        Ok(target) => match load(&self.catalog, &target).await {
                            Ok(tenant) => ids.push(tenant.id),
                            Err(Error::NotFound { .. }) => {
                                violations.push(FieldViolation::new(field, "no such tenant"))
                            }
                            Err(other) => return Err(other),
                        },
                        Err(e) => violations.extend(e.into_violations()),
                    }
                }
                ids.sort();
                ids.dedup();
                Some(Selector::Tenants(ids))
            }
        })
    }

    pub async fn get(&self, id: Uuid) -> Result<Rollout, Error> {
        self.catalog
            .rollout(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "rollout",
                name: format!("rollouts/{id}"),
            })
    }

    /// One page of rollouts, newest first, and the next page's token.
    pub async fn list(
        &self,
        page_size: i32,
        page_token: &str,
        states: Vec<RolloutState>,
    ) -> Result<(Vec<Rollout>, String), Error> {
        let size = PageSize::parse(page_size, "page_size")?.get();
        let mut names: Vec<_> = states.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        let query = fingerprint(&names.join(","));
        let before = match PageToken::decode(page_token, &query, "page_token")? {
            Some(token) => Some(Uuid::try_parse(&token.after).map_err(|_| {
                Error::invalid("page_token", "is not a page token issued for this query")
            })?),
            None => None,
        };
        let mut page = self
            .catalog
            .list_rollouts(&states, before, size + 1)
            .await?;
        let next = if page.len() as u64 > size {
            page.truncate(size as usize);
            page.last()
                .map(|r| PageToken::new(r.id.to_string(), &query).encode())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page, next))
    }

    /// Stops a rollout from starting more tenants; those already running finish.
    pub async fn cancel(&self, ctx: &CallContext, id: Uuid) -> Result<Rollout, Error> {
        let rollout = self.get(id).await?;
        let moved = self
            .catalog
            .transition_rollout(
                ctx,
                id,
                &RolloutState::ACTIVE,
                RolloutState::Cancelled,
                Some("cancelled by request"),
            )
            .await?;
        if !moved {
            return Err(Error::FailedPrecondition {
                subject: format!("rollouts/{id}"),
                message: format!("rollout has already ended ({})", rollout.state.as_str()),
            });
        }
        self.get(id).await
    }
}
