//! Queries on `quota_usage`: reading a tenant's usage, setting a gauge, and the statements that
//! admit consumptions: one upsert for a lone consumption, one transaction for a batch.
//!
//! A consumption locks the tenant's usage rows it touches (an upsert that changes nothing, which
//! locks the row whether it existed or not), claims its request ids, decides with the locked
//! values, writes the new values and the request ids' answers, and commits before anyone is
//! answered. Replicas sharing the catalog serialise on those row locks, so no interleaving can
//! admit more than a limit, and nothing admitted is lost in a crash.
//!
//! Every statement here locks usage rows in key order (tenant, then resource), and a batch
//! claims its request ids in id order after its rows, so two replicas' batches touching the
//! same rows or ids never deadlock. A counter's stored window only ever moves forward: a
//! statement given an earlier window than the row holds (a replica whose clock lags) counts in
//! the row's window instead of starting the earlier one again.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use super::entity::quota_usage;
use super::{Backend, Catalog, db_error, sqlstate};
use crate::domain::{Error, TenantId};

/// A resource's stored usage: the window it counts (0 for a gauge) and the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub window_start: i64,
    pub used: i64,
}

/// A tenant's resource.
pub type UsageKey = (TenantId, String);

/// PostgreSQL's SQLSTATE for "deadlock detected": one of the transactions in the cycle was
/// rolled back. Matched by code, never by message text, which follows the server's
/// `lc_messages`.
const DEADLOCK_DETECTED: &str = "40P01";

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
        upsert_gauge(self.conn(), self.now(), tenant, resource, value)
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
    /// The row lock the upsert takes serialises it with every other writer of the row. A row
    /// already in a later window than `window_start` stays in it, and the amount counts there.
    /// Returns the new usage (with the window it counts in), or `None` when admitting would
    /// exceed the limit (nothing is written).
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
               used = (CASE WHEN quota_usage.window_start >= $3 THEN quota_usage.used ELSE 0 END) + $4, \
               window_start = (CASE WHEN quota_usage.window_start > $3 THEN quota_usage.window_start ELSE $3 END), \
               update_time = $5 \
             WHERE CAST($6 AS BIGINT) < 0 \
               OR (CASE WHEN quota_usage.window_start >= $3 THEN quota_usage.used ELSE 0 END) + $4 <= CAST($6 AS BIGINT) \
             RETURNING used, window_start";
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
                    self.now().into(),
                    limit.into(),
                ],
            ))
            .await
            .map_err(db_error)?;
        row.map(|r| {
            Ok(Usage {
                window_start: r.try_get::<i64>("", "window_start").map_err(db_error)?,
                used: r.try_get::<i64>("", "used").map_err(db_error)?,
            })
        })
        .transpose()
    }

    /// Consumes many single-resource amounts in one statement (PostgreSQL): each row's usage
    /// goes up by its amount only while it stays within the row's limit, atomically per row,
    /// in the row's window when that is later than the one asked. Answers the new usage of
    /// every row it raised; a row that is missing (never used yet) or would exceed its limit is
    /// left out, for the caller to decide one by one. Each key must appear once. The rows are
    /// locked in key order first, so two replicas' statements over the same rows queue instead
    /// of deadlocking. On SQLite, or if the statement met a deadlock all the same (another
    /// writer that locks in another order), it raises nothing and answers an empty map.
    pub async fn consume_many(
        &self,
        rows: &[(UsageKey, i64, i64, i64)],
    ) -> Result<HashMap<UsageKey, Usage>, Error> {
        if self.backend != Backend::Postgres || rows.is_empty() {
            return Ok(HashMap::new());
        }
        // One statement shape whatever the batch size, so it is prepared once per connection.
        // `locked` takes the row locks in key order before the update touches any row (an
        // UPDATE ... FROM alone locks in whatever order its join produces); it is materialised,
        // so it runs once, in full, as written. Resources are ordered by their bytes, as Rust
        // orders them in `lock_usage`, whatever the database's collation.
        let sql = "WITH req AS (SELECT * FROM jsonb_to_recordset($1::jsonb) \
               AS r(tenant_id uuid, resource text, window_start bigint, amount bigint, lim bigint)), \
             locked AS MATERIALIZED (SELECT q.tenant_id, q.resource FROM quota_usage q \
               JOIN req ON q.tenant_id = req.tenant_id AND q.resource = req.resource \
               ORDER BY q.tenant_id, q.resource COLLATE \"C\" FOR UPDATE OF q) \
             UPDATE quota_usage q SET \
               used = (CASE WHEN q.window_start >= req.window_start THEN q.used ELSE 0 END) + req.amount, \
               window_start = GREATEST(q.window_start, req.window_start), update_time = $2 \
             FROM req JOIN locked l ON l.tenant_id = req.tenant_id AND l.resource = req.resource \
             WHERE q.tenant_id = req.tenant_id AND q.resource = req.resource \
               AND (req.lim < 0 \
                 OR (CASE WHEN q.window_start >= req.window_start THEN q.used ELSE 0 END) + req.amount <= req.lim) \
             RETURNING q.tenant_id, q.resource, q.used, q.window_start";
        let mut sorted: Vec<&(UsageKey, i64, i64, i64)> = rows.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let batch: Vec<serde_json::Value> = sorted
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
                [serde_json::Value::Array(batch).into(), self.now().into()],
            ))
            .await;
        let raised = match result {
            Ok(raised) => raised,
            Err(e) if sqlstate(&e).as_deref() == Some(DEADLOCK_DETECTED) => {
                tracing::warn!("a consumption batch met a deadlock; deciding one by one");
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
                let window_start: i64 = r.try_get("", "window_start").map_err(db_error)?;
                Ok((
                    (TenantId::from(tenant), resource),
                    Usage { window_start, used },
                ))
            })
            .collect()
    }
}

/// Sets a gauge's level outright, on any connection (a transaction that holds the row's lock,
/// say).
pub(super) async fn upsert_gauge<C: ConnectionTrait>(
    conn: &C,
    now: chrono::DateTime<chrono::Utc>,
    tenant: TenantId,
    resource: &str,
    value: i64,
) -> Result<(), sea_orm::DbErr> {
    let row = quota_usage::ActiveModel {
        tenant_id: Set(tenant.as_uuid()),
        resource: Set(resource.to_owned()),
        window_start: Set(0),
        used: Set(value),
        update_time: Set(now),
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
