//! Queries on `quota_usage`: reading a tenant's usage, setting a gauge, and the statements that
//! admit consumptions: one upsert for a lone consumption, one transaction for a batch.
//!
//! A consumption locks the tenant's usage rows it touches (an upsert that changes nothing, which
//! locks the row whether it existed or not, in resource order so concurrent batches never
//! deadlock), decides with the locked values, writes the new values and the request ids, and
//! commits before anyone is answered. Replicas sharing the catalog serialise on those row locks,
//! so no interleaving can admit more than a limit, and nothing admitted is lost in a crash.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use super::entity::{quota_usage, request_id};
use super::{Backend, Catalog, RequestRecord, db_error};
use crate::domain::{Error, TenantId};

/// A resource's stored usage: the window it counts (0 for a gauge) and the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub window_start: i64,
    pub used: i64,
}

/// A tenant's resource.
pub type UsageKey = (TenantId, String);

/// What a batch decided, to be written before the transaction commits.
#[derive(Debug, Default)]
pub struct BatchWrite {
    /// New usage of each tenant's resource that changed.
    pub usage: Vec<(UsageKey, Usage)>,
    /// Request ids of admitted requests, with their answers.
    pub records: Vec<RequestRecord>,
}

impl Catalog {
    /// The tenant's stored usage, by resource.
    pub async fn usage(&self, tenant: TenantId) -> Result<HashMap<String, Usage>, Error> {
        let rows = quota_usage::Entity::find()
            .filter(quota_usage::Column::TenantId.eq(tenant.as_uuid()))
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.resource,
                    Usage {
                        window_start: r.window_start,
                        used: r.used,
                    },
                )
            })
            .collect())
    }

    /// Sets a gauge's level outright.
    pub async fn set_gauge(
        &self,
        tenant: TenantId,
        resource: &str,
        value: i64,
    ) -> Result<(), Error> {
        upsert_gauge(self.conn(), tenant, resource, value)
            .await
            .map_err(db_error)
    }

    /// Gives back units counted ahead but never handed out, if their window is still the
    /// current one.
    pub async fn release_units(
        &self,
        (tenant, resource): &UsageKey,
        window_start: i64,
        units: i64,
    ) -> Result<(), Error> {
        quota_usage::Entity::update_many()
            .col_expr(
                quota_usage::Column::Used,
                Expr::col(quota_usage::Column::Used).sub(units),
            )
            .filter(quota_usage::Column::TenantId.eq(tenant.as_uuid()))
            .filter(quota_usage::Column::Resource.eq(resource.as_str()))
            .filter(quota_usage::Column::WindowStart.eq(window_start))
            .filter(quota_usage::Column::Used.gte(units))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Consumes `amount` of one resource in a single atomic statement, the common case: an
    /// upsert whose update only happens while the result stays within `limit` (-1 unlimited).
    /// The row lock the upsert takes serialises it with every other writer of the row. Returns
    /// the new usage, or `None` when admitting would exceed the limit (nothing is written).
    pub async fn consume_one(
        &self,
        tenant: TenantId,
        resource: &str,
        window_start: i64,
        amount: i64,
        limit: i64,
    ) -> Result<Option<Usage>, Error> {
        if limit >= 0 && amount > limit {
            return Ok(None);
        }
        let sql = "INSERT INTO quota_usage (tenant_id, resource, window_start, used, update_time) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, resource) DO UPDATE SET \
               used = (CASE WHEN quota_usage.window_start = $3 THEN quota_usage.used ELSE 0 END) + $4, \
               window_start = $3, update_time = $5 \
             WHERE CAST($6 AS BIGINT) < 0 \
               OR (CASE WHEN quota_usage.window_start = $3 THEN quota_usage.used ELSE 0 END) + $4 <= CAST($6 AS BIGINT) \
             RETURNING used";
        let backend = self.conn().get_database_backend();
        let sql = match backend {
            DbBackend::Sqlite => sql.replace('$', "?"),
            _ => sql.to_owned(),
        };
        let row = self
            .conn()
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    tenant.as_uuid().into(),
                    resource.into(),
                    window_start.into(),
                    amount.into(),
                    crate::service::now().into(),
                    limit.into(),
                ],
            ))
            .await
            .map_err(db_error)?;
        row.map(|r| {
            Ok(Usage {
                window_start,
                used: r.try_get::<i64>("", "used").map_err(db_error)?,
            })
        })
        .transpose()
    }

    /// Consumes many single-resource amounts in one statement (PostgreSQL): each row's usage
    /// goes up by its amount only while it stays within the row's limit, atomically per row.
    /// Answers the new usage of every row it raised; a row that is missing (never used yet) or
    /// would exceed its limit is left out, for the caller to decide one by one. Each key must
    /// appear once. On SQLite, or if the statement met a deadlock with another replica, it
    /// raises nothing and answers an empty map.
    pub async fn consume_many(
        &self,
        rows: &[(UsageKey, i64, i64, i64)],
    ) -> Result<HashMap<UsageKey, i64>, Error> {
        if self.backend != Backend::Postgres || rows.is_empty() {
            return Ok(HashMap::new());
        }
        // One statement shape whatever the batch size, so it is prepared once per connection.
        let sql = "WITH req AS (SELECT * FROM jsonb_to_recordset($1::jsonb) \
               AS r(tenant_id uuid, resource text, window_start bigint, amount bigint, lim bigint)) \
             UPDATE quota_usage q SET \
               used = (CASE WHEN q.window_start = req.window_start THEN q.used ELSE 0 END) + req.amount, \
               window_start = req.window_start, update_time = $2 \
             FROM req \
             WHERE q.tenant_id = req.tenant_id AND q.resource = req.resource \
               AND (req.lim < 0 \
                 OR (CASE WHEN q.window_start = req.window_start THEN q.used ELSE 0 END) + req.amount <= req.lim) \
             RETURNING q.tenant_id, q.resource, q.used";
        let batch: Vec<serde_json::Value> = rows
            .iter()
            .map(|((tenant, resource), window_start, amount, limit)| {
                serde_json::json!({
                    "tenant_id": tenant.to_string(),
                    "resource": resource,
                    "window_start": window_start,
                    "amount": amount,
                    "lim": limit,
                })
            })
            .collect();
        let result = self
            .conn()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                [
                    serde_json::Value::Array(batch).into(),
                    crate::service::now().into(),
                ],
            ))
            .await;
        let raised = match result {
            Ok(raised) => raised,
            Err(e) if e.to_string().contains("deadlock detected") => {
                tracing::debug!("a consumption batch met another replica's; deciding one by one");
                return Ok(HashMap::new());
            }
            Err(e) => return Err(db_error(e)),
        };
        raised
            .iter()
            .map(|r| {
                let tenant: Uuid = r.try_get("", "tenant_id").map_err(db_error)?;
                let resource: String = r.try_get("", "resource").map_err(db_error)?;
                let used: i64 = r.try_get("", "used").map_err(db_error)?;
                Ok(((TenantId::from(tenant), resource), used))
            })
            .collect()
    }

    /// Runs one consumption batch in a transaction: locks the usage rows of `keys` (tenant and
    /// resource, in key order, so concurrent batches never deadlock), reads the request records
    /// of `request_ids`, lets `decide` choose what to write given both, writes it and commits.
    /// `decide`'s answer is returned only once the commit succeeded.
    pub async fn consume_batch<T>(
        &self,
        keys: &[UsageKey],
        request_ids: &[Uuid],
        decide: impl FnOnce(
            &BTreeMap<UsageKey, Usage>,
            &HashMap<Uuid, RequestRecord>,
        ) -> (BatchWrite, T),
    ) -> Result<T, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        let now = crate::service::now();
        let current = lock_usage(&txn, keys).await.map_err(db_error)?;
        // Read after the locks: a retry racing its first attempt on another replica waits on the
        // same rows, then sees the first attempt's record.
        let records: HashMap<Uuid, RequestRecord> = if request_ids.is_empty() {
            HashMap::new()
        } else {
            request_id::Entity::find()
                .filter(request_id::Column::RequestId.is_in(request_ids.iter().copied()))
                .all(&txn)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|r| {
                    (
                        r.request_id,
                        RequestRecord {
                            request_id: r.request_id,
                            method: r.method,
                            request_hash: r.request_hash,
                            resource_id: r.resource_id,
                            result: r.result,
                        },
                    )
                })
                .collect()
        };
        let (write, answer) = decide(&current, &records);
        if !write.usage.is_empty() {
            // The rows exist and are locked: this upsert only ever updates them, all in one
            // statement.
            let rows =
                write
                    .usage
                    .iter()
                    .map(|((tenant, resource), usage)| quota_usage::ActiveModel {
                        tenant_id: Set(tenant.as_uuid()),
                        resource: Set(resource.clone()),
                        window_start: Set(usage.window_start),
                        used: Set(usage.used),
                        update_time: Set(now),
                    });
            quota_usage::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        quota_usage::Column::TenantId,
                        quota_usage::Column::Resource,
                    ])
                    .update_columns([
                        quota_usage::Column::WindowStart,
                        quota_usage::Column::Used,
                        quota_usage::Column::UpdateTime,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        if !write.records.is_empty() {
            let rows = write.records.into_iter().map(|r| request_id::ActiveModel {
                request_id: Set(r.request_id),
                method: Set(r.method),
                request_hash: Set(r.request_hash),
                resource_id: Set(r.resource_id),
                result: Set(r.result),
                create_time: Set(now),
            });
            request_id::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(answer)
    }
}

/// Sets a gauge's level outright, on any connection (a transaction that holds the row's lock,
/// say).
pub(super) async fn upsert_gauge<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    resource: &str,
    value: i64,
) -> Result<(), sea_orm::DbErr> {
    let row = quota_usage::ActiveModel {
        tenant_id: Set(tenant.as_uuid()),
        resource: Set(resource.to_owned()),
        window_start: Set(0),
        used: Set(value),
        update_time: Set(crate::service::now()),
    };
    quota_usage::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([quota_usage::Column::TenantId, quota_usage::Column::Resource])
                .update_columns([
                    quota_usage::Column::WindowStart,
                    quota_usage::Column::Used,
                    quota_usage::Column::UpdateTime,
                ])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Locks the usage rows of `keys` in `txn`, creating missing ones (locked too), and answers what
/// they hold: an upsert that keeps each row as it is, in key order so that concurrent lockers
/// never deadlock, in one round trip on both backends.
pub(super) async fn lock_usage<C: ConnectionTrait>(
    txn: &C,
    keys: &[UsageKey],
) -> Result<BTreeMap<UsageKey, Usage>, sea_orm::DbErr> {
    let now = crate::service::now();
    let mut sorted: Vec<&UsageKey> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    let rows = sorted
        .iter()
        .map(|(tenant, resource)| quota_usage::ActiveModel {
            tenant_id: Set(tenant.as_uuid()),
            resource: Set(resource.clone()),
            window_start: Set(0),
            used: Set(0),
            update_time: Set(now),
        });
    let locked = quota_usage::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([quota_usage::Column::TenantId, quota_usage::Column::Resource])
                .value(
                    quota_usage::Column::Used,
                    Expr::col((quota_usage::Entity, quota_usage::Column::Used)),
                )
                .to_owned(),
        )
        .exec_with_returning(txn)
        .await?;
    Ok(locked
        .into_iter()
        .map(|r| {
            (
                (TenantId::from(r.tenant_id), r.resource),
                Usage {
                    window_start: r.window_start,
                    used: r.used,
                },
            )
        })
        .collect())
}
