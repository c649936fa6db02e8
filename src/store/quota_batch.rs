//! The consumption batch: one transaction that locks the usage rows a batch touches, claims
//! its request ids, lets the caller decide, and writes what it decided (see `store::quota`).
//!
//! One caller's bad request id fails that caller alone: ids are claimed with
//! `ON CONFLICT DO NOTHING`, so an id another call holds (another replica's batch, another
//! method) makes its consumption a replay or a refusal instead of a unique violation that
//! would roll back everyone batched with it.

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::entity::{quota_usage, request_id};
use super::{Catalog, RequestRecord, Usage, UsageKey, db_error};
use crate::domain::{Error, TenantId};

/// What a batch decided, to be written before the transaction commits.
#[derive(Debug, Default)]
pub struct BatchWrite {
    /// New usage of each tenant's resource that changed.
    pub usage: Vec<(UsageKey, Usage)>,
    /// Request ids of admitted requests, with their answers. Only ids the batch claimed.
    pub records: Vec<RequestRecord>,
}

impl Catalog {
    /// Runs one consumption batch in a transaction: locks the usage rows of `keys` (tenant and
    /// resource, in key order), claims the request ids of `claims` (in id order, without a
    /// result yet), reads the records of the ids it could not claim, lets `decide` choose what
    /// to write given both, writes it, gives back the claims `decide` did not answer, and
    /// commits. `decide`'s answer is returned only once the commit succeeded.
    pub async fn consume_batch<T>(
        &self,
        keys: &[UsageKey],
        claims: &[RequestRecord],
        decide: impl FnOnce(
            &BTreeMap<UsageKey, Usage>,
            &HashMap<Uuid, RequestRecord>,
        ) -> (BatchWrite, T),
    ) -> Result<T, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        let now = self.now();
        let current = lock_usage(&txn, now, keys).await.map_err(db_error)?;
        // Claimed after the locks: a retry racing its first attempt on another replica waits on
        // the same rows, then finds the first attempt's record.
        let claimed = claim(&txn, claims, now).await.map_err(db_error)?;
        let taken: Vec<Uuid> = claims
            .iter()
            .map(|c| c.request_id)
            .filter(|id| !claimed.contains(id))
            .collect();
        let records = read_records(&txn, &taken).await.map_err(db_error)?;
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
        let answered: HashSet<Uuid> = write.records.iter().map(|r| r.request_id).collect();
        if let Some(stray) = answered.iter().find(|id| !claimed.contains(*id)) {
            return Err(Error::Internal(format!(
                "request id {stray} was answered without being claimed"
            )));
        }
        if !write.records.is_empty() {
            // Every one of these rows is this transaction's own claim: the upsert fills it in.
            let rows = write.records.into_iter().map(|r| request_id::ActiveModel {
                request_id: Set(r.request_id),
                method: Set(r.method),
                request_hash: Set(r.request_hash),
                resource_id: Set(r.resource_id),
                result: Set(r.result),
                create_time: Set(now),
            });
            request_id::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::column(request_id::Column::RequestId)
                        .update_columns([
                            request_id::Column::Method,
                            request_id::Column::RequestHash,
                            request_id::Column::ResourceId,
                            request_id::Column::Result,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        // Claims of refused consumptions go: a retry after the refusal is decided afresh.
        let unanswered: Vec<Uuid> = claimed
            .iter()
            .filter(|id| !answered.contains(*id))
            .copied()
            .collect();
        if !unanswered.is_empty() {
            request_id::Entity::delete_many()
                .filter(request_id::Column::RequestId.is_in(unanswered))
                .exec(&txn)
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(answer)
    }
}

/// Inserts a record without a result for each id of `claims` that nobody holds, in id order
/// (so two batches claiming the same ids queue instead of deadlocking), and answers the ids
/// inserted. An id another transaction is inserting waits for it to end first.
async fn claim<C: ConnectionTrait>(
    txn: &C,
    claims: &[RequestRecord],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<HashSet<Uuid>, sea_orm::DbErr> {
    let mut sorted: Vec<&RequestRecord> = claims.iter().collect();
    sorted.sort_by_key(|c| c.request_id);
    sorted.dedup_by_key(|c| c.request_id);
    if sorted.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = sorted.into_iter().map(|c| request_id::ActiveModel {
        request_id: Set(c.request_id),
        method: Set(c.method.clone()),
        request_hash: Set(c.request_hash.clone()),
        resource_id: Set(c.resource_id),
        result: Set(None),
        create_time: Set(now),
    });
    let inserted = request_id::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(request_id::Column::RequestId)
                .do_nothing()
                .to_owned(),
        )
        .exec_with_returning_keys(txn)
        .await?;
    Ok(inserted.into_iter().collect())
}

/// The records of ids this batch could not claim. One that is gone by now (its holder gave it
/// back after the claim was refused) reads as held by a call still running: its caller is told
/// the id is in use, and a retry claims it.
async fn read_records<C: ConnectionTrait>(
    txn: &C,
    taken: &[Uuid],
) -> Result<HashMap<Uuid, RequestRecord>, sea_orm::DbErr> {
    if taken.is_empty() {
        return Ok(HashMap::new());
    }
    let mut records: HashMap<Uuid, RequestRecord> = request_id::Entity::find()
        .filter(request_id::Column::RequestId.is_in(taken.iter().copied()))
        .all(txn)
        .await?
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
        .collect();
    for id in taken {
        records.entry(*id).or_insert_with(|| RequestRecord {
            request_id: *id,
            method: String::new(),
            request_hash: String::new(),
            resource_id: Uuid::nil(),
            result: None,
        });
    }
    Ok(records)
}

/// Locks the usage rows of `keys` in `txn`, creating missing ones (locked too), and answers what
/// they hold: an upsert that keeps each row as it is, in key order so that concurrent lockers
/// never deadlock, in one round trip on both backends.
pub(super) async fn lock_usage<C: ConnectionTrait>(
    txn: &C,
    now: chrono::DateTime<chrono::Utc>,
    keys: &[UsageKey],
) -> Result<BTreeMap<UsageKey, Usage>, sea_orm::DbErr> {
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
