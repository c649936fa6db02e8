//! What a lane's batch does in the catalog: a lone consumption in one atomic upsert, the
//! single-resource consumptions without a request id in one statement, the rest one by one in
//! a transaction under row locks. Every usage it writes or reads back counts in the window the
//! catalog holds, which is never earlier than the one this replica's clock gives.

use std::collections::{BTreeMap, HashMap};

use super::Quotas;
use super::decide::{self, Answer, Job, METHOD, QuotaState};
use super::leases;
use crate::domain::{Error, Quota, TenantId};
use crate::store::{RequestRecord, Usage, UsageKey};

impl Quotas {
    /// Decides a lane's batch: one answer per job, in order.
    pub(super) async fn run_batch(&self, jobs: &[Job]) -> Result<Vec<Answer>, Error> {
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
        let now = self.now_secs();
        // Each key asks for its total and, while the quota is far from its end, a lease.
        let extras: HashMap<UsageKey, i64> = by_key
            .iter()
            .map(|(key, (quota, total, _))| {
                (
                    key.clone(),
                    leases::extra(*quota, self.peek_usage(key).used, *total),
                )
            })
            .collect();
        let rows: Vec<(UsageKey, i64, i64, i64)> = by_key
            .iter()
            .filter(|(_, (quota, total, _))| quota.unlimited() || *total <= quota.limit)
            .map(|(key, (quota, total, _))| {
                let extra = extras.get(key).copied().unwrap_or(0);
                (
                    key.clone(),
                    quota.metering.window_start(now),
                    total + extra,
                    quota.limit,
                )
            })
            .collect();
        if rows.len() < 2 {
            return Ok(());
        }
        let raised = self.inner.catalog.consume_many(&rows).await?;
        let at = self.inner.clock.now();
        for (key, after) in raised {
            let Some((quota, total, indices)) = by_key.get(&key) else {
                continue;
            };
            let extra = extras.get(&key).copied().unwrap_or(0);
            // The window the catalog counted in: this replica's, or a later one.
            let window_start = after.window_start;
            // Units leased before this batch are not handed out yet: callers do not see them.
            let held_before = self.inner.leases.held(&key, window_start);
            self.inner.leases.add(&key, window_start, extra);
            self.lock_usage().put(key.clone(), (at, after));
            // In arrival order, each consumption sees the ones before it.
            let mut used = after.used - extra - total - held_before;
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
        let claims: Vec<RequestRecord> = jobs
            .iter()
            .filter_map(|j| {
                j.key.as_ref().map(|k| RequestRecord {
                    request_id: k.id,
                    method: METHOD.to_owned(),
                    request_hash: k.request_hash.clone(),
                    resource_id: j.tenant.as_uuid(),
                    result: None,
                })
            })
            .collect();
        // Taken before the row locks are waited on: a later window that a batch ahead of this
        // one wrote meanwhile is kept (see `decide::current_usage`).
        let now = self.now_secs();
        let (written, answers) = self
            .inner
            .catalog
            .consume_batch(&keys, &claims, |locked, records| {
                let (write, answers) = decide::decide(jobs.iter().copied(), locked, records, now);
                let written = write.usage.clone();
                (write, (written, answers))
            })
            .await?;
        let at = self.inner.clock.now();
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
        let key = (tenant, resource.to_owned());
        let mut extra = leases::extra(quota, self.peek_usage(&key).used, amount);
        let mut attempts = 0;
        loop {
            let now = self.now_secs();
            let window_start = quota.metering.window_start(now);
            if let Some(usage) = catalog
                .consume_one(tenant, resource, window_start, amount + extra, quota.limit)
                .await?
            {
                // Leased in the window the catalog counted in, which may be later than ours.
                self.inner.leases.add(&key, usage.window_start, extra);
                self.lock_usage()
                    .put(key.clone(), (self.inner.clock.now(), usage));
                return Ok(Ok(vec![self.state(tenant, resource, quota, usage, now)]));
            }
            if extra > 0 {
                // The lease did not fit: the quota is nearer its end than last seen.
                extra = 0;
                continue;
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
}
