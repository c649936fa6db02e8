//! The decision of a consumption batch, given the locked usage rows: pure, so it is tested
//! without a database.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Error, Quota, QuotaViolation, TenantId};
use crate::service::tenants::RequestKey;
use crate::store::{BatchWrite, RequestRecord, Usage, UsageKey};

/// The method name request ids of consumptions are recorded under.
pub(super) const METHOD: &str = "ConsumeQuota";

/// One resource's quota state, as answered to callers (and kept for request-id replays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaState {
    pub resource: String,
    /// -1 is unlimited.
    pub limit: i64,
    /// The counter's window; `None` for a gauge.
    pub window_secs: Option<i64>,
    pub used: i64,
    /// Unix seconds at which the current window began; 0 for a gauge.
    pub window_start: i64,
}

impl QuotaState {
    pub fn new(resource: &str, quota: Quota, usage: Usage, now: i64) -> Self {
        let current = current_usage(quota, usage, now);
        Self {
            resource: resource.to_owned(),
            limit: quota.limit,
            window_secs: quota.metering.window_secs(),
            used: current.used,
            window_start: current.window_start,
        }
    }

    pub fn remaining(&self) -> i64 {
        if self.limit < 0 {
            -1
        } else {
            (self.limit - self.used).max(0)
        }
    }

    /// Unix seconds at which the window ends; `None` for a gauge.
    pub fn reset_time(&self) -> Option<i64> {
        self.window_secs.map(|w| self.window_start + w)
    }
}

/// The usage that counts now: a counter from an earlier window starts again from zero. A
/// stored window later than `now`'s is kept as it is: a replica whose clock runs ahead, or a
/// batch that took the time before waiting on the row's lock, has already moved the counter on,
/// and going back to the earlier window would count the later one from zero again. Windows only
/// ever move forward.
pub(super) fn current_usage(quota: Quota, stored: Usage, now: i64) -> Usage {
    let start = quota.metering.window_start(now);
    if quota.metering.window_secs().is_some() && stored.window_start < start {
        Usage {
            window_start: start,
            used: 0,
        }
    } else {
        stored
    }
}

/// A consumption waiting for its batch.
pub(super) struct Job {
    pub tenant: TenantId,
    /// Resource, its quota, amount; in request order.
    pub items: Vec<(String, Quota, i64)>,
    pub key: Option<RequestKey>,
}

pub(super) type Answer = Result<Vec<QuotaState>, Error>;

/// Decides every job in order, each all or nothing, against the locked usage.
pub(super) fn decide<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    locked: &BTreeMap<UsageKey, Usage>,
    records: &HashMap<Uuid, RequestRecord>,
    now: i64,
) -> (BatchWrite, Vec<Answer>) {
    let mut usage: HashMap<UsageKey, Usage> = HashMap::new();
    let mut changed: BTreeMap<UsageKey, Usage> = BTreeMap::new();
    let mut answered: HashMap<Uuid, (String, serde_json::Value)> = records
        .values()
        .filter_map(|r| Some((r.request_id, (r.request_hash.clone(), r.result.clone()?))))
        .collect();
    let mut write = BatchWrite::default();
    let mut answers = Vec::new();
    for job in jobs {
        let tenant = job.tenant;
        let load = |resource: &str, quota: Quota| {
            let key = (tenant, resource.to_owned());
            current_usage(quota, locked.get(&key).copied().unwrap_or_default(), now)
        };
        if let Some(key) = &job.key
            && let Some((hash, first)) = answered.get(&key.id)
        {
            answers.push(if *hash == key.request_hash {
                serde_json::from_value(first.clone()).map_err(|e| {
                    Error::Internal(format!("stored answer of request {}: {e}", key.id))
                })
            } else {
                Err(Error::invalid(
                    "request_id",
                    "was already used for a different request",
                ))
            });
            continue;
        }
        if let Some(key) = &job.key
            && records
                .get(&key.id)
                .is_some_and(|r| r.method != METHOD || r.result.is_none())
        {
            answers.push(Err(Error::invalid(
                "request_id",
                "was already used for a different request",
            )));
            continue;
        }
        let mut violations = Vec::new();
        let mut retry_after: Option<i64> = None;
        for (resource, quota, amount) in &job.items {
            let now_used = *usage
                .entry((tenant, resource.clone()))
                .or_insert_with(|| load(resource, *quota));
            if !quota.admits(now_used.used, *amount) {
                violations.push(QuotaViolation {
                    resource: resource.clone(),
                    description: format!(
                        "{resource}: limit {}, used {}, requested {amount}",
                        quota.limit, now_used.used
                    ),
                });
                if let Some(w) = quota.metering.window_secs() {
                    let wait = now_used.window_start + w - now;
                    retry_after = Some(retry_after.map_or(wait, |r| r.min(wait)));
                }
            }
        }
        if !violations.is_empty() {
            answers.push(Err(Error::QuotaExhausted {
                subject: format!("tenants/{tenant}"),
                violations,
                retry_after: retry_after.map(|s| Duration::from_secs(s.max(1).unsigned_abs())),
            }));
            continue;
        }
        let mut states = Vec::with_capacity(job.items.len());
        for (resource, quota, amount) in &job.items {
            let entry = usage
                .entry((tenant, resource.clone()))
                .or_insert_with(|| load(resource, *quota));
            entry.used = entry.used.saturating_add(*amount);
            changed.insert((tenant, resource.clone()), *entry);
            states.push(QuotaState::new(resource, *quota, *entry, now));
        }
        if let Some(key) = &job.key
            && let Ok(result) = serde_json::to_value(&states)
        {
            answered.insert(key.id, (key.request_hash.clone(), result.clone()));
            write.records.push(RequestRecord {
                request_id: key.id,
                method: METHOD.to_owned(),
                request_hash: key.request_hash.clone(),
                resource_id: tenant.as_uuid(),
                result: Some(result),
            });
        }
        answers.push(Ok(states));
    }
    write.usage = changed.into_iter().collect();
    (write, answers)
}
