//! The fleet view: per component, how many live tenants are at each version, how many are
//! behind its latest version, how many failed their last run and how many drifted — answered
//! from the catalog alone (its mirror of every tenant's versions and its record of drift
//! checks), never by opening a tenant.

use std::sync::Arc;

use crate::dataplane::DataPlane;
use crate::domain::Error;
use crate::domain::SAMPLE;
use crate::store::Catalog;

/// One component across the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentFleet {
    pub component: String,
    pub latest_version: Option<String>,
    /// Tenants at each version, in the component's order; `None`: none applied. Versions no
    /// tenant is at are left out.
    pub versions: Vec<(Option<String>, i64)>,
    /// Live tenants whose plan lists the component.
    pub tenants: i64,
    /// Of those, how many are not at the latest version (the component new to them included).
    pub pending: i64,
    /// Tenants whose last run of the component failed.
    pub failed: i64,
    /// Tenants whose last drift check found a difference in a table of the component.
    pub drifted: i64,
}

/// The fleet view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetStatus {
    /// Live tenants: provisioned and not deleted.
    pub tenants: i64,
    pub components: Vec<ComponentFleet>,
    /// Live tenants whose last drift check found their storage drifted.
    pub drifted: i64,
}

#[derive(Clone)]
pub struct Fleet {
    catalog: Catalog,
    dataplane: Arc<DataPlane>,
}

impl Fleet {
    pub fn new(catalog: Catalog, dataplane: Arc<DataPlane>) -> Self {
        Self { catalog, dataplane }
    }

    pub async fn status(&self) -> Result<FleetStatus, Error> {
        let counts = self.catalog.fleet_counts().await?;
        let mut orders = self.catalog.pushed_versions().await?;
        orders.insert(
            SAMPLE.to_owned(),
            self.dataplane.migrations().names().to_vec(),
        );
        let mut components = Vec::with_capacity(orders.len());
        for (component, order) in orders {
            let latest = order.last().cloned();
            let tenants: i64 = counts
                .per_plan
                .iter()
                .filter(|(plan, _)| {
                    counts
                        .plan_components
                        .get(*plan)
                        .is_some_and(|listed| listed.contains(&component))
                })
                .map(|(_, n)| n)
                .sum();
            let mut versions: Vec<(Option<String>, i64)> = Vec::new();
            let (mut failed, mut drifted) = (0, 0);
            let mut at_latest = 0;
            for count in counts
                .per_version
                .iter()
                .filter(|c| c.component == component)
            {
                failed += count.failed;
                drifted += count.drifted;
                if count.version.is_some() && count.version == latest {
                    at_latest += count.tenants;
                }
                versions.push((count.version.clone(), count.tenants));
            }
            let position = |v: &Option<String>| {
                v.as_ref()
                    .and_then(|v| order.iter().position(|o| o == v))
                    .map_or(0, |p| p + 1)
            };
            versions.sort_by_key(|(v, _)| position(v));
            components.push(ComponentFleet {
                component,
                pending: (tenants - at_latest).max(0),
                latest_version: latest,
                versions,
                tenants,
                failed,
                drifted,
            });
        }
        Ok(FleetStatus {
            tenants: counts.per_plan.values().sum(),
            components,
            drifted: counts.drifted,
        })
    }
}
