//! [`TenantResolver`]: `ResolveTenant` behind a typed call and a cache, so a service does not ask
//! the control plane on every request.
//!
//! A resolved tenant is kept for [`ResolverSettings::ttl`], an unknown key for the shorter
//! [`ResolverSettings::negative_ttl`] (so a burst of requests for a tenant that does not exist yet
//! is answered locally, and a tenant created a moment later is found soon). A service that learns
//! of a change sooner (it suspended the tenant itself, or is told by an event) calls
//! [`TenantResolver::invalidate`]. Failures of the control plane are never cached.
//!
//! [`TenantResolver::follow_changes`], run as a task of its own, hears every tenant change from
//! the control plane (`WatchTenantChanges`) and drops the tenant at once, so the TTL only bounds
//! staleness while that stream is down.
//!
//! Entries age by the resolver's [`ClientClock`] (the system clock unless
//! [`TenantResolver::with_clock`] gave another), so a test can let a TTL pass by advancing a
//! manual clock instead of waiting.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use lru::LruCache;
use tokio::time::Instant;
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

use crate::clock::ClientClock;
use crate::names::{Slug, TenantId};
use crate::proto::{
    self, ResolveTenantRequest, resolve_tenant_request::Key,
    tenant_service_client::TenantServiceClient,
};
use crate::{BearerToken, ControlPlane, Error, TenantContext, TenantKey};

/// Pause before watching tenant changes again after the stream broke.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// How long answers are kept, and how many.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// How long a resolved tenant is trusted. A suspension reaches this service at most this
    /// late unless it invalidates first. Default 5 s: a suspension takes effect within seconds,
    /// and a busy tenant costs the control plane one call per 5 s per replica.
    pub ttl: Duration,
    /// How long "no such tenant" is trusted. Default 1 s: enough to absorb a burst of requests
    /// for an unknown tenant, short enough that a new tenant is found almost at once.
    pub negative_ttl: Duration,
    /// Most keys kept (least recently used out). Default 10,000; each entry is a few hundred
    /// bytes.
    pub capacity: NonZeroUsize,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            negative_ttl: Duration::from_secs(1),
            capacity: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// A cached answer: the tenant, or `None` for a key that names no tenant.
#[derive(Clone)]
struct Entry {
    tenant: Option<TenantContext>,
    expires: Instant,
}

/// Resolves tenants through the control plane, with a cache. Cheap to clone: clones share the
/// cache and the channel.
#[derive(Clone)]
pub struct TenantResolver {
    client: TenantServiceClient<InterceptedService<Channel, BearerToken>>,
    cache: Arc<Mutex<LruCache<TenantKey, Entry>>>,
    settings: ResolverSettings,
    clock: ClientClock,
}

impl TenantResolver {
    /// Resolves through `control_plane`: a [`ControlPlane`] with a service token, or a bare
    /// channel to a server run with `--insecure`.
    pub fn new(control_plane: impl Into<ControlPlane>, settings: ResolverSettings) -> Self {
        Self {
            client: TenantServiceClient::new(control_plane.into().service()),
            cache: Arc::new(Mutex::new(LruCache::new(settings.capacity))),
            settings,
            clock: ClientClock::system(),
        }
    }

    /// This resolver, aging its cached answers by `clock` instead of the system clock (a
    /// [`ClientClock::manual`] one, in a test that lets a TTL pass by advancing it). Call it
    /// before the resolver is cloned or used: clones made earlier keep the clock they had.
    #[must_use]
    pub fn with_clock(mut self, clock: ClientClock) -> Self {
        self.clock = clock;
        self
    }

    /// The tenant `key` names, whatever its state (the caller decides what it serves).
    #[tracing::instrument(name = "resolve_tenant", skip(self), fields(key = %key))]
    pub async fn resolve(&self, key: &TenantKey) -> Result<TenantContext, Error> {
        if let Some(entry) = self.cached(key) {
            return entry.tenant.ok_or_else(|| Error::NotFound(key.to_string()));
        }
        let request = ResolveTenantRequest {
            key: Some(match key {
                TenantKey::Id(id) => Key::Id(id.to_string()),
                TenantKey::Slug(slug) => Key::Slug(slug.as_str().to_owned()),
            }),
        };
        match self.client.clone().resolve_tenant(request).await {
            Ok(response) => {
                let tenant = TenantContext::try_from(response.into_inner())?;
                let expires = self.clock.now() + self.settings.ttl;
                let mut cache = self.lock();
                // Under both names: a request by id and a later one by slug share the answer.
                for name in [
                    TenantKey::Id(tenant.id),
                    TenantKey::Slug(tenant.slug.clone()),
                ] {
                    let entry = Entry {
                        tenant: Some(tenant.clone()),
                        expires,
                    };
                    cache.put(name, entry);
                }
                Ok(tenant)
            }
            Err(status) if status.code() == Code::NotFound => {
                let entry = Entry {
                    tenant: None,
                    expires: self.clock.now() + self.settings.negative_ttl,
                };
                self.lock().put(key.clone(), entry);
                Err(Error::NotFound(key.to_string()))
            }
            Err(status) => Err(Error::ControlPlane(status)),
        }
    }

    /// Forgets what is known about the tenant named by `slug_or_id`, under every name it was
    /// cached by, so the next request asks the control plane again.
    pub fn invalidate(&self, slug_or_id: &str) {
        let Some(key) = TenantKey::parse(slug_or_id) else {
            return;
        };
        let mut cache = self.lock();
        let doomed: Vec<TenantKey> = cache
            .iter()
            .filter(|(name, entry)| {
                **name == key
                    || entry
                        .tenant
                        .as_ref()
                        .is_some_and(|t| key.names(t.id, &t.slug))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in doomed {
            cache.pop(&name);
        }
    }

    /// Forgets every cached answer.
    pub fn invalidate_all(&self) {
        self.lock().clear();
    }

    /// Follows the control plane's tenant changes, dropping each changed tenant from the cache,
    /// for as long as it runs: spawn it beside the server. A broken stream drops everything
    /// (changes may have been missed) and reconnects after [`RECONNECT_DELAY`].
    pub async fn follow_changes(&self) {
        loop {
            let mut client = self.client.clone();
            match client
                .watch_tenant_changes(proto::WatchTenantChangesRequest {})
                .await
            {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    while let Ok(Some(change)) = stream.message().await {
                        self.apply(&change);
                    }
                }
                Err(status) => {
                    tracing::debug!(%status, "cannot watch tenant changes yet");
                }
            }
            self.invalidate_all();
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }

    fn apply(&self, change: &proto::TenantChange) {
        if change.reset {
            self.invalidate_all();
            return;
        }
        for key in [&change.id, &change.slug] {
            if !key.is_empty() {
                self.invalidate(key);
            }
        }
    }

    fn cached(&self, key: &TenantKey) -> Option<Entry> {
        let mut cache = self.lock();
        let entry = cache.get(key)?.clone();
        if entry.expires <= self.clock.now() {
            cache.pop(key);
            return None;
        }
        Some(entry)
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<TenantKey, Entry>> {
        // Every use is a few LruCache calls that leave it consistent even if one panicked.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TenantKey {
    fn names(&self, id: TenantId, slug: &Slug) -> bool {
        match self {
            Self::Id(key) => *key == id,
            Self::Slug(key) => key == slug,
        }
    }
}
