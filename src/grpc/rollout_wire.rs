//! Rollouts on the wire: their ids, states, counts and events, and a rehearsal's answer, as
//! MigrationService returns them.

use uuid::Uuid;

use super::convert;
use crate::domain::{Error, ErrorPolicy, Rollout, RolloutCounts, RolloutState, Selector};
use crate::proto;
use crate::service::{Rehearsal, WatchItem};

pub(super) fn rollout_id(name: &str) -> Result<Uuid, Error> {
    name.strip_prefix("rollouts/")
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| Error::invalid("name", "must be \"rollouts/{id}\" with a UUID id"))
}

pub(super) fn state_to_wire(state: RolloutState) -> proto::rollout::State {
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

pub(super) fn state_from_wire(state: proto::rollout::State) -> Option<RolloutState> {
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

pub(super) fn counts_to_wire(c: RolloutCounts) -> proto::RolloutCounts {
    proto::RolloutCounts {
        total: c.total() as i32,
        pending: c.pending as i32,
        running: c.running as i32,
        migrated: c.migrated as i32,
        skipped: c.skipped as i32,
        failed: c.failed as i32,
    }
}

pub(super) fn rollout_to_wire(r: Rollout) -> proto::Rollout {
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

pub(super) fn event_to_wire(rollout: &str, item: WatchItem) -> proto::RolloutEvent {
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

/// A rehearsal's answer: the rollout that would start, without a name (none exists), and the
/// rehearsed tenants.
pub(super) fn rehearsal_to_wire(rehearsal: Rehearsal) -> proto::Rollout {
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
