//! Quotas: check, consume, report and read tenants' use of limited resources.
//!
//! Limits come from memory (the catalog cache: tenant, plan, overrides). Checks read usage from
//! memory too, refreshed from the catalog when older than [`USAGE_MAX_AGE`], so a replica sees
//! another's consumptions within that time. Consumptions are exact and durable. Tenants are
//! spread over a few lanes (see `lanes`); a lone consumption is one atomic upsert, and the
//! consumptions that arrive while a lane's batch is in the database form its next batch,
//! decided in one transaction under row locks (see `store::quota`). A caller is answered only
//! after its consumption committed, so a crash loses nothing that was admitted.
//!
//! Windows are taken from the server's [`Clock`], and a counter's stored window only ever
//! moves forward: a replica whose clock lags counts in the later window another replica has
//! already started, so no window's count is started twice.

mod batch;
mod decide;
mod lanes;
mod leases;
mod storage;

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use lru::LruCache;

pub use decide::QuotaState;
use decide::{Answer, Job};
use lanes::{Lanes, shard_of};
use leases::Leases;
pub use storage::STORAGE_BYTES;

use super::tenants::{RequestKey, TenantRef, cached_tenant};
use crate::clock::Clock;
use crate::dataplane::DataPlane;
use crate::domain::{
    Error, FieldViolation, Metering, Quota, Tenant, TenantId, TenantState, effective_quotas,
};
use crate::metrics::{self, QuotaOperation};
use crate::store::{Catalog, Usage, UsageKey};

/// A batch being decided, as a lane runs it.
type BatchFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Answer>, Error>> + Send>>;

/// How stale a check's view of usage may be.
pub const USAGE_MAX_AGE: Duration = Duration::from_millis(500);

struct Inner {
    catalog: Catalog,
    dataplane: Arc<DataPlane>,
    /// Where consumptions go to be decided in batches, per shard of tenants.
    lanes: Lanes,
    usage: Mutex<LruCache<UsageKey, (DateTime<Utc>, Usage)>>,
    leases: Leases,
    /// Where windows, and the ages of usage and leases, are taken from: the catalog's.
    clock: Clock,
}

#[derive(Clone)]
pub struct Quotas {
    inner: Arc<Inner>,
}

impl Quotas {
    /// `deadline` bounds how long a consumption waits for its batch (see `lanes`). The time
    /// is the catalog's clock's.
    pub fn new(
        catalog: Catalog,
        dataplane: Arc<DataPlane>,
        capacity: NonZeroUsize,
        deadline: Duration,
    ) -> Self {
        let clock = catalog.clock().clone();
        Self {
            inner: Arc::new(Inner {
                catalog,
                dataplane,
                lanes: Lanes::new(deadline),
                usage: Mutex::new(LruCache::new(capacity)),
                leases: Leases::new(clock.clone()),
                clock,
            }),
        }
    }

    /// Now, in Unix seconds, by the server's clock.
    pub(crate) fn now_secs(&self) -> i64 {
        self.inner.clock.unix_secs()
    }

    /// Whether usage read at `at` is recent enough for a check (see [`USAGE_MAX_AGE`]).
    fn usage_fresh(&self, at: DateTime<Utc>) -> bool {
        (self.inner.clock.now() - at)
            .to_std()
            .is_ok_and(|age| age < USAGE_MAX_AGE)
    }

    /// The tenant, if quotas may be used for it, and its limits.
    async fn limits(
        &self,
        target: &TenantRef,
    ) -> Result<(Arc<Tenant>, BTreeMap<String, Quota>), Error> {
        let tenant = cached_tenant(&self.inner.catalog, target).await?;
        if matches!(tenant.state, TenantState::Suspended | TenantState::Deleted) {
            return Err(Error::FailedPrecondition {
                subject: tenant.name(),
                message: format!(
                    "tenant {} is {}: its quotas are refused",
                    tenant.slug,
                    tenant.state.as_str()
                ),
            });
        }
        let plan = self.inner.catalog.cached_plan(tenant.plan.as_str()).await?;
        if plan.is_none() {
            tracing::warn!(tenant = %tenant.id, plan = %tenant.plan, "tenant's plan does not exist; only overrides limit it");
        }
        let quotas = effective_quotas(
            plan.as_deref().map_or(&[], |p| p.limits.as_slice()),
            &tenant.limit_overrides,
        );
        Ok((tenant, quotas))
    }

    fn quota_of(
        tenant: &Tenant,
        quotas: &BTreeMap<String, Quota>,
        resource: &str,
        field: &str,
    ) -> Result<Quota, FieldViolation> {
        quotas.get(resource).copied().ok_or_else(|| {
            FieldViolation::new(
                field,
                format!(
                    "'{resource}' is neither a well-known resource nor named by plan {}",
                    tenant.plan
                ),
            )
        })
    }

    /// Whether `amount` more of `resource` would be admitted now; changes nothing.
    pub async fn check(
        &self,
        target: &TenantRef,
        resource: &str,
        amount: i64,
    ) -> Result<(bool, QuotaState), Error> {
        if amount < 0 {
            return Err(Error::invalid("amount", "must not be negative"));
        }
        let (tenant, quotas) = self.limits(target).await?;
        let quota = Self::quota_of(&tenant, &quotas, resource, "resource")
            .map_err(|v| Error::InvalidArgument(vec![v]))?;
        let usage = self.cached_usage(tenant.id, resource).await?;
        let state = self.state(tenant.id, resource, quota, usage, self.now_secs());
        let admitted = quota.admits(state.used, amount);
        metrics::quota_decision(QuotaOperation::Check, resource, admitted);
        Ok((admitted, state))
    }

    /// A resource's state as callers see it: what the catalog counts, less what this replica
    /// holds in a lease and has not handed out.
    fn state(
        &self,
        tenant: TenantId,
        resource: &str,
        quota: Quota,
        stored: Usage,
        now: i64,
    ) -> QuotaState {
        let mut state = QuotaState::new(resource, quota, stored, now);
        let held = self
            .inner
            .leases
            .held(&(tenant, resource.to_owned()), state.window_start);
        state.used = (state.used - held).max(0);
        state
    }

    /// The stored usage last seen of a resource, without a round trip (zero when unknown).
    fn peek_usage(&self, key: &UsageKey) -> Usage {
        self.lock_usage()
            .peek(key)
            .map(|(_, usage)| *usage)
            .unwrap_or_default()
    }

    async fn cached_usage(&self, tenant: TenantId, resource: &str) -> Result<Usage, Error> {
        let key = (tenant, resource.to_owned());
        if let Some((at, usage)) = self.lock_usage().get(&key)
            && self.usage_fresh(*at)
        {
            return Ok(*usage);
        }
        let loaded = self.inner.catalog.usage(tenant).await?;
        let found = loaded.get(resource).copied().unwrap_or_default();
        let mut cache = self.lock_usage();
        let at = self.inner.clock.now();
        for (name, usage) in loaded {
            cache.put((tenant, name), (at, usage));
        }
        cache.put(key, (at, found));
        Ok(found)
    }

    fn lock_usage(&self) -> std::sync::MutexGuard<'_, LruCache<UsageKey, (DateTime<Utc>, Usage)>> {
        self.inner
            .usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Consumes every item or none; see the module documentation for how it stays exact.
    pub async fn consume(
        &self,
        target: &TenantRef,
        items: &[(String, i64)],
        key: Option<RequestKey>,
    ) -> Result<Vec<QuotaState>, Error> {
        let mut violations = Vec::new();
        if items.is_empty() {
            violations.push(FieldViolation::new(
                "items",
                "must name at least one resource",
            ));
        }
        let mut seen = HashSet::new();
        for (i, (resource, amount)) in items.iter().enumerate() {
            if *amount <= 0 {
                violations.push(FieldViolation::new(
                    format!("items[{i}].amount"),
                    "must be greater than 0",
                ));
            }
            if !seen.insert(resource.as_str()) {
                violations.push(FieldViolation::new(
                    format!("items[{i}].resource"),
                    format!("'{resource}' appears more than once"),
                ));
            }
        }
        Error::check(violations)?;
        let (tenant, quotas) = self.limits(target).await?;
        let mut violations = Vec::new();
        let mut job_items = Vec::with_capacity(items.len());
        for (i, (resource, amount)) in items.iter().enumerate() {
            match Self::quota_of(&tenant, &quotas, resource, &format!("items[{i}].resource")) {
                Ok(quota) => job_items.push((resource.clone(), quota, *amount)),
                Err(v) => violations.push(v),
            }
        }
        Error::check(violations)?;
        if key.is_none()
            && let [(resource, quota, amount)] = job_items.as_slice()
        {
            let now = self.now_secs();
            let window_start = quota.metering.window_start(now);
            let usage_key = (tenant.id, resource.clone());
            // A lease is good while what the catalog counts, the lease included, is within the
            // limit as it is now: a limit lowered since the lease was taken stops it.
            let stored = self.peek_usage(&usage_key);
            if quota.metering.window_secs().is_some()
                && (quota.unlimited() || stored.used <= quota.limit)
                && self.inner.leases.take(&usage_key, window_start, *amount)
            {
                metrics::quota_decision(QuotaOperation::Consume, resource, true);
                return Ok(vec![self.state(tenant.id, resource, *quota, stored, now)]);
            }
        }
        let job = Job {
            tenant: tenant.id,
            items: job_items,
            key,
        };
        let answer = self
            .inner
            .lanes
            .submit(shard_of(tenant.id), job, || self.batch_runner())
            .await;
        record_consumption(items, &answer);
        answer
    }

    /// What a lane runs its batches with. It holds the quotas weakly, so a lane does not keep
    /// a stopped server's catalog pool alive: once the last `Quotas` is gone, the lanes' senders
    /// go with it and each lane ends.
    fn batch_runner(&self) -> impl Fn(Vec<Job>) -> BatchFuture + Send + 'static {
        let inner = Arc::downgrade(&self.inner);
        move |jobs| {
            let inner = inner.clone();
            Box::pin(async move {
                match inner.upgrade() {
                    Some(inner) => Quotas { inner }.run_batch(&jobs).await,
                    None => Err(Error::Unavailable("the server is stopping".into())),
                }
            })
        }
    }

    /// Sets a gauge to a measured level.
    pub async fn report(
        &self,
        target: &TenantRef,
        resource: &str,
        value: i64,
    ) -> Result<QuotaState, Error> {
        if value < 0 {
            return Err(Error::invalid("value", "must not be negative"));
        }
        let (tenant, quotas) = self.limits(target).await?;
        let quota = Self::quota_of(&tenant, &quotas, resource, "resource")
            .map_err(|v| Error::InvalidArgument(vec![v]))?;
        if quota.metering != Metering::Gauge {
            return Err(Error::invalid(
                "resource",
                format!("'{resource}' is a COUNTER: it is consumed, not reported"),
            ));
        }
        self.set_gauge(tenant.id, resource, value).await?;
        Ok(QuotaState::new(
            resource,
            quota,
            Usage {
                window_start: 0,
                used: value,
            },
            self.now_secs(),
        ))
    }

    async fn set_gauge(&self, tenant: TenantId, resource: &str, value: i64) -> Result<(), Error> {
        self.inner
            .catalog
            .set_gauge(tenant, resource, value)
            .await?;
        self.lock_usage().put(
            (tenant, resource.to_owned()),
            (
                self.inner.clock.now(),
                Usage {
                    window_start: 0,
                    used: value,
                },
            ),
        );
        Ok(())
    }

    /// Every resource the tenant is limited on, read from the catalog.
    pub async fn usage(&self, target: &TenantRef) -> Result<(Arc<Tenant>, Vec<QuotaState>), Error> {
        let (tenant, quotas) = self.limits(target).await?;
        let stored = self.inner.catalog.usage(tenant.id).await?;
        let now = self.now_secs();
        let states = quotas
            .iter()
            .map(|(resource, quota)| {
                let usage = stored.get(resource).copied().unwrap_or_default();
                self.state(tenant.id, resource, *quota, usage, now)
            })
            .collect();
        Ok((tenant, states))
    }
}

/// Counts a consumption's decision: every item when admitted, the exhausted resources when
/// refused. Other refusals (a bad request id) decide nothing about quotas.
fn record_consumption(items: &[(String, i64)], answer: &Result<Vec<QuotaState>, Error>) {
    match answer {
        Ok(_) => {
            for (resource, _) in items {
                metrics::quota_decision(QuotaOperation::Consume, resource, true);
            }
        }
        Err(Error::QuotaExhausted { violations, .. }) => {
            for violation in violations {
                metrics::quota_decision(QuotaOperation::Consume, &violation.resource, false);
            }
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests;
