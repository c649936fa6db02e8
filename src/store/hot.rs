//! Read-through lookups for the hot path, served from [`CatalogCache`], and the follower that
//! keeps that cache in step with writes made by other replicas.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::EntityTrait;
use sea_orm::sqlx::postgres::PgListener;

use super::cache::{Change, PlanRules, Ticket};
use super::entity::plan;
use super::plans::plan_rules;
use super::{Backend, Catalog, db_error};
use crate::domain::{ApiKey, Error, Slug, Tenant, TenantId};

/// Pause before reconnecting a lost notification connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

impl Catalog {
    /// Drops cached entries a write through this process made stale.
    pub(crate) fn changed(&self, change: &Change) {
        self.cache.invalidate(change);
        // Nobody watching is fine.
        let _ = self.feed.send(change.clone());
    }

    /// Changes from now on: those made through this process and, on PostgreSQL, those the
    /// other replicas' notifications report. `Change::All` means some may have been missed.
    pub fn watch_changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    fn ticket(&self) -> Ticket {
        self.cache.ticket()
    }

    /// The tenant with this id, from memory when possible.
    pub async fn cached_tenant_by_id(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, Error> {
        if let Some(hit) = self.cache.tenant(id) {
            return Ok(hit);
        }
        let ticket = self.ticket();
        match self.tenant_by_id(id).await? {
            Some(t) => {
                let t = Arc::new(t);
                self.cache.put_tenant(ticket, None, Some(t.clone()));
                Ok(Some(t))
            }
            None => {
                self.cache.put_missing_tenant(ticket, id);
                Ok(None)
            }
        }
    }

    /// The tenant with this slug, from memory when possible.
    pub async fn cached_tenant_by_slug(&self, slug: &Slug) -> Result<Option<Arc<Tenant>>, Error> {
        match self.cache.slug(slug.as_str()) {
            Some(Some(id)) => {
                if let Some(hit) = self.cache.tenant(id) {
                    return Ok(hit);
                }
            }
            Some(None) => return Ok(None),
            None => {}
        }
        let ticket = self.ticket();
        let found = self.tenant_by_slug(slug).await?.map(Arc::new);
        self.cache
            .put_tenant(ticket, Some(slug.as_str()), found.clone());
        Ok(found)
    }

    /// The API key whose secret hashes to `secret_hash`, from memory when possible.
    pub async fn cached_api_key(&self, secret_hash: &str) -> Result<Option<Arc<ApiKey>>, Error> {
        if let Some(hit) = self.cache.api_key(secret_hash) {
            return Ok(hit);
        }
        let ticket = self.ticket();
        let found = self.api_key_by_hash(secret_hash).await?.map(Arc::new);
        self.cache.put_api_key(ticket, secret_hash, found.clone());
        Ok(found)
    }

    /// A plan's limits and components, from memory when possible; `None` when there is no such
    /// plan.
    pub async fn cached_plan(&self, id: &str) -> Result<Option<Arc<PlanRules>>, Error> {
        if let Some(hit) = self.cache.plan(id) {
            return Ok(hit);
        }
        let ticket = self.ticket();
        let found = plan::Entity::find_by_id(id.to_owned())
            .one(self.conn())
            .await
            .map_err(db_error)?
            .map(plan_rules)
            .transpose()?
            .map(Arc::new);
        self.cache.put_plan(ticket, id, found.clone());
        Ok(found)
    }

    /// Follows other replicas' writes until `stop` completes: on PostgreSQL, LISTENs for the
    /// catalog triggers' notices and drops what they name and has changed (see
    /// `store::notices`); a lost connection drops everything, then reconnects. On SQLite there is no other writer, so it just waits.
    pub async fn follow_changes(&self, stop: impl std::future::Future<Output = ()>) {
        if self.backend != Backend::Postgres {
            stop.await;
            return;
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                ended = self.listen() => {
                    if let Err(e) = ended {
                        tracing::warn!(error = %e, "catalog change notifications interrupted; reconnecting");
                    }
                }
            }
            self.changed(&Change::All);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
    }

    /// Listens until the connection is lost.
    async fn listen(&self) -> Result<(), Error> {
        let lost = |e: sea_orm::sqlx::Error| Error::Unavailable(e.to_string());
        let channel = self.notice_channel().await?;
        let mut listener = PgListener::connect(&self.url).await.map_err(lost)?;
        listener.listen(&channel).await.map_err(lost)?;
        // Anything may have changed while nobody listened.
        self.changed(&Change::All);
        tracing::debug!("following catalog changes");
        while let Some(note) = listener.try_recv().await.map_err(lost)? {
            self.received(note.payload()).await;
        }
        Ok(())
    }
}
