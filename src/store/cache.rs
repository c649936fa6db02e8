//! The catalog's memory: tenants, API keys and plan limits as last read, so the hot path
//! (ResolveTenant, quota decisions, Envoy's checks) does not query the database per call.
//!
//! The catalog stays the authority. Writes made through this process drop what they changed
//! before they return; on PostgreSQL, triggers on `tenants`, `plans` and `api_keys` NOTIFY every
//! replica ([`Catalog::follow_changes`]), which drops the same entries within milliseconds. If the
//! notification connection is lost, everything is dropped, since changes may have been missed.
//! Absences are remembered too (an unknown slug, a wrong API key), so a flood of bad keys does not
//! reach the database either. As a last line, an entry is reloaded after [`MAX_AGE`].
//!
//! A reader that loaded a row before a write committed must not put it back after the write
//! dropped it: every drop bumps an epoch, and a load started under an older epoch is not kept.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::domain::{ApiKey, PlanLimit, Tenant, TenantId};

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

impl Change {
    /// Parses a notification payload written by `tenant_plane_notify_change()`, or by
    /// `tenant_plane_finish_batch_notify_once()`: `tenants:` and the ids of the tenants whose
    /// rows a rollout batch changed, comma-separated.
    pub fn parse(payload: &str) -> Option<Vec<Self>> {
        let (kind, rest) = payload.split_once(':')?;
        let one = match kind {
            "tenant" => {
                let (id, slug) = rest.split_once(':')?;
                Self::Tenant {
                    id: TenantId::parse(id)?,
                    slug: slug.to_owned(),
                }
            }
            "tenants" => {
                return rest
                    .split(',')
                    .map(|id| TenantId::parse(id).map(Self::TenantRow))
                    .collect();
            }
            "plan" => Self::Plan(rest.to_owned()),
            "api_key" => Self::ApiKey {
                secret_hash: rest.to_owned(),
            },
            _ => return None,
        };
        Some(vec![one])
    }
}

struct Entry<V> {
    value: V,
    loaded: Instant,
}

struct Inner {
    epoch: u64,
    tenants: LruCache<TenantId, Entry<Option<Arc<Tenant>>>>,
    slugs: LruCache<String, Entry<Option<TenantId>>>,
    keys: LruCache<String, Entry<Option<Arc<ApiKey>>>>,
    plans: LruCache<String, Entry<Option<Arc<Vec<PlanLimit>>>>>,
}

/// See the module documentation.
pub struct CatalogCache {
    inner: Mutex<Inner>,
}

/// The epoch a load started in; hand it back with the loaded value.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

fn fresh<K, Q, V>(cache: &mut LruCache<K, Entry<V>>, key: &Q) -> Option<V>
where
    K: Hash + Eq + std::borrow::Borrow<Q>,
    Q: Hash + Eq + ?Sized,
    V: Clone,
{
    match cache.get(key) {
        Some(e) if e.loaded.elapsed() < MAX_AGE => Some(e.value.clone()),
        _ => None,
    }
}

impl CatalogCache {
    /// A cache holding at most `capacity` tenants (and as many slugs and API keys).
    pub fn new(capacity: NonZeroUsize) -> Self {
        let plans = NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Mutex::new(Inner {
                epoch: 0,
                tenants: LruCache::new(capacity),
                slugs: LruCache::new(capacity),
                keys: LruCache::new(capacity),
                plans: LruCache::new(plans),
            }),
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
        fresh(&mut self.lock().tenants, &id)
    }

    pub fn slug(&self, slug: &str) -> Option<Option<TenantId>> {
        fresh(&mut self.lock().slugs, slug)
    }

    pub fn api_key(&self, secret_hash: &str) -> Option<Option<Arc<ApiKey>>> {
        fresh(&mut self.lock().keys, secret_hash)
    }

    pub fn plan(&self, id: &str) -> Option<Option<Arc<Vec<PlanLimit>>>> {
        fresh(&mut self.lock().plans, id)
    }

    /// Keeps a loaded tenant (or its absence, under the key it was looked up by).
    pub fn put_tenant(&self, ticket: Ticket, by_slug: Option<&str>, tenant: Option<Arc<Tenant>>) {
        let mut inner = self.lock();
        if inner.epoch != ticket.0 {
            return;
        }
        let loaded = Instant::now();
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
                    loaded: Instant::now(),
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
                    loaded: Instant::now(),
                },
            );
        }
    }

    pub fn put_plan(&self, ticket: Ticket, id: &str, limits: Option<Arc<Vec<PlanLimit>>>) {
        let mut inner = self.lock();
        if inner.epoch == ticket.0 {
            inner.plans.put(
                id.to_owned(),
                Entry {
                    value: limits,
                    loaded: Instant::now(),
                },
            );
        }
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

    #[test]
    fn payloads_parse() {
        let id = TenantId::new();
        let other = TenantId::new();
        assert_eq!(
            Change::parse(&format!("tenant:{id}:acme")),
            Some(vec![Change::Tenant {
                id,
                slug: "acme".into()
            }])
        );
        assert_eq!(
            Change::parse(&format!("tenants:{id},{other}")),
            Some(vec![Change::TenantRow(id), Change::TenantRow(other)])
        );
        assert_eq!(
            Change::parse("plan:pro"),
            Some(vec![Change::Plan("pro".into())])
        );
        assert_eq!(Change::parse("tenant:nonsense"), None);
        assert_eq!(Change::parse(&format!("tenants:{id},nonsense")), None);
        assert_eq!(Change::parse("tenants:"), None);
        assert_eq!(Change::parse("other:x"), None);
    }

    #[test]
    fn a_load_started_before_a_change_is_not_kept() {
        let cache = CatalogCache::new(NonZeroUsize::MIN.saturating_add(9));
        let ticket = cache.ticket();
        cache.invalidate(&Change::Plan("pro".into()));
        cache.put_plan(ticket, "pro", None);
        assert!(cache.plan("pro").is_none());
        let ticket = cache.ticket();
        cache.put_plan(ticket, "pro", Some(Arc::new(Vec::new())));
        assert!(matches!(cache.plan("pro"), Some(Some(_))));
    }
}
