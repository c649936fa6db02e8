//! ResolveTenant: which tenant a key names, and where its data lives.

use std::sync::Arc;

use super::Tenants;
use super::input::{DataLocation, Lookup, TenantRef, slug_of_host};
use crate::domain::{Error, Slug, Tenant, TenantId};
use crate::service::provisioning::location_of;
use crate::store::{Catalog, Change};

impl Tenants {
    /// Finds the tenant a key belongs to and where its data lives.
    pub async fn resolve(&self, lookup: Lookup) -> Result<(Tenant, DataLocation), Error> {
        self.resolve_within(lookup, |_| true).await
    }

    /// [`Self::resolve`] for a caller that may reach only the tenants `reaches` admits: a
    /// tenant it may not reach is PERMISSION_DENIED, decided before the tenant is looked up
    /// (by key: whether the key's tenant is reachable, after finding the key).
    pub async fn resolve_within(
        &self,
        lookup: Lookup,
        reaches: impl Fn(&TenantRef) -> bool,
    ) -> Result<(Tenant, DataLocation), Error> {
        let target = match &lookup {
            Lookup::Id(id) => TenantId::parse(id)
                .map(TenantRef::Id)
                .ok_or_else(|| Error::invalid("id", "must be a UUID"))?,
            Lookup::Slug(slug) => {
                TenantRef::Slug(Slug::parse(slug).map_err(|why| Error::invalid("slug", why))?)
            }
            Lookup::Host(host) => TenantRef::Slug(slug_of_host(host)?),
            Lookup::ApiKey(secret) => {
                let tenant = self.tenant_of_api_key(secret).await?;
                if !reaches(&TenantRef::Id(tenant.id)) {
                    return Err(Error::other_tenant());
                }
                let location = location_of(&tenant, self.catalog.backend());
                return Ok((Tenant::clone(&tenant), location));
            }
        };
        if !reaches(&target) {
            return Err(Error::other_tenant());
        }
        let tenant = cached_tenant(&self.catalog, &target).await?;
        let location = location_of(&tenant, self.catalog.backend());
        Ok((Tenant::clone(&tenant), location))
    }
}

/// The tenant a reference names, from the catalog's memory when it is there.
pub(crate) async fn cached_tenant(
    catalog: &Catalog,
    target: &TenantRef,
) -> Result<Arc<Tenant>, Error> {
    let found = match target {
        TenantRef::Id(id) => catalog.cached_tenant_by_id(*id).await?,
        TenantRef::Slug(slug) => catalog.cached_tenant_by_slug(slug).await?,
    };
    found.ok_or_else(|| Error::tenant_not_found(target.to_string()))
}

/// A change to a tenant, as told to watchers of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantChange {
    /// This tenant changed; its slug when known.
    Tenant { id: TenantId, slug: Option<String> },
    /// Anything may have changed: changes were missed, or the watch has just begun.
    Reset,
}

impl Tenants {
    /// Every tenant change from now on, starting with a [`TenantChange::Reset`]. A watcher that
    /// falls too far behind gets a reset instead of the changes it missed.
    pub fn watch_changes(&self) -> impl tokio_stream::Stream<Item = TenantChange> + Send + 'static {
        use tokio_stream::StreamExt;
        use tokio_stream::wrappers::BroadcastStream;
        let changes =
            BroadcastStream::new(self.catalog.watch_changes()).filter_map(|change| match change {
                Ok(Change::Tenant { id, slug }) => Some(TenantChange::Tenant {
                    id,
                    slug: Some(slug),
                }),
                Ok(Change::TenantRow(id)) => Some(TenantChange::Tenant { id, slug: None }),
                Ok(Change::All) | Err(_) => Some(TenantChange::Reset),
                Ok(Change::Plan(_) | Change::ApiKey { .. }) => None,
            });
        tokio_stream::once(TenantChange::Reset).chain(changes)
    }
}
