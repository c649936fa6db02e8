//! The series of one server, read when Prometheus scrapes: its connection pools (from memory),
//! tenants by state, drifted tenants and the progress of active rollouts (from the catalog, at most once per
//! [`CATALOG_REFRESH`] however often it is scraped).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::{
    MetricType, counter::ConstCounter, family::Family, gauge::ConstGauge, gauge::Gauge,
};
use prometheus_client::registry::Registry;

use crate::dataplane::DataPlane;
use crate::domain::{Error, TargetState, TenantState};
use crate::store::{Catalog, PoolUsage};

/// How long catalog counts are reused: several Prometheus servers scraping every few seconds
/// cost the catalog one GROUP BY over the targets of the active rollouts and one over the
/// tenants per interval.
pub const CATALOG_REFRESH: Duration = Duration::from_secs(10);

const TENANT_STATES: [TenantState; 5] = [
    TenantState::Provisioning,
    TenantState::Active,
    TenantState::Suspended,
    TenantState::Deleted,
    TenantState::Failed,
];

const TARGET_STATES: [TargetState; 5] = [
    TargetState::Pending,
    TargetState::Running,
    TargetState::Migrated,
    TargetState::Skipped,
    TargetState::Failed,
];

/// The rollout (its id) and a target state.
type RolloutLabels = (
    [(&'static str, String); 1],
    [(&'static str, &'static str); 1],
);

/// The gauges read from the catalog.
pub(super) struct CatalogSeries {
    catalog: Catalog,
    tenants: Family<[(&'static str, &'static str); 1], Gauge>,
    /// Active rollouts only, so their number stays small; a rollout's series go when it ends.
    rollout_targets: Family<RolloutLabels, Gauge>,
    rollouts_active: Gauge,
    /// Tenants whose last drift check found their storage drifted (recorded in the catalog by
    /// any replica's check).
    drifted_tenants: Gauge,
    /// When the gauges were last read, by the catalog's clock; a scrape that finds them fresh
    /// does not wait.
    refreshed: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

impl CatalogSeries {
    pub(super) fn new(
        catalog: Catalog,
        dataplane: Arc<DataPlane>,
        registry: &mut Registry,
    ) -> Self {
        let series = Self {
            catalog: catalog.clone(),
            tenants: Family::default(),
            rollout_targets: Family::default(),
            rollouts_active: Gauge::default(),
            drifted_tenants: Gauge::default(),
            refreshed: tokio::sync::Mutex::new(None),
        };
        registry.register(
            "tenant_plane_tenants",
            "Tenants in the catalog, by state",
            series.tenants.clone(),
        );
        registry.register(
            "tenant_plane_rollout_targets",
            "Targets of each active rollout, by state",
            series.rollout_targets.clone(),
        );
        registry.register(
            "tenant_plane_rollouts_active",
            "Rollouts pending or running",
            series.rollouts_active.clone(),
        );
        registry.register(
            "tenant_plane_drifted_tenants",
            "Tenants (not deleted) whose last drift check found their storage differing from what their applied migrations produce",
            series.drifted_tenants.clone(),
        );
        registry.register_collector(Box::new(Pools { catalog, dataplane }));
        series
    }

    /// Reads the catalog again if the last reading is older than [`CATALOG_REFRESH`]. On an
    /// error the previous values stay (a scrape answers what is known rather than fail).
    pub(super) async fn refresh(&self) {
        let mut refreshed = self.refreshed.lock().await;
        let now = self.catalog.now();
        if refreshed.is_some_and(|at| (now - at).to_std().is_ok_and(|age| age < CATALOG_REFRESH)) {
            return;
        }
        match self.read().await {
            Ok(()) => *refreshed = Some(now),
            Err(error) => tracing::warn!(%error, "reading the catalog for /metrics"),
        }
    }

    async fn read(&self) -> Result<(), Error> {
        let counts = self.catalog.tenants_by_state().await?;
        for state in TENANT_STATES {
            let n = counts
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            self.tenants
                .get_or_create(&[("state", state.as_str())])
                .set(n);
        }
        self.drifted_tenants
            .set(self.catalog.drifted_tenants().await?);
        let active = self.catalog.active_rollouts().await?;
        let progress = self.catalog.rollouts_counts(&active).await?;
        self.rollouts_active
            .set(i64::try_from(active.len()).unwrap_or(i64::MAX));
        self.rollout_targets.clear();
        for id in active {
            let counts = progress.get(&id).copied().unwrap_or_default();
            let id = id.to_string();
            for state in TARGET_STATES {
                self.rollout_targets
                    .get_or_create(&([("rollout", id.clone())], [("state", state.as_str())]))
                    .set(i64::from(counts.get(state)));
            }
        }
        Ok(())
    }
}

/// The catalog pool and the tenant-database connections, read from memory at each scrape.
#[derive(Clone)]
struct Pools {
    catalog: Catalog,
    dataplane: Arc<DataPlane>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pools")
    }
}

impl Collector for Pools {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools: [(&str, PoolUsage); 3] = [
            ("catalog", self.catalog.pool_usage()),
            ("rollouts", self.catalog.rollout_pool_usage()),
            ("tenant_databases", self.dataplane.tenant_connections()),
        ];
        let mut connections = encoder.encode_descriptor(
            "tenant_plane_db_pool_connections",
            "Open database connections, by pool and state (in_use or idle).",
            None,
            MetricType::Gauge,
        )?;
        for (pool, usage) in pools {
            for (state, n) in [("in_use", usage.in_use()), ("idle", usage.idle)] {
                ConstGauge::new(i64::from(n))
                    .encode(connections.encode_family(&[("pool", pool), ("state", state)])?)?;
            }
        }
        let mut max = encoder.encode_descriptor(
            "tenant_plane_db_pool_max_connections",
            "The most connections a pool opens.",
            None,
            MetricType::Gauge,
        )?;
        for (pool, usage) in pools {
            ConstGauge::new(i64::from(usage.max)).encode(max.encode_family(&[("pool", pool)])?)?;
        }
        let tally = self.catalog.notice_tally();
        let mut notices = encoder.encode_descriptor(
            "tenant_plane_catalog_notices",
            "Rows named by the catalog's change notices this replica received, by outcome \
             (applied: found changed; unchanged: found as before, e.g. a repeated or forged \
             notice), and payloads it did not recognise (unrecognised).",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in [
            ("applied", tally.applied),
            ("unchanged", tally.unchanged),
            ("unrecognised", tally.unrecognised),
        ] {
            ConstCounter::new(n).encode(notices.encode_family(&[("outcome", outcome)])?)?;
        }
        Ok(())
    }
}
