//! The dry run of MigrateTenant (PlanMigration): the migrations a tenant's run would apply or
//! revert, each with its statements and the lint's notes, found without changing anything. It
//! writes no catalog row (so no audit row either: the policy table records it as read-only) and
//! nothing in the tenant's storage: the data plane reads the version table without making one
//! ([`DataPlane::dry_run`](crate::dataplane::DataPlane::dry_run)).

use super::migrations::{Direction, Migrations, goal, provisioned};
use super::provisioning::storage_of;
use super::tenants::{TenantRef, load};
use crate::dataplane::PlannedBody;
use crate::db::Backend;
use crate::domain::Error;
use crate::lint::{Allowances, Dialect, Finding, lint};

/// One migration a run would apply or revert.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub version: String,
    pub direction: Direction,
    /// The statements it would send, in order; empty when they are known only by running it.
    pub statements: Vec<String>,
    /// Why `statements` is empty, when it is.
    pub note: Option<String>,
    /// The lint's findings in a pushed migration's script, under no allowances.
    pub lint: Vec<Finding>,
}

/// What MigrateTenant would do to one tenant.
#[derive(Debug, Clone)]
pub struct MigrationPlan {
    pub tenant: String,
    pub component: String,
    pub current_version: Option<String>,
    /// Where the tenant would be afterwards.
    pub target_version: Option<String>,
    pub steps: Vec<PlannedStep>,
}

/// The note of a compiled migration whose statements cannot be recorded.
const UNRECORDED: &str = "a compiled migration that runs statement by statement (it reads, binds \
     values or changes data, or the tenants are on SQLite): its statements are known only by \
     running it";

impl Migrations {
    /// What MigrateTenant of `component` (empty: the compiled one) to `version` in `direction`
    /// would do to the tenant, refused as it would be, touching nothing.
    #[tracing::instrument(skip_all, fields(tenant = %target, component, ?direction, version))]
    pub async fn plan(
        &self,
        target: &TenantRef,
        component: &str,
        version: &str,
        direction: Direction,
    ) -> Result<MigrationPlan, Error> {
        let set = self.set(component).await?;
        let goal = goal(&set, direction, version)?;
        let tenant = load(&self.catalog, target).await?;
        provisioned(&tenant)?;
        self.listed(&tenant, set.id()).await?;
        let dry = self
            .dataplane
            .dry_run(&storage_of(&tenant), &set, &goal)
            .await?;
        let dialect = match self.dataplane.backend() {
            Backend::Postgres => Dialect::Postgres,
            Backend::Sqlite => Dialect::Sqlite,
        };
        let current_version = dry.current.version().map(str::to_owned);
        let mut applied = dry.current.applied.len();
        let steps: Vec<PlannedStep> = dry
            .migrations
            .into_iter()
            .map(|planned| {
                applied = if planned.down {
                    applied.saturating_sub(1)
                } else {
                    applied + 1
                };
                let direction = if planned.down {
                    Direction::Down
                } else {
                    Direction::Up
                };
                let (statements, note, lint) = match planned.body {
                    PlannedBody::Script(script) => {
                        let linted = lint(&script, dialect, Allowances::default());
                        (linted.statements, None, linted.findings)
                    }
                    PlannedBody::Recorded(statements) => (statements, None, Vec::new()),
                    PlannedBody::Unrecorded => {
                        (Vec::new(), Some(UNRECORDED.to_owned()), Vec::new())
                    }
                };
                PlannedStep {
                    version: planned.version,
                    direction,
                    statements,
                    note,
                    lint,
                }
            })
            .collect();
        let target_version = if steps.is_empty() {
            current_version.clone()
        } else {
            applied
                .checked_sub(1)
                .and_then(|i| set.names().get(i))
                .cloned()
        };
        Ok(MigrationPlan {
            tenant: tenant.name(),
            component: set.id().to_owned(),
            current_version,
            target_version,
            steps,
        })
    }
}
