//! ResolveTenant: which tenant a key names, and where its data lives.

use std::sync::Arc;

use super::Tenants;
use super::input::{DataLocation, Lookup, TenantRef, slug_of_host};
use crate::domain::{Error, Slug, Tenant, TenantId};
use crate::service::provisioning::location_of;
use crate::store::Catalog;

impl Tenants {
    /// Finds the tenant a key belongs to and where its data lives.
    pub async fn resolve(&self, lookup: Lookup) -> Result<(Tenant, DataLocation), Error> {
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
                let location = location_of(&tenant);
                return Ok((Tenant::clone(&tenant), location));
            }
        };
        let tenant = cached_tenant(&self.catalog, &target).await?;
        let location = location_of(&tenant);
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
