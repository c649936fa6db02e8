//! Drift checks: whether tenants' storage still has the shape their applied migrations produce
//! (the comparison is the data plane's, [`DriftChecker`]), for one tenant, a selection, or the
//! fleet on an interval; each check is recorded in the catalog, which the fleet's count of
//! drifted tenants (a metric) is read from, with which of the tenant's components drifted (the
//! ones a difference is attributed to), which the fleet's counts per component are read from.
//!
//! A tenant is expected to have, of each component the catalog mirrors for it
//! (`tenant_components`), the migrations up to its mirrored version, applied component after
//! component in its plan's order. SHARED tenants share one schema: it is checked once per
//! distinct (schema, versions) in a run, and its finding is every SHARED tenant's.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::component_sets;
use super::jobs::{Job, JobPasses, run_every};
use super::provisioning::storage_of;
use super::rollouts::{Rollouts, SelectorInput};
use super::tenants::{TenantRef, load};
use crate::dataplane::{
    Applied, Attributed, DataPlane, Difference, Drift, DriftChecker, Storage, TenantMigrations,
};
use crate::domain::{Error, Isolation, Selector, Tenant, TenantId, TenantState};
use crate::store::{Catalog, DriftFinding, DriftRecord};

/// Tenants read from the catalog, checked and recorded at a time: a fleet run holds one page
/// of tenants and their findings in memory, however large the fleet.
const PAGE: u64 = 200;

/// A tenant's components as the catalog mirrors them, in its plan's order: each one's id and
/// how many of its migrations are applied.
type Counts = Vec<(String, usize)>;

/// The migration sets of the components a run met, loaded once per run.
#[derive(Default)]
struct Sets(HashMap<String, TenantMigrations>);

/// What to check.
#[derive(Debug, Clone)]
pub enum DriftScope {
    Tenant(TenantRef),
    Selector(SelectorInput),
}

/// One tenant's check.
#[derive(Debug, Clone)]
pub struct TenantDrift {
    /// `tenants/{id}`.
    pub tenant: String,
    pub slug: String,
    pub check_time: DateTime<Utc>,
    /// What the check found, or why it could not be made.
    pub outcome: Result<Checked, String>,
}

/// What a check that could be made found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Each difference, the schema's functions first, then table by table in name order.
    pub differences: Vec<DriftDifference>,
    pub expected_fingerprint: String,
    pub actual_fingerprint: String,
    /// The differences as the catalog records them: the data plane's (tagged by their kind of
    /// change), with their component and sentence.
    recorded: Vec<serde_json::Value>,
}

impl Checked {
    /// The components at least one difference is attributed to, each once.
    fn drifted_components(&self) -> Vec<String> {
        let mut components: Vec<String> = self
            .differences
            .iter()
            .filter_map(|d| d.component.clone())
            .collect();
        components.sort();
        components.dedup();
        components
    }
}

/// The kind of object a difference is about.
pub use crate::dataplane::Object as DriftObject;

/// How an object differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftChange {
    /// In the tenant's storage, not in the expected shape.
    Extra,
    /// Expected, not in the tenant's storage.
    Missing,
    /// Both have it; one aspect of it differs.
    Changed,
}

/// One way a tenant's storage differs from the shape its applied migrations produce, field by
/// field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftDifference {
    pub change: DriftChange,
    pub object: DriftObject,
    /// The table the object belongs to (the table itself for a table; empty for a function).
    pub table: String,
    pub name: String,
    /// For a changed object, what of it changed (`type`, `nullability`, `default`,
    /// `definition`, `kind`, `row security`); empty otherwise, as are `actual` and `expected`.
    pub aspect: String,
    pub actual: String,
    pub expected: String,
    /// The component whose migrations made the object's table, or the function; `None` when
    /// none made it.
    pub component: Option<String>,
    /// The difference as a sentence ("extra index messages_tmp_idx on messages").
    pub description: String,
}

impl From<&Attributed> for DriftDifference {
    fn from(found: &Attributed) -> Self {
        let difference = &found.difference;
        let (change, aspect, actual, expected) = match difference {
            Difference::Extra { .. } => (DriftChange::Extra, "", "", ""),
            Difference::Missing { .. } => (DriftChange::Missing, "", "", ""),
            Difference::Changed {
                what,
                actual,
                expected,
                ..
            } => (
                DriftChange::Changed,
                what.as_str(),
                actual.as_str(),
                expected.as_str(),
            ),
        };
        Self {
            change,
            object: difference.object(),
            table: difference.table().to_owned(),
            name: difference.name().to_owned(),
            aspect: aspect.to_owned(),
            actual: actual.to_owned(),
            expected: expected.to_owned(),
            component: found.component.clone(),
            description: difference.to_string(),
        }
    }
}

/// A difference as the catalog records it: the data plane's serialisation with the sentence.
#[derive(serde::Serialize)]
struct Recorded<'a> {
    #[serde(flatten)]
    found: &'a Attributed,
    description: String,
}

fn recorded(found: &Attributed) -> serde_json::Value {
    let description = found.difference.to_string();
    // Strings, booleans and maps of them: serialising cannot fail; were it to, the sentence
    // alone is kept.
    serde_json::to_value(Recorded {
        found,
        description: description.clone(),
    })
    .unwrap_or(serde_json::Value::String(description))
}

impl TenantDrift {
    pub fn drifted(&self) -> bool {
        self.outcome
            .as_ref()
            .is_ok_and(|checked| !checked.differences.is_empty())
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct DriftSummary {
    /// Tenants checked, in id order (only drifted and failed ones when asked so).
    pub tenants: Vec<TenantDrift>,
    pub checked: u32,
    pub drifted: u32,
    pub failed: u32,
}

#[derive(Clone)]
pub struct Drifts {
    catalog: Catalog,
    dataplane: Arc<DataPlane>,
    checker: Arc<DriftChecker>,
    rollouts: Rollouts,
}

impl Drifts {
    pub fn new(catalog: Catalog, dataplane: Arc<DataPlane>, rollouts: Rollouts) -> Self {
        Self {
            catalog,
            checker: Arc::new(DriftChecker::new(dataplane.clone())),
            dataplane,
            rollouts,
        }
    }

    /// Checks the tenants of `scope` and records each check. With `drifted_only`, clean tenants
    /// are counted but not listed. One tenant named by `scope` must be provisioned and not
    /// deleted (FAILED_PRECONDITION); a selection skips those.
    #[tracing::instrument(skip_all)]
    pub async fn check(
        &self,
        scope: DriftScope,
        drifted_only: bool,
    ) -> Result<DriftSummary, Error> {
        let selector = match scope {
            DriftScope::Tenant(target) => {
                let tenant = load(&self.catalog, &target).await?;
                if tenant.state == TenantState::Deleted || tenant.provision_time.is_none() {
                    return Err(Error::FailedPrecondition {
                        subject: tenant.name(),
                        message: format!(
                            "tenant {} has no storage to check (it is DELETED or not provisioned)",
                            tenant.slug
                        ),
                    });
                }
                Selector::Tenants(vec![tenant.id])
            }
            DriftScope::Selector(input) => {
                let mut violations = Vec::new();
                let selector = self.rollouts.selector(input, &mut violations).await?;
                Error::check(violations)?;
                selector.ok_or_else(|| Error::invalid("selector", "choose tenants to check"))?
            }
        };
        self.run(&selector, drifted_only).await
    }

    /// Checks every tenant with storage (a pass of the drift job).
    pub async fn check_fleet(&self) -> Result<DriftSummary, Error> {
        self.run(&Selector::All, true).await
    }

    /// The drift job: checks the fleet every `interval` by the server's clock (the first after
    /// one interval), until `stop`.
    pub async fn run_job(
        self,
        interval: TimeDelta,
        passes: JobPasses,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let clock = self.catalog.clock().clone();
        let pass = || async {
            match self.check_fleet().await {
                Ok(summary) => tracing::info!(
                    checked = summary.checked,
                    drifted = summary.drifted,
                    failed = summary.failed,
                    "drift job pass"
                ),
                Err(error) => tracing::warn!(%error, "drift job pass failed; retrying next time"),
            }
        };
        run_every(Job::Drift, &clock, interval, false, &passes, stop, pass).await;
    }

    async fn run(&self, selector: &Selector, drifted_only: bool) -> Result<DriftSummary, Error> {
        let mut summary = DriftSummary::default();
        // The shared schema's finding by (schema, migrations applied), once per run.
        let mut shared: HashMap<(String, Counts), Result<Checked, String>> = HashMap::new();
        let mut sets = Sets::default();
        let mut after: Option<TenantId> = None;
        loop {
            let page = self.catalog.drift_candidates(selector, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let counts = self.counts(&page, &mut sets).await?;
            let mut checked = self.check_page(&page, &counts, &sets, &mut shared).await;
            self.recheck_moved(&page, &counts, &mut sets, &mut checked)
                .await?;
            let records: Vec<DriftRecord> = checked
                .iter()
                .map(|(id, drift)| DriftRecord {
                    tenant: *id,
                    check_time: drift.check_time,
                    outcome: drift
                        .outcome
                        .as_ref()
                        .map(|c| DriftFinding {
                            differences: c.recorded.clone(),
                            drifted_components: c.drifted_components(),
                            expected_fingerprint: c.expected_fingerprint.clone(),
                            actual_fingerprint: c.actual_fingerprint.clone(),
                        })
                        .map_err(Clone::clone),
                })
                .collect();
            self.catalog.record_drift(&records).await?;
            for (_, drift) in checked {
                summary.checked += 1;
                match &drift.outcome {
                    Err(error) => {
                        summary.failed += 1;
                        tracing::warn!(tenant = %drift.tenant, %error, "drift check failed");
                    }
                    Ok(c) if !c.differences.is_empty() => {
                        summary.drifted += 1;
                        tracing::warn!(
                            tenant = %drift.tenant,
                            differences = %c
                                .differences
                                .iter()
                                .map(|d| d.description.as_str())
                                .collect::<Vec<_>>()
                                .join("; "),
                            "tenant storage drifted"
                        );
                    }
                    Ok(_) if drifted_only => continue,
                    Ok(_) => {}
                }
                summary.tenants.push(drift);
            }
            if (page.len() as u64) < PAGE {
                break;
            }
        }
        Ok(summary)
    }

    /// Each tenant's components and applied counts, from the catalog's mirror (one read per
    /// page), loading the sets of components not met before; an error names a version the
    /// server does not know.
    async fn counts(
        &self,
        page: &[Tenant],
        sets: &mut Sets,
    ) -> Result<Vec<Result<Counts, String>>, Error> {
        let ids: Vec<TenantId> = page.iter().map(|t| t.id).collect();
        let mirrored = self.catalog.component_versions(&ids).await?;
        let mut orders: HashMap<String, Vec<String>> = HashMap::new();
        let mut counts = Vec::with_capacity(page.len());
        for tenant in page {
            let plan = tenant.plan.as_str();
            if !orders.contains_key(plan) {
                let order = self
                    .catalog
                    .plan_components(plan)
                    .await?
                    .unwrap_or_default();
                orders.insert(plan.to_owned(), order);
            }
            let order = orders.get(plan).map(Vec::as_slice).unwrap_or_default();
            let mut versions = mirrored.get(&tenant.id).cloned().unwrap_or_default();
            // The plan's order first (a component may build on an earlier one's tables), then
            // any the plan no longer lists, by id.
            versions.sort_by_key(|(component, _)| {
                (
                    order
                        .iter()
                        .position(|c| c == component)
                        .unwrap_or(usize::MAX),
                    component.clone(),
                )
            });
            let mut tenant_counts = Ok(Counts::new());
            for (component, version) in versions {
                if !sets.0.contains_key(&component) {
                    let set =
                        component_sets::of_component(&self.catalog, &self.dataplane, &component)
                            .await?;
                    sets.0.insert(component.clone(), set);
                }
                let count = match (&version, sets.0.get(&component)) {
                    (None, _) => Ok(0),
                    (Some(v), Some(set)) => set.position(v).map(|i| i + 1).ok_or_else(|| {
                        format!(
                            "the catalog has the tenant at {v} of component {component}, which this server does not know"
                        )
                    }),
                    (Some(_), None) => Err(format!("component {component} is not registered")),
                };
                tenant_counts = match (tenant_counts, count) {
                    (Ok(mut all), Ok(n)) => {
                        all.push((component, n));
                        Ok(all)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
            }
            counts.push(tenant_counts);
        }
        Ok(counts)
    }

    /// Checks again, against its new versions, a tenant found drifted whose catalog mirror has
    /// moved since the page was read: one migrated between the read of the catalog and the read
    /// of its storage would otherwise be reported drifted (its storage ahead of the mirror read).
    /// Drift is rare, so this costs a look-up in the catalog only now and then.
    async fn recheck_moved(
        &self,
        page: &[Tenant],
        counts: &[Result<Counts, String>],
        sets: &mut Sets,
        checked: &mut [(TenantId, TenantDrift)],
    ) -> Result<(), Error> {
        for ((tenant, before), (_, drift)) in page.iter().zip(counts).zip(checked.iter_mut()) {
            if !drift.drifted() || tenant.isolation == Isolation::Shared {
                continue;
            }
            let now = self.counts(std::slice::from_ref(tenant), sets).await?;
            let Some(now) = now.into_iter().next() else {
                continue;
            };
            if &now == before {
                continue;
            }
            drift.outcome = match now {
                Ok(now) => {
                    let applied = applied(&now, sets);
                    self.checker
                        .check(&storage_of(tenant), &applied)
                        .await
                        .map(finding)
                        .map_err(|e| e.to_string())
                }
                Err(error) => Err(error),
            };
        }
        Ok(())
    }

    /// Checks one page of tenants: SCHEMA and DATABASE tenants each, SHARED tenants' schema
    /// once per run and version.
    async fn check_page(
        &self,
        page: &[Tenant],
        counts: &[Result<Counts, String>],
        sets: &Sets,
        shared: &mut HashMap<(String, Counts), Result<Checked, String>>,
    ) -> Vec<(TenantId, TenantDrift)> {
        let mut answers: Vec<Option<Result<Checked, String>>> = Vec::with_capacity(page.len());
        // Index into `page` of each item to check, with its shared-schema key if SHARED.
        let mut to_check: Vec<(usize, Option<(String, Counts)>)> = Vec::new();
        let mut items: Vec<(Storage, Vec<Applied<'_>>)> = Vec::new();
        for (i, (tenant, count)) in page.iter().zip(counts).enumerate() {
            let count = match count {
                Ok(count) => count,
                Err(error) => {
                    answers.push(Some(Err(error.clone())));
                    continue;
                }
            };
            let key = (tenant.isolation == Isolation::Shared).then(|| {
                (
                    tenant.schema_name.clone().unwrap_or_default(),
                    count.clone(),
                )
            });
            if let Some(key) = &key {
                if let Some(found) = shared.get(key) {
                    answers.push(Some(found.clone()));
                    continue;
                }
                // Checked once: later tenants of this page wait for its finding.
                if to_check.iter().any(|(_, k)| k.as_ref() == Some(key)) {
                    answers.push(None);
                    continue;
                }
            }
            answers.push(None);
            to_check.push((i, key));
            items.push((storage_of(tenant), applied(count, sets)));
        }
        let found = self.checker.check_many(&items).await;
        for ((i, key), outcome) in to_check.into_iter().zip(found) {
            let outcome = outcome.map(finding).map_err(|e| e.to_string());
            if let Some(key) = key {
                shared.insert(key, outcome.clone());
            }
            answers[i] = Some(outcome);
        }
        let check_time = self.catalog.now();
        page.iter()
            .zip(answers)
            .zip(counts)
            .map(|((tenant, answer), count)| {
                let outcome = answer.unwrap_or_else(|| {
                    let key = (
                        tenant.schema_name.clone().unwrap_or_default(),
                        count.clone().unwrap_or_default(),
                    );
                    shared
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| Err("the shared schema was not checked".into()))
                });
                (
                    tenant.id,
                    TenantDrift {
                        tenant: tenant.name(),
                        slug: tenant.slug.to_string(),
                        check_time,
                        outcome,
                    },
                )
            })
            .collect()
    }
}

fn finding(drift: Drift) -> Checked {
    Checked {
        differences: drift
            .differences
            .iter()
            .map(DriftDifference::from)
            .collect(),
        recorded: drift.differences.iter().map(recorded).collect(),
        expected_fingerprint: drift.expected,
        actual_fingerprint: drift.actual,
    }
}

/// The migrations `counts` says a tenant has, as the checker takes them.
fn applied<'a>(counts: &'a Counts, sets: &'a Sets) -> Vec<Applied<'a>> {
    counts
        .iter()
        .filter_map(|(component, count)| {
            sets.0.get(component).map(|migrations| Applied {
                set: component,
                migrations,
                count: *count,
            })
        })
        .collect()
}
