//! A plan: the limits and defaults shared by every tenant subscribed to it.

use chrono::{DateTime, Utc};

use super::{Etag, Isolation, PlanLimit, PlanName};

/// A plan as the catalog holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: PlanName,
    pub display_name: String,
    /// Isolation of tenants created on the plan without one; `None` leaves it to the server
    /// default (TENANT_ISOLATION_STRATEGY).
    pub default_isolation: Option<Isolation>,
    /// At most one per resource, ordered by resource, so two equal plans compare equal.
    pub limits: Vec<PlanLimit>,
    /// The components (ids) the plan's tenants get, in the order they are installed.
    pub components: Vec<String>,
    pub revision: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Plan {
    /// The plan's version for optimistic concurrency, in the same form as a tenant's.
    pub fn etag(&self) -> Etag {
        Etag::from_revision(self.revision)
    }

    /// The resource name, "plans/{id}".
    pub fn name(&self) -> String {
        format!("plans/{}", self.id)
    }

    /// Whether `other` sets the same values: a write that would change nothing is not made,
    /// so repeating an upsert does not move the etag.
    pub fn same_settings(&self, other: &Plan) -> bool {
        self.display_name == other.display_name
            && self.default_isolation == other.default_isolation
            && self.limits == other.limits
            && self.components == other.components
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::QuotaKind;

    fn plan() -> Plan {
        let now = Utc::now();
        Plan {
            id: PlanName::parse("pro").unwrap(),
            display_name: "Pro".into(),
            default_isolation: None,
            limits: vec![PlanLimit::new("users", 10, Some(QuotaKind::Gauge), None, "l").unwrap()],
            components: vec!["sample".into()],
            revision: 3,
            create_time: now,
            update_time: now,
        }
    }

    #[test]
    fn a_plan_is_named_and_versioned_like_a_tenant() {
        let p = plan();
        assert_eq!(p.name(), "plans/pro");
        assert_eq!(p.etag().to_string(), "r3");
    }

    #[test]
    fn settings_compare_without_the_version() {
        let p = plan();
        let mut later = p.clone();
        later.revision = 4;
        later.update_time = Utc::now();
        assert!(p.same_settings(&later));
        later.limits.clear();
        assert!(!p.same_settings(&later));
    }
}
