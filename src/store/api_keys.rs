//! Queries on `api_keys`. Only hashes of secrets are ever written or compared.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::cache::Change;
use super::entity::api_key;
use super::{Catalog, audit, db_error};
use crate::domain::{ApiKey, CallContext, Error, TenantId};

pub(super) fn to_domain(m: api_key::Model) -> ApiKey {
    ApiKey {
        id: m.id,
        tenant: TenantId::from(m.tenant_id),
        display_name: m.display_name,
        prefix: m.prefix,
        create_time: m.create_time,
        expire_time: m.expire_time,
        revoke_time: m.revoke_time,
    }
}

impl Catalog {
    /// Stores a new key under the hash of its secret.
    pub async fn insert_api_key(
        &self,
        ctx: &CallContext,
        key: &ApiKey,
        secret_hash: &str,
    ) -> Result<(), Error> {
        let row = api_key::ActiveModel {
            id: Set(key.id),
            tenant_id: Set(key.tenant.as_uuid()),
            display_name: Set(key.display_name.clone()),
            prefix: Set(key.prefix.clone()),
            secret_hash: Set(secret_hash.to_owned()),
            create_time: Set(key.create_time),
            expire_time: Set(key.expire_time),
            revoke_time: Set(None),
        };
        let txn = self.conn().begin().await.map_err(db_error)?;
        api_key::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        audit::record(&txn, ctx, Some(key.tenant))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.changed(&Change::ApiKey {
            secret_hash: secret_hash.to_owned(),
        });
        Ok(())
    }

    /// One page of a tenant's keys in creation order (ids are UUIDv7).
    pub async fn list_api_keys(
        &self,
        tenant: TenantId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<ApiKey>, Error> {
        let mut query = api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant.as_uuid()))
            .order_by_asc(api_key::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(api_key::Column::Id.gt(after));
        }
        let rows = query.all(self.conn()).await.map_err(db_error)?;
        Ok(rows.into_iter().map(to_domain).collect())
    }

    pub async fn api_key(&self, id: Uuid) -> Result<Option<ApiKey>, Error> {
        let row = api_key::Entity::find_by_id(id)
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row.map(to_domain))
    }

    /// The key whose secret has this hash, uncached.
    pub async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>, Error> {
        let row = api_key::Entity::find()
            .filter(api_key::Column::SecretHash.eq(secret_hash))
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row.map(to_domain))
    }

    /// Marks a key revoked, once: a key already revoked keeps its first revoke time.
    pub async fn revoke_api_key(
        &self,
        ctx: &CallContext,
        id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<ApiKey>, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokeTime, Expr::value(now))
            .filter(api_key::Column::Id.eq(id))
            .filter(api_key::Column::RevokeTime.is_null())
            .exec(&txn)
            .await
            .map_err(db_error)?;
        let row = api_key::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(db_error)?;
        if let Some(row) = &row {
            audit::record(&txn, ctx, Some(TenantId::from(row.tenant_id)))
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)?;
        if let Some(row) = &row {
            self.changed(&Change::ApiKey {
                secret_hash: row.secret_hash.clone(),
            });
        }
        Ok(row.map(to_domain))
    }
}
