//! Quotas: check, consume, report and read tenants' use of limited resources.
//!
//! Limits come from memory (the catalog cache: tenant, plan, overrides). Checks read usage from
//! memory too, refreshed from the catalog when older than [`USAGE_MAX_AGE`], so a replica sees
//! another's consumptions within that time. Consumptions are exact and durable. Tenants are
//! spread over a few lanes; a lone consumption is one atomic upsert, and the consumptions that
//! arrive while a lane's batch is in the database form its next batch, decided in one
//! transaction under row locks (see `store::quota`). A caller is answered only after its
//! consumption committed, so a crash loses nothing that was admitted.

mod decide;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

pub use decide::QuotaState;
use decide::{Answer, Job};

use super::tenants::{RequestKey, TenantRef, cached_tenant};
use crate::dataplane::DataPlane;
use crate::domain::{
    Error, FieldViolation, Metering, Quota, Tenant, TenantId, TenantState, effective_quotas,
};
use crate::service::provisioning::storage_of;
use crate::store::{Catalog, ListQuery, Usage, UsageKey};

/// How stale a check's view of usage may be.
pub const USAGE_MAX_AGE: Duration = Duration::from_millis(500);
/// Most consumptions decided in one transaction.
const MAX_BATCH: usize = 512;
/// Lanes consumptions are batched in: a tenant always uses the same one, so its consumptions
/// are decided in arrival order, and this many batches can be in the database at once.
const SHARDS: usize = 2;

fn shard_of(tenant: TenantId) -> usize {
    (tenant.as_uuid().as_u128() % SHARDS as u128) as usize
}
/// The resource the storage measurement sets.
pub const STORAGE_BYTES: &str = "storage_bytes";

/// Consumptions waiting for a tenant's next batch, each with where its answer goes.
type Waiting = Vec<(Job, tokio::sync::oneshot::Sender<Answer>)>;

struct Inner {
    catalog: Catalog,
    dataplane: Arc<DataPlane>,
    /// Tenants with a batch in flight, and the consumptions waiting for the next one.
    /// Per shard of tenants: consumptions waiting while the shard has a batch in flight.
    lanes: Mutex<HashMap<usize, Waiting>>,
    usage: Mutex<LruCache<UsageKey, (Instant, Usage)>>,
}

#[derive(Clone)]
pub struct Quotas {
    inner: Arc<Inner>,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Quotas {
    pub fn new(catalog: Catalog, dataplane: Arc<DataPlane>, capacity: NonZeroUsize) -> Self {
        Self {
            inner: Arc::new(Inner {
                catalog,
                dataplane,
                lanes: Mutex::new(HashMap::new()),
                usage: Mutex::new(LruCache::new(capacity)),
            }),
        }
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
        let plan = self.inner.catalog.cached_plan_limits(&tenant.plan).await?;
        if plan.is_none() {
            tracing::warn!(tenant = %tenant.id, plan = %tenant.plan, "tenant's plan does not exist; only overrides limit it");
        }
        let quotas = effective_quotas(
            plan.as_deref().map_or(&[], |p| p.as_slice()),
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
        let state = QuotaState::new(resource, quota, usage, now_secs());
        Ok((quota.admits(state.used, amount), state))
    }

    async fn cached_usage(&self, tenant: TenantId, resource: &str) -> Result<Usage, Error> {
        let key = (tenant, resource.to_owned());
        if let Some((at, usage)) = self.lock_usage().get(&key)
            && at.elapsed() < USAGE_MAX_AGE
        {
            return Ok(*usage);
        }
        let loaded = self.inner.catalog.usage(tenant).await?;
        let found = loaded.get(resource).copied().unwrap_or_default();
        let mut cache = self.lock_usage();
        let at = Instant::now();
        for (name, usage) in loaded {
            cache.put((tenant, name), (at, usage));
        }
        cache.put(key, (at, found));
        Ok(found)
    }

    fn lock_usage(&self) -> std::sync::MutexGuard<'_, LruCache<UsageKey, (Instant, Usage)>> {
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
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            tenant: tenant.id,
            items: job_items,
            key,
        };
        let shard = shard_of(tenant.id);
        let start = {
            let mut lanes = self
                .inner
                .lanes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match lanes.get_mut(&shard) {
                Some(waiting) => {
                    waiting.push((job, reply));
                    false
                }
                None => {
                    lanes.insert(shard, vec![(job, reply)]);
                    true
                }
            }
        };
        if start {
            // A task of its own, so a caller that goes away cannot strand the others.
            tokio::spawn(self.clone().drain_lane(shard));
        }
        answer
            .await
            .map_err(|_| Error::Internal("the consumption batch ended without an answer".into()))?
    }

    /// Runs batches for a shard until nobody is waiting.
    async fn drain_lane(self, shard: usize) {
        loop {
            let batch = {
                let mut lanes = self
                    .inner
                    .lanes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let Some(waiting) = lanes.get_mut(&shard) else {
                    return;
                };
                if waiting.is_empty() {
                    lanes.remove(&shard);
                    return;
                }
                let take = waiting.len().min(MAX_BATCH);
                waiting.drain(..take).collect::<Vec<_>>()
            };
            let (jobs, replies): (Vec<Job>, Vec<_>) = batch.into_iter().unzip();
            match self.run_batch(&jobs).await {
                Ok(answers) => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    async fn run_batch(&self, jobs: &[Job]) -> Result<Vec<Answer>, Error> {
        if let [job] = jobs
            && let [(resource, quota, amount)] = job.items.as_slice()
            && job.key.is_none()
        {
            return Ok(vec![
                self.consume_one(job.tenant, resource, *quota, *amount)
                    .await?,
            ]);
        }
        let mut answers: Vec<Option<Answer>> = jobs.iter().map(|_| None).collect();
        self.consume_simple(jobs, &mut answers).await?;
        let rest: Vec<usize> = (0..jobs.len()).filter(|i| answers[*i].is_none()).collect();
        if !rest.is_empty() {
            let rest_jobs: Vec<&Job> = rest.iter().map(|i| &jobs[*i]).collect();
            for (i, answer) in rest
                .into_iter()
                .zip(self.decide_in_transaction(&rest_jobs).await?)
            {
                answers[i] = Some(answer);
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| Err(Error::Internal("a consumption went undecided".into())))
            })
            .collect())
    }

    /// Admits the batch's single-resource consumptions without a request id in one statement
    /// (see `Catalog::consume_many`), all of a tenant's resource at once; leaves the others,
    /// and any that statement did not raise, unanswered.
    async fn consume_simple(
        &self,
        jobs: &[Job],
        answers: &mut [Option<Answer>],
    ) -> Result<(), Error> {
        let mut by_key: HashMap<UsageKey, (Quota, i64, Vec<usize>)> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            if let [(resource, quota, amount)] = job.items.as_slice()
                && job.key.is_none()
            {
                let entry =
                    by_key
                        .entry((job.tenant, resource.clone()))
                        .or_insert((*quota, 0, Vec::new()));
                entry.1 = entry.1.saturating_add(*amount);
                entry.2.push(i);
            }
        }
        let now = now_secs();
        let rows: Vec<(UsageKey, i64, i64, i64)> = by_key
            .iter()
            .filter(|(_, (quota, total, _))| quota.unlimited() || *total <= quota.limit)
            .map(|(key, (quota, total, _))| {
                (
                    key.clone(),
                    quota.metering.window_start(now),
                    *total,
                    quota.limit,
                )
            })
            .collect();
        if rows.len() < 2 {
            return Ok(());
        }
        let raised = self.inner.catalog.consume_many(&rows).await?;
        let at = Instant::now();
        for (key, used_after) in raised {
            let Some((quota, total, indices)) = by_key.get(&key) else {
                continue;
            };
            let window_start = quota.metering.window_start(now);
            self.lock_usage().put(
                key.clone(),
                (
                    at,
                    Usage {
                        window_start,
                        used: used_after,
                    },
                ),
            );
            // In arrival order, each consumption sees the ones before it.
            let mut used = used_after - total;
            for &i in indices {
                if let [(resource, _, amount)] = jobs[i].items.as_slice() {
                    used += amount;
                    let usage = Usage { window_start, used };
                    answers[i] = Some(Ok(vec![QuotaState::new(resource, *quota, usage, now)]));
                }
            }
        }
        Ok(())
    }

    /// Decides consumptions one by one in a transaction under row locks.
    async fn decide_in_transaction(&self, jobs: &[&Job]) -> Result<Vec<Answer>, Error> {
        let keys: Vec<UsageKey> = jobs
            .iter()
            .flat_map(|j| j.items.iter().map(|(r, ..)| (j.tenant, r.clone())))
            .collect();
        let request_ids: Vec<uuid::Uuid> = jobs
            .iter()
            .filter_map(|j| j.key.as_ref().map(|k| k.id))
            .collect();
        let now = now_secs();
        let (written, answers) = self
            .inner
            .catalog
            .consume_batch(&keys, &request_ids, |locked, records| {
                let (write, answers) = decide::decide(jobs.iter().copied(), locked, records, now);
                let written = write.usage.clone();
                (write, (written, answers))
            })
            .await?;
        let at = Instant::now();
        let mut cache = self.lock_usage();
        for (key, usage) in written {
            cache.put(key, (at, usage));
        }
        Ok(answers)
    }

    /// One item without a request id, in one statement (see `Catalog::consume_one`).
    async fn consume_one(
        &self,
        tenant: TenantId,
        resource: &str,
        quota: Quota,
        amount: i64,
    ) -> Result<Answer, Error> {
        let catalog = &self.inner.catalog;
        let mut attempts = 0;
        loop {
            let now = now_secs();
            let window_start = quota.metering.window_start(now);
            if let Some(usage) = catalog
                .consume_one(tenant, resource, window_start, amount, quota.limit)
                .await?
            {
                self.lock_usage()
                    .put((tenant, resource.to_owned()), (Instant::now(), usage));
                return Ok(Ok(vec![QuotaState::new(resource, quota, usage, now)]));
            }
            // Refused: read what is used, to say why. If the level fell meanwhile (a gauge
            // reported lower, a window ended), the read would admit it: try again instead.
            let stored = catalog.usage(tenant).await?;
            let locked = stored
                .get(resource)
                .map(|u| BTreeMap::from([((tenant, resource.to_owned()), *u)]))
                .unwrap_or_default();
            let job = Job {
                tenant,
                items: vec![(resource.to_owned(), quota, amount)],
                key: None,
            };
            let (_, mut answers) = decide::decide(&[job], &locked, &HashMap::new(), now);
            attempts += 1;
            match answers.pop() {
                Some(Err(refusal)) => return Ok(Err(refusal)),
                _ if attempts >= 3 => {
                    return Err(Error::Aborted {
                        reason: "CONCURRENT_UPDATE",
                        message: format!("the usage of {resource} kept changing; retry"),
                    });
                }
                _ => {}
            }
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
            now_secs(),
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
                Instant::now(),
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
        let now = now_secs();
        let states = quotas
            .iter()
            .map(|(resource, quota)| {
                QuotaState::new(
                    resource,
                    *quota,
                    stored.get(resource).copied().unwrap_or_default(),
                    now,
                )
            })
            .collect();
        Ok((tenant, states))
    }

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
            now_secs(),
        ))
    }

    /// Measures every provisioned, live tenant's storage, then again every `interval`, until
    /// `stop` completes. A tenant that cannot be measured is logged and skipped.
    pub async fn run_storage_job(
        self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
            }
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
}

#[cfg(test)]
mod tests;
