//! The storage_bytes gauge, measured where the tenant's data lives: on demand and by a job.

use chrono::TimeDelta;

use super::Quotas;
use super::decide::QuotaState;
use crate::domain::{Error, Metering, Quota, TenantState};
use crate::service::jobs::{Job, JobPasses, run_every};
use crate::service::provisioning::storage_of;
use crate::service::tenants::TenantRef;
use crate::store::{ListQuery, Usage};

/// The resource the storage measurement sets.
pub const STORAGE_BYTES: &str = "storage_bytes";

impl Quotas {
    /// Measures the tenant's storage now and records it as its storage_bytes gauge.
    pub async fn measure_storage(&self, target: &TenantRef) -> Result<QuotaState, Error> {
        let (tenant, quotas) = self.limits(target).await?;
        let bytes = self
            .inner
            .dataplane
            .storage_bytes(&storage_of(&tenant))
            .await?;
        self.set_gauge(tenant.id, STORAGE_BYTES, bytes).await?;
        let quota = quotas.get(STORAGE_BYTES).copied().unwrap_or(Quota {
            limit: -1,
            metering: Metering::Gauge,
        });
        Ok(QuotaState::new(
            STORAGE_BYTES,
            quota,
            Usage {
                window_start: 0,
                used: bytes,
            },
            self.now_secs(),
        ))
    }

    /// Measures every provisioned, live tenant's storage every `interval` by the server's
    /// clock, until `stop` completes. A tenant that cannot be measured is logged and skipped.
    pub async fn run_storage_job(
        self,
        interval: TimeDelta,
        passes: JobPasses,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let clock = self.inner.clock.clone();
        let pass = || self.measure_all();
        run_every(
            Job::StorageMeasure,
            &clock,
            interval,
            false,
            &passes,
            stop,
            pass,
        )
        .await;
    }

    /// Measures every provisioned, live tenant's storage (a pass of the storage job).
    async fn measure_all(&self) {
        let mut after = None;
        loop {
            let query = ListQuery {
                states: vec![TenantState::Active],
                after,
                limit: 200,
                ..ListQuery::default()
            };
            let page = match self.inner.catalog.list_tenants(&query).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "listing tenants to measure");
                    break;
                }
            };
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for tenant in &page {
                if let Err(e) = self.measure_storage(&TenantRef::Id(tenant.id)).await {
                    tracing::warn!(tenant = %tenant.id, error = %e, "measuring storage");
                }
            }
        }
    }
}
