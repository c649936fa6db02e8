//! The catalog's change notices on PostgreSQL: the channel they go on, what they say, and what
//! a receiver makes of them.
//!
//! PostgreSQL checks no privilege on LISTEN or NOTIFY, and tenant roles connect to the catalog
//! database, so the notices are built to be worth nothing to them:
//! - the channel's name is random, drawn once per catalog and kept in `notice_channel`, a
//!   table PUBLIC has no privilege on (catalog migration 000016);
//! - a payload names rows by id only (`tenant:<id>`, `tenants:<id>,<id>,…`, `plan:<id>`,
//!   `api_key:<key id>`), never a secret or its hash;
//! - a receiver re-reads every row a notice names and acts only on what it finds changed
//!   ([`super::cache::CatalogCache::settle_tenant`]): a notice sent by someone else than the
//!   catalog's triggers, even on the right channel, tells watchers nothing and drops no entry
//!   that still holds.
//!
//! Payloads it cannot read are counted ([`NoticeCounts`]) and logged at most once per
//! [`UNRECOGNISED_LOG_EVERY`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use uuid::Uuid;

use super::cache::Change;
use super::entity::{api_key, plan, tenant};
use super::{Catalog, db_error, tenants};
use crate::domain::{Error, TenantId};
use crate::telemetry::throttle::Throttle;

/// Unrecognised payloads are logged at most once per this interval (with how many were not):
/// anyone who learns the channel could otherwise write the log full.
pub const UNRECOGNISED_LOG_EVERY: Duration = Duration::from_secs(10);

static UNRECOGNISED_LOG: Throttle = Throttle::new(UNRECOGNISED_LOG_EVERY);

/// Longest part of an unrecognised payload that is logged.
const LOGGED_PAYLOAD: usize = 64;

/// A row a change notice names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Tenant(TenantId),
    Plan(String),
    ApiKey(Uuid),
}

impl Notice {
    /// The rows a payload names, or `None` when it is not one the catalog's triggers write.
    pub fn parse(payload: &str) -> Option<Vec<Self>> {
        let (kind, rest) = payload.split_once(':')?;
        match kind {
            "tenant" => Some(vec![Self::Tenant(TenantId::parse(rest)?)]),
            "tenants" => rest
                .split(',')
                .map(|id| TenantId::parse(id).map(Self::Tenant))
                .collect(),
            "plan" if !rest.is_empty() => Some(vec![Self::Plan(rest.to_owned())]),
            "api_key" => Uuid::parse_str(rest).ok().map(|id| vec![Self::ApiKey(id)]),
            _ => None,
        }
    }
}

/// What the change notices this process received came to, for the metrics endpoint
/// (`tenant_plane_catalog_notices_total`).
#[derive(Debug, Default)]
pub struct NoticeCounts {
    applied: AtomicU64,
    unchanged: AtomicU64,
    unrecognised: AtomicU64,
}

/// [`NoticeCounts`] at an instant: rows named by notices that changed something here, rows
/// named by notices that found nothing changed, payloads not recognised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoticeTally {
    pub applied: u64,
    pub unchanged: u64,
    pub unrecognised: u64,
}

impl Catalog {
    /// What the change notices this process received came to.
    pub fn notice_tally(&self) -> NoticeTally {
        let counts = &self.cache.notices;
        NoticeTally {
            applied: counts.applied.load(Ordering::Relaxed),
            unchanged: counts.unchanged.load(Ordering::Relaxed),
            unrecognised: counts.unrecognised.load(Ordering::Relaxed),
        }
    }

    /// The channel the catalog's change notices go on (PostgreSQL).
    pub(super) async fn notice_channel(&self) -> Result<String, Error> {
        self.conn()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT channel FROM {}notice_channel",
                    self.qualifier.as_deref().unwrap_or_default()
                ),
            ))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::Internal("the catalog names no notice channel".into()))?
            .try_get::<String>("", "channel")
            .map_err(db_error)
    }

    /// Acts on a received payload: re-reads the rows it names and passes on what changed.
    pub(super) async fn received(&self, payload: &str) {
        let Some(notices) = Notice::parse(payload) else {
            self.cache
                .notices
                .unrecognised
                .fetch_add(1, Ordering::Relaxed);
            if let Some(held_back) = UNRECOGNISED_LOG.admit() {
                let shown: String = payload.chars().take(LOGGED_PAYLOAD).collect();
                tracing::warn!(
                    payload = %shown,
                    not_logged_since = held_back,
                    "unrecognised catalog change notice ignored"
                );
            }
            return;
        };
        if let Err(e) = self.settle(&notices).await {
            // What changed cannot be told: drop everything, as when notices were missed.
            tracing::warn!(error = %e, "re-reading what a catalog change notice names failed");
            self.changed(&Change::All);
        }
    }

    async fn settle(&self, notices: &[Notice]) -> Result<(), Error> {
        let ids: Vec<Uuid> = notices
            .iter()
            .filter_map(|n| match n {
                Notice::Tenant(id) => Some(id.as_uuid()),
                _ => None,
            })
            .collect();
        if !ids.is_empty() {
            let rows = tenant::Entity::find()
                .filter(tenant::Column::Id.is_in(ids.iter().copied()))
                .all(self.conn())
                .await
                .map_err(db_error)?;
            let mut found = std::collections::HashMap::with_capacity(rows.len());
            for row in rows {
                found.insert(row.id, Arc::new(tenants::to_domain(row)?));
            }
            for id in &ids {
                let fresh = found.get(id).cloned();
                let told = self.cache.settle_tenant(TenantId::from(*id), fresh);
                self.count(told.is_some());
                if let Some(change) = told {
                    // Nobody watching is fine.
                    let _ = self.feed.send(change);
                }
            }
        }
        for notice in notices {
            match notice {
                Notice::Tenant(_) => {}
                Notice::Plan(id) => {
                    let fresh = plan::Entity::find_by_id(id.clone())
                        .one(self.conn())
                        .await
                        .map_err(db_error)?
                        .map(super::plans::plan_rules)
                        .transpose()?
                        .map(Arc::new);
                    self.count(self.cache.settle_plan(id, fresh));
                }
                Notice::ApiKey(id) => {
                    let fresh = api_key::Entity::find_by_id(*id)
                        .one(self.conn())
                        .await
                        .map_err(db_error)?
                        .map(|row| {
                            (
                                row.secret_hash.clone(),
                                Arc::new(super::api_keys::to_domain(row)),
                            )
                        });
                    self.count(self.cache.settle_api_key(*id, fresh));
                }
            }
        }
        Ok(())
    }

    fn count(&self, applied: bool) {
        let counter = if applied {
            &self.cache.notices.applied
        } else {
            &self.cache.notices.unchanged
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Revokes CONNECT on the catalog database from PUBLIC (PostgreSQL), so that only roles
    /// granted it (the control plane's, and the roles of SCHEMA and SHARED tenants, through the
    /// connect role provisioning makes them members of) may connect there. Needs the database's owner or a
    /// superuser; other roles get a warning naming what to do instead.
    pub async fn restrict_catalog_connect(&self) -> Result<(), Error> {
        if self.backend != super::Backend::Postgres {
            return Ok(());
        }
        let row = self
            .conn()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_database()::text AS database, \
                        has_database_privilege('public', current_database(), 'CONNECT') AS open, \
                        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
                          OR pg_has_role(current_user, \
                               (SELECT datdba FROM pg_database \
                                WHERE datname = current_database()), 'USAGE') AS may",
            ))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::Internal("reading the catalog database's grants".into()))?;
        let database: String = row.try_get("", "database").map_err(db_error)?;
        let open: bool = row.try_get("", "open").map_err(db_error)?;
        let may: bool = row.try_get("", "may").map_err(db_error)?;
        if !open {
            return Ok(());
        }
        if !may {
            tracing::warn!(
                database = %database,
                "every role may connect to the catalog database (CONNECT is granted to PUBLIC) \
                 and this role may not revoke it: tenant roles of DATABASE tenants and any other \
                 role can reach the catalog database; as its owner, run \
                 REVOKE CONNECT ON DATABASE <catalog database> FROM PUBLIC"
            );
            return Ok(());
        }
        self.conn()
            .execute_unprepared(&format!(
                "REVOKE CONNECT ON DATABASE {} FROM PUBLIC",
                crate::sql::Ident::new(&database)
            ))
            .await
            .map_err(db_error)?;
        tracing::info!(database = %database, "CONNECT on the catalog database revoked from PUBLIC");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_rows_by_id_only() {
        let id = TenantId::new();
        let other = TenantId::new();
        let key = Uuid::now_v7();
        assert_eq!(
            Notice::parse(&format!("tenant:{id}")),
            Some(vec![Notice::Tenant(id)])
        );
        assert_eq!(
            Notice::parse(&format!("tenants:{id},{other}")),
            Some(vec![Notice::Tenant(id), Notice::Tenant(other)])
        );
        assert_eq!(
            Notice::parse("plan:pro"),
            Some(vec![Notice::Plan("pro".into())])
        );
        assert_eq!(
            Notice::parse(&format!("api_key:{key}")),
            Some(vec![Notice::ApiKey(key)])
        );
        for junk in [
            "tenant:nonsense".to_owned(),
            format!("tenant:{id}:forged"),
            format!("tenants:{id},nonsense"),
            "tenants:".to_owned(),
            "plan:".to_owned(),
            format!("api_key:{}", "a".repeat(64)),
            "other:x".to_owned(),
            "no colon".to_owned(),
        ] {
            assert_eq!(Notice::parse(&junk), None, "{junk}");
        }
    }
}
