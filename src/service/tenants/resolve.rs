//! ResolveTenant: which tenant a key names, and where its data lives.

use super::Tenants;
use super::input::{DataLocation, Lookup, TenantRef, slug_of_host};
use crate::domain::{Error, Slug, Tenant, TenantId};
use crate::service::provisioning::location_of;

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
        };
        let tenant = self.get(&target).await?;
        let location = location_of(&tenant);
        Ok((tenant, location))
    }
}
