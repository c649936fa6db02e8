//! The catalog's memory: tenants, API keys and plan limits as last read, so the hot path
//! (ResolveTenant, quota decisions, Envoy's checks) does not query the database per call.
//!
//! The catalog stays the authority. Writes made through this process drop what they changed
//! before they return; on PostgreSQL, triggers on `tenants`, `plans` and `api_keys` NOTIFY every
//! replica ([`Catalog::follow_changes`]), which re-reads the rows named and drops the entries
//! that changed within milliseconds (see `store::notices`). If the
//! notification connection is lost, everything is dropped, since changes may have been missed.
//! Absences are remembered too (an unknown slug, a wrong API key), so a flood of bad keys does not
//! reach the database either. As a last line, an entry is reloaded after [`MAX_AGE`] by the
//! catalog's clock (`crate::clock`), so a test ages entries by moving that clock.
//!
//! A reader that loaded a row before a write committed must not put it back after the write
//! dropped it: every drop bumps an epoch, and a load started under an older epoch is not kept.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lru::LruCache;

use crate::clock::Clock;
use crate::domain::{ApiKey, PlanLimit, Tenant, TenantId};

/// What is kept of a plan: what quota decisions read (its limits) and what provisioning reads
/// (the components its tenants get, in its order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRules {
    pub limits: Vec<PlanLimit>,
    pub components: Vec<String>,
}

/// How long an entry is trusted without a notification.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// A changed catalog row, as named by the change notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Tenant {
        id: TenantId,
        slug: String,
    },
    /// A change to an existing tenant's row (its slug, which never changes, still names it).
    TenantRow(TenantId),
    Plan(String),
    ApiKey {
        secret_hash: String,
    },
    /// Anything may have changed.
    All,
}

struct Entry<V> {
    value: V,
    loaded: DateTime<Utc>,
}

struct Inner {
    epoch: u64,
    tenants: LruCache<TenantId, Entry<Option<Arc<Tenant>>>>,
    /// Each tenant as the change notices last showed it (see [`CatalogCache::settle_tenant`]):
    /// kept apart from `tenants`, which the hot path refills on its own.
    noticed: LruCache<TenantId, Option<Arc<Tenant>>>,
    slugs: LruCache<String, Entry<Option<TenantId>>>,
    keys: LruCache<String, Entry<Option<Arc<ApiKey>>>>,
    plans: LruCache<String, Entry<Option<Arc<PlanRules>>>>,
}

/// See the module documentation.
pub struct CatalogCache {
    inner: Mutex<Inner>,
    /// What the change notices this process received came to.
    pub(super) notices: super::notices::NoticeCounts,
    /// What entries' ages are read by.
    clock: Clock,
}

/// The epoch a load started in; hand it back with the loaded value.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// The entry under `key`, unless it is [`MAX_AGE`] old at `now` (or loaded after `now`, by a
/// clock since set back).
fn fresh<K, Q, V>(cache: &mut LruCache<K, Entry<V>>, key: &Q, now: DateTime<Utc>) -> Option<V>
where
    K: Hash + Eq + std::borrow::Borrow<Q>,
    Q: Hash + Eq + ?Sized,
    V: Clone,
{
    match cache.get(key) {
        Some(e) if (now - e.loaded).to_std().is_ok_and(|age| age < MAX_AGE) => {
            Some(e.value.clone())
        }
        _ => None,
    }
}

impl CatalogCache {
    /// A cache holding at most `capacity` tenants (and as many slugs and API keys), whose
    /// entries age by `clock`.
    pub fn new(capacity: NonZeroUsize, clock: Clock) -> Self {
        let plans = NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Mutex::new(Inner {
                epoch: 0,
                tenants: LruCache::new(capacity),
                noticed: LruCache::new(capacity),
                slugs: LruCache::new(capacity),
                keys: LruCache::new(capacity),
                plans: LruCache::new(plans),
            }),
            notices: Default::default(),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent with the catalog
        // in a harmful way (they only ever drop or add whole entries), so keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().epoch)
    }

    pub fn tenant(&self, id: TenantId) -> Option<Option<Arc<Tenant>>> {
        fresh(&mut self.lock().tenants, &id, self.clock.now())
    }

    pub fn slug(&self, slug: &str) -> Option<Option<TenantId>> {
        fresh(&mut self.lock().slugs, slug, self.clock.now())
    }

    pub fn api_key(&self, secret_hash: &str) -> Option<Option<Arc<ApiKey>>> {
        fresh(&mut self.lock().keys, secret_hash, self.clock.now())
    }

    pub fn plan(&self, id: &str) -> Option<Option<Arc<PlanRules>>> {
        fresh(&mut self.lock().plans, id, self.clock.now())
    }

    /// Keeps a loaded tenant (or its absence, under the key it was looked up by).
    pub fn put_tenant(&self, ticket: Ticket, by_slug: Option<&str>, tenant: Option<Arc<Tenant>>) {
        let mut inner = self.lock();
        if inner.epoch != ticket.0 {
            return;
        }
        let loaded = self.clock.now();
        match &tenant {
            Some(t) => {
                inner.slugs.put(
                    t.slug.as_str().to_owned(),
                    Entry {
                        value: Some(t.id),
                        loaded,
                    },
                );
                inner.tenants.put(
                    t.id,
                    Entry {
                        value: tenant.clone(),
                        loaded,
                    },
                );
            }
            None => {
                if let Some(slug) = by_slug {
                    inner.slugs.put(
                        slug.to_owned(),
                        Entry {
                            value: None,
                            loaded,
                        },
                    );
                }
            }
        }
    }

    /// Remembers that no tenant has this id.
    pub fn put_missing_tenant(&self, ticket: Ticket, id: TenantId) {
        let mut inner = self.lock();
        if inner.epoch == ticket.0 {
            inner.tenants.put(
                id,
                Entry {
                    value: None,
                    loaded: self.clock.now(),
                },
            );
        }
    }

    pub fn put_api_key(&self, ticket: Ticket, secret_hash: &str, key: Option<Arc<ApiKey>>) {
        let mut inner = self.lock();
        if inner.epoch == ticket.0 {
            inner.keys.put(
                secret_hash.to_owned(),
                Entry {
                    value: key,
                    loaded: self.clock.now(),
                },
            );
        }
    }

    pub fn put_plan(&self, ticket: Ticket, id: &str, rules: Option<Arc<PlanRules>>) {
        let mut inner = self.lock();
        if inner.epoch == ticket.0 {
            inner.plans.put(
                id.to_owned(),
                Entry {
                    value: rules,
                    loaded: self.clock.now(),
                },
            );
        }
    }

    /// Takes `fresh`, tenant `id` as just re-read for a change notice (`None`: there is no such
    /// tenant), and says what the notice told: the change watchers are to hear of, or `None`
    /// when the tenant is as the last notice about it showed it (or, never noticed, absent) —
    /// a repeated or forged notice. Entries held for the hot path are dropped only where they
    /// differ from `fresh`, so a notice that changes nothing changes no answer.
    pub fn settle_tenant(&self, id: TenantId, fresh: Option<Arc<Tenant>>) -> Option<Change> {
        let mut inner = self.lock();
        let news = match inner.noticed.get(&id) {
            Some(noticed) => *noticed != fresh,
            None => fresh.is_some(),
        };
        let held = inner.tenants.peek(&id).map(|e| e.value.clone());
        let stale_tenant = held.as_ref().is_some_and(|held| *held != fresh);
        let stale_slug = fresh.as_ref().is_some_and(|t| {
            inner
                .slugs
                .peek(t.slug.as_str())
                .is_some_and(|e| e.value != Some(id))
        });
        if stale_tenant || stale_slug {
            inner.epoch = inner.epoch.wrapping_add(1);
            inner.tenants.pop(&id);
            for slug in [held.flatten(), fresh.clone()].into_iter().flatten() {
                inner.slugs.pop(slug.slug.as_str());
            }
        }
        if !news {
            return None;
        }
        let slug = fresh
            .as_ref()
            .or_else(|| inner.noticed.peek(&id).and_then(Option::as_ref))
            .map(|t| t.slug.as_str().to_owned());
        inner.noticed.put(id, fresh);
        Some(match slug {
            Some(slug) => Change::Tenant { id, slug },
            None => Change::TenantRow(id),
        })
    }

    /// Takes `fresh`, plan `id` as just re-read for a change notice; drops the entry held only
    /// when it differs. Whether it did.
    pub fn settle_plan(&self, id: &str, fresh: Option<Arc<PlanRules>>) -> bool {
        let mut inner = self.lock();
        let stale = inner.plans.peek(id).is_some_and(|e| e.value != fresh);
        if stale {
            inner.epoch = inner.epoch.wrapping_add(1);
            inner.plans.pop(id);
        }
        stale
    }

    /// Takes `fresh`, API key `id` as just re-read for a change notice with the hash of its
    /// secret (`None`: there is no such key); drops what is held of the key only when it
    /// differs. Whether it did.
    pub fn settle_api_key(&self, id: uuid::Uuid, fresh: Option<(String, Arc<ApiKey>)>) -> bool {
        let mut inner = self.lock();
        let stale: Vec<String> = match &fresh {
            Some((hash, key)) => inner
                .keys
                .peek(hash)
                .is_some_and(|e| e.value.as_ref() != Some(key))
                .then(|| hash.clone())
                .into_iter()
                .collect(),
            // Gone: whatever hash it was held under.
            None => inner
                .keys
                .iter()
                .filter(|(_, e)| e.value.as_ref().is_some_and(|k| k.id == id))
                .map(|(hash, _)| hash.clone())
                .collect(),
        };
        if stale.is_empty() {
            return false;
        }
        inner.epoch = inner.epoch.wrapping_add(1);
        for hash in &stale {
            inner.keys.pop(hash);
        }
        true
    }

    /// Drops what a change may have made stale.
    pub fn invalidate(&self, change: &Change) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        match change {
            Change::Tenant { id, slug } => {
                inner.tenants.pop(id);
                inner.slugs.pop(slug);
            }
            Change::TenantRow(id) => {
                inner.tenants.pop(id);
            }
            Change::Plan(id) => {
                inner.plans.pop(id);
            }
            Change::ApiKey { secret_hash } => {
                inner.keys.pop(secret_hash);
            }
            Change::All => {
                inner.tenants.clear();
                inner.slugs.clear();
                inner.keys.clear();
                inner.plans.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(slug: &str, display_name: &str) -> Arc<Tenant> {
        use crate::domain::{Isolation, Labels, PlanName, Slug, TenantState};
        let now = chrono::Utc::now();
        Arc::new(Tenant {
            id: TenantId::new(),
            slug: Slug::parse(slug).unwrap(),
            display_name: display_name.into(),
            plan: PlanName::parse("free").unwrap(),
            isolation: Isolation::Schema,
            state: TenantState::Active,
            state_before_suspend: None,
            state_before_delete: None,
            labels: Labels::default(),
            limit_overrides: Default::default(),
            schema_name: None,
            database_name: None,
            suspend_reason: None,
            migration_version: None,
            last_error: None,
            last_error_time: None,
            provision_time: Some(now),
            revision: 1,
            create_time: now,
            update_time: now,
            delete_time: None,
            purge_time: None,
            suspend_time: None,
        })
    }

    #[test]
    fn a_notice_that_shows_nothing_new_is_no_change() {
        let cache = CatalogCache::new(NonZeroUsize::MIN.saturating_add(9), Clock::system());
        let before = tenant("acme", "Acme");
        let id = before.id;
        let slug = || "acme".to_owned();

        // Never noticed before: news, whatever the hot path holds.
        cache.put_tenant(cache.ticket(), None, Some(before.clone()));
        assert_eq!(
            cache.settle_tenant(id, Some(before.clone())),
            Some(Change::Tenant { id, slug: slug() })
        );
        assert!(cache.tenant(id).is_some(), "an equal entry is kept");
        // The same again: nothing to tell, nothing dropped.
        assert_eq!(cache.settle_tenant(id, Some(before.clone())), None);
        assert!(cache.tenant(id).is_some());

        // A real change: told, and the held entry dropped.
        let mut after = (*before).clone();
        after.display_name = "Acme Inc".into();
        assert_eq!(
            cache.settle_tenant(id, Some(Arc::new(after))),
            Some(Change::Tenant { id, slug: slug() })
        );
        assert!(cache.tenant(id).is_none());

        // A tenant nobody noticed that does not exist is no news either.
        assert_eq!(cache.settle_tenant(TenantId::new(), None), None);
    }

    #[test]
    fn an_entry_is_trusted_until_max_age_by_the_clock() {
        let clock = Clock::fixed(chrono::DateTime::from_timestamp(1_000, 0).unwrap());
        let cache = CatalogCache::new(NonZeroUsize::MIN.saturating_add(9), clock.clone());
        cache.put_plan(cache.ticket(), "pro", None);
        let max_age = chrono::TimeDelta::from_std(MAX_AGE).unwrap();
        clock.advance(max_age - chrono::TimeDelta::microseconds(1));
        assert!(cache.plan("pro").is_some(), "not yet {MAX_AGE:?} old");
        clock.advance(chrono::TimeDelta::microseconds(1));
        assert!(cache.plan("pro").is_none(), "{MAX_AGE:?} old: loaded again");
    }

    #[test]
    fn a_load_started_before_a_change_is_not_kept() {
        let cache = CatalogCache::new(NonZeroUsize::MIN.saturating_add(9), Clock::system());
        let ticket = cache.ticket();
        cache.invalidate(&Change::Plan("pro".into()));
        cache.put_plan(ticket, "pro", None);
        assert!(cache.plan("pro").is_none());
        let ticket = cache.ticket();
        cache.put_plan(
            ticket,
            "pro",
            Some(Arc::new(PlanRules {
                limits: Vec::new(),
                components: Vec::new(),
            })),
        );
        assert!(matches!(cache.plan("pro"), Some(Some(_))));
    }
}
