//! The plans every catalog starts with.

use crate::config::Config;
use crate::domain::{Isolation, PlanLimit, PlanName, Resource, well_known};
use crate::store::PlanDefaults;

const GIB: i64 = 1024 * 1024 * 1024;

/// free, pro and enterprise, with the default plan taking the limits from the configuration.
pub(super) fn builtin_plans(config: &Config, default_plan: &PlanName) -> Vec<PlanDefaults> {
    let limits = |users: i64, storage_gib: i64, messages: i64| {
        // Negative means unlimited and stays -1, whatever the unit.
        let storage = if storage_gib < 0 {
            -1
        } else {
            storage_gib.saturating_mul(GIB)
        };
        [
            ("users", users),
            ("storage_bytes", storage),
            ("messages_per_day", messages),
        ]
        .into_iter()
        .filter_map(|(name, limit)| {
            Some(PlanLimit {
                resource: Resource::parse(name).ok()?,
                limit: limit.max(-1),
                metering: well_known(name)?,
            })
        })
        .collect::<Vec<_>>()
    };
    let configured = limits(
        config.tenant_max_users,
        config.tenant_max_storage_gb,
        config.tenant_max_messages_per_day,
    );
    let mut plans = vec![
        ("free", "Free", None, limits(10, 5, 1_000)),
        ("pro", "Pro", None, limits(1_000, 100, 100_000)),
        (
            "enterprise",
            "Enterprise",
            Some(Isolation::Database),
            limits(-1, -1, -1),
        ),
    ]
    .into_iter()
    .filter_map(|(id, display, isolation, limits)| {
        let id = PlanName::parse(id).ok()?;
        let limits = if &id == default_plan {
            configured.clone()
        } else {
            limits
        };
        Some(PlanDefaults {
            id,
            display_name: display.to_owned(),
            default_isolation: isolation,
            limits,
        })
    })
    .collect::<Vec<_>>();
    if !plans.iter().any(|p| &p.id == default_plan) {
        plans.push(PlanDefaults {
            id: default_plan.clone(),
            display_name: default_plan.to_string(),
            default_isolation: None,
            limits: configured,
        });
    }
    plans
}
