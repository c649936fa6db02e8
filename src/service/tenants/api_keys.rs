//! Tenant API keys: made with a random secret shown once, listed without it, revoked at once
//! on every replica, and resolved to their tenant from memory.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::input::MAX_DISPLAY_NAME;
use super::{TenantRef, Tenants, load};
use crate::domain::{
    ApiKey, CallContext, Error, FieldViolation, NewSecret, Tenant, TenantState, hash_secret,
};
use crate::service::paging::Page;

/// What CreateApiKey takes.
#[derive(Debug, Clone, Default)]
pub struct NewApiKeyInput {
    pub display_name: String,
    pub expire_time: Option<DateTime<Utc>>,
}

/// A key name, "tenants/{tenant}/apiKeys/{key_id}".
fn parse_key_name(name: &str) -> Result<(TenantRef, Uuid), Error> {
    let bad = || Error::invalid("name", "must be \"tenants/{tenant}/apiKeys/{key_id}\"");
    let (parent, id) = name.rsplit_once("/apiKeys/").ok_or_else(bad)?;
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    Ok((TenantRef::parse(parent, "name")?, id))
}

impl Tenants {
    /// Makes a key for a tenant that is not deleted; the secret is returned this once.
    #[tracing::instrument(skip_all, fields(tenant = %parent))]
    pub async fn create_api_key(
        &self,
        ctx: &CallContext,
        parent: &TenantRef,
        input: NewApiKeyInput,
    ) -> Result<(ApiKey, String), Error> {
        let mut violations = Vec::new();
        let display_name = input.display_name.trim().to_owned();
        if display_name.chars().count() > MAX_DISPLAY_NAME
            || display_name.chars().any(char::is_control)
        {
            violations.push(FieldViolation::new(
                "api_key.display_name",
                format!("must be at most {MAX_DISPLAY_NAME} printable characters"),
            ));
        }
        let now = self.catalog.now();
        if input.expire_time.is_some_and(|t| t <= now) {
            violations.push(FieldViolation::new(
                "api_key.expire_time",
                "must be in the future",
            ));
        }
        Error::check(violations)?;
        let tenant = load(&self.catalog, parent).await?;
        ctx.note_tenant(tenant.id);
        if tenant.state == TenantState::Deleted {
            return Err(Error::FailedPrecondition {
                subject: tenant.name(),
                message: format!("tenant {} is DELETED: it gets no new API keys", tenant.slug),
            });
        }
        let secret = NewSecret::generate()?;
        let key = ApiKey {
            id: Uuid::now_v7(),
            tenant: tenant.id,
            display_name,
            prefix: secret.prefix.clone(),
            create_time: now,
            expire_time: input.expire_time,
            revoke_time: None,
        };
        self.catalog.insert_api_key(ctx, &key, &secret.hash).await?;
        tracing::info!(key = %key.id, "API key created");
        Ok((key, secret.secret))
    }

    /// One page of a tenant's keys, oldest first, and the next page's token.
    pub async fn list_api_keys(
        &self,
        parent: &TenantRef,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<ApiKey>, String), Error> {
        let mut violations = Vec::new();
        let page = Page::parse(
            page_size,
            page_token,
            &parent.to_string(),
            |after| Uuid::try_parse(after).ok(),
            &mut violations,
        );
        Error::check(violations)?;
        let tenant = load(&self.catalog, parent).await?;
        let mut keys = self
            .catalog
            .list_api_keys(tenant.id, page.after, page.fetch())
            .await?;
        let next = page.finish(&mut keys, |k| k.id.to_string());
        Ok((keys, next))
    }

    /// Revokes a key; it stops resolving on every replica. Revoking twice keeps the first time.
    #[tracing::instrument(skip_all, fields(key = %name))]
    pub async fn revoke_api_key(&self, ctx: &CallContext, name: &str) -> Result<ApiKey, Error> {
        let (parent, id) = parse_key_name(name)?;
        let not_found = || Error::NotFound {
            kind: "api key",
            name: name.to_owned(),
        };
        let tenant = load(&self.catalog, &parent).await.map_err(|e| match e {
            Error::NotFound { .. } => not_found(),
            other => other,
        })?;
        ctx.note_tenant(tenant.id);
        match self.catalog.api_key(id).await? {
            Some(key) if key.tenant == tenant.id => {}
            _ => return Err(not_found()),
        }
        let key = self
            .catalog
            .revoke_api_key(ctx, id, self.catalog.now())
            .await?
            .ok_or_else(not_found)?;
        tracing::info!("API key revoked");
        Ok(key)
    }

    /// A working key's id and tenant, or None for an unknown, revoked or expired key, or one
    /// whose tenant is deleted (or gone): what authentication needs to know of a presented
    /// secret.
    pub async fn authenticate_api_key(
        &self,
        secret: &str,
    ) -> Result<Option<(Uuid, Arc<Tenant>)>, Error> {
        Ok(self
            .working_key(secret)
            .await?
            .filter(|(_, tenant)| tenant.state != TenantState::Deleted))
    }

    /// The tenant a working API key belongs to. Unknown, revoked and expired keys are all
    /// NOT_FOUND alike, so a caller learns nothing about keys it does not hold.
    pub async fn tenant_of_api_key(&self, secret: &str) -> Result<Arc<Tenant>, Error> {
        if secret.is_empty() {
            return Err(Error::invalid("api_key", "must not be empty"));
        }
        self.working_key(secret)
            .await?
            .map(|(_, tenant)| tenant)
            .ok_or_else(|| Error::NotFound {
                kind: "api key",
                name: "the given API key".into(),
            })
    }

    /// The id and tenant of the usable key `secret` is, through the catalog's memory; None for
    /// an unknown, revoked or expired key, or one whose tenant row is gone.
    async fn working_key(&self, secret: &str) -> Result<Option<(Uuid, Arc<Tenant>)>, Error> {
        let Some(key) = self
            .catalog
            .cached_api_key(&hash_secret(secret))
            .await?
            .filter(|k| k.usable(self.catalog.now()))
        else {
            return Ok(None);
        };
        let tenant = self.catalog.cached_tenant_by_id(key.tenant).await?;
        Ok(tenant.map(|t| (key.id, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_parse() {
        let id = Uuid::now_v7();
        let (parent, parsed) = parse_key_name(&format!("tenants/acme/apiKeys/{id}")).unwrap();
        assert_eq!(parent.to_string(), "tenants/acme");
        assert_eq!(parsed, id);
        assert!(parse_key_name("tenants/acme/apiKeys/nope").is_err());
        assert!(parse_key_name(&format!("acme/apiKeys/{id}")).is_err());
        assert!(parse_key_name("tenants/acme").is_err());
    }
}
