//! Rehearsal: StartRollout with `validate_only` (AIP-163). The request is checked as a start
//! would check it and its targets found the same way (`Rollouts::prepare`); then, instead of
//! recording a rollout, the pending migrations are run on a sample of those targets (the first,
//! in tenant id order, that are behind the target), each in a transaction of the tenant's
//! storage that is rolled back ([`DataPlane::rehearse`](crate::dataplane::DataPlane::rehearse)),
//! under short lock and statement timeouts. Nothing commits: no rollout row, no target, no
//! version, nothing in any tenant's storage. The call's audit row is written, as for any
//! StartRollout (the policy table records the RPC): a rehearsal runs DDL in real tenants'
//! storage and holds their locks while it does, which an operator reading the log should see.
//!
//! Tenants are rehearsed one after the other: a rehearsal is a short check before a rollout,
//! and one tenant at a time keeps it from taking more than one connection (and one tenant's
//! locks) at once.

use std::time::{Duration, Instant};

use super::provisioning::storage_of;
use super::rollouts::{Rollouts, StartRolloutInput};
use super::tenants::{TenantRef, load};
use crate::dataplane::{RehearsalLimits, Target};
use crate::domain::{Error, Rollout, TargetState};

/// Tenants rehearsed when the request does not say: enough to meet the usual differences
/// between tenants (data, a version behind), few enough to answer in seconds.
pub const DEFAULT_SAMPLE_SIZE: usize = 5;

/// Most tenants one rehearsal runs: one at a time, each up to the statement timeout.
pub const MAX_SAMPLE_SIZE: usize = 50;

/// A rehearsal waits at most 2 s for a tenant's locks (live traffic on its tables, a
/// migration in progress): it reports the wait as its error instead of queueing behind them,
/// and, holding its own locks only that long, never makes live traffic queue for long either.
/// A statement may run for at most 60 s.
pub const LIMITS: RehearsalLimits = RehearsalLimits {
    lock_timeout: Duration::from_secs(2),
    statement_timeout: Duration::from_secs(60),
};

/// One tenant's rehearsal.
#[derive(Debug, Clone)]
pub struct RehearsedTarget {
    /// "tenants/{id}".
    pub tenant: String,
    pub from_version: Option<String>,
    /// The version the tenant would have reached; `from_version` when it failed.
    pub to_version: Option<String>,
    /// Why it failed; `None` when every migration ran.
    pub error: Option<String>,
    pub duration: Duration,
}

/// The answer to a rehearsal: the rollout that would start (never recorded) and the
/// rehearsed tenants, in tenant id order.
#[derive(Debug, Clone)]
pub struct Rehearsal {
    pub rollout: Rollout,
    pub targets: Vec<RehearsedTarget>,
}

impl Rollouts {
    /// Rehearses the rollout `input` asks for, starting nothing and committing nothing.
    #[tracing::instrument(skip_all)]
    pub async fn rehearse(&self, input: StartRolloutInput) -> Result<Rehearsal, Error> {
        let sample = match input.rehearsal_sample_size {
            n if n < 0 => {
                return Err(Error::invalid(
                    "rehearsal_sample_size",
                    "must not be negative",
                ));
            }
            0 => DEFAULT_SAMPLE_SIZE,
            n => (n as usize).min(MAX_SAMPLE_SIZE),
        };
        let (mut rollout, targets, set) = self.prepare(&input).await?;
        for target in &targets {
            match target.state {
                TargetState::Skipped => rollout.counts.skipped += 1,
                _ => rollout.counts.pending += 1,
            }
        }
        let set = &set;
        let index = set.check_version(&rollout.target_version, "target_version")?;
        let goal = Target::Up(index);
        let mut rehearsed = Vec::with_capacity(sample);
        for target in targets
            .iter()
            .filter(|t| t.state == TargetState::Pending)
            .take(sample)
        {
            let tenant = load(&self.catalog, &TenantRef::Id(target.tenant)).await?;
            let started = Instant::now();
            let result = self
                .dataplane
                .rehearse(&storage_of(&tenant), set, &goal, LIMITS)
                .await;
            let duration = started.elapsed();
            rehearsed.push(match result {
                Ok(report) => RehearsedTarget {
                    tenant: tenant.name(),
                    from_version: report
                        .applied
                        .len()
                        .checked_sub(report.ran.len() + 1)
                        .and_then(|i| set.names().get(i).cloned()),
                    to_version: report.version().map(str::to_owned),
                    error: None,
                    duration,
                },
                Err(error) => {
                    let message = match error {
                        Error::MigrationFailed { message, .. } => message,
                        other => other.to_string(),
                    };
                    RehearsedTarget {
                        tenant: tenant.name(),
                        from_version: target.from_version.clone(),
                        to_version: target.from_version.clone(),
                        error: Some(message),
                        duration,
                    }
                }
            });
        }
        let failed = rehearsed.iter().filter(|t| t.error.is_some()).count();
        tracing::info!(
            rehearsed = rehearsed.len(),
            failed,
            "rollout rehearsed; nothing committed"
        );
        Ok(Rehearsal {
            rollout,
            targets: rehearsed,
        })
    }
}
