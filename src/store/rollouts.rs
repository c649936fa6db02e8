//! Rollouts in the catalog: the rollout, its targets (one per tenant) and its event log.
//!
//! Workers on any number of replicas claim targets with `FOR UPDATE SKIP LOCKED` (PostgreSQL;
//! SQLite serialises writers anyway), each claim carrying a lease that its worker renews. A
//! target whose lease ran out — its replica died — is claimed again, so a rollout survives
//! crashes. Every change of a target is written together with its event, in one transaction.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{Expr, Query},
};
use serde_json::json;
use uuid::Uuid;

use super::component_mirror::plan_lists;
use super::entity::{plan, rollout, rollout_target, tenant, tenant_component};
use super::rollout_work::event;
use super::{Catalog, audit, db_error, is_unique_violation};
use crate::domain::{
    CallContext, Error, ErrorPolicy, Labels, Rollout, RolloutCounts, RolloutState, Selector,
    TargetState, TenantId, TenantState,
};

/// A target to insert with a new rollout.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub tenant: TenantId,
    pub state: TargetState,
    pub from_version: Option<String>,
}

/// A tenant a selector matched, with the catalog's mirror of its version of the component.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub tenant: TenantId,
    /// `None` when no migration of the component is applied (or the component is new to the
    /// tenant: it has no row for it).
    pub version: Option<String>,
}

impl Catalog {
    /// Tenants a selector matches that have storage, are not deleted and whose plan lists
    /// `component`, in id order, each with its mirrored version of the component: one query,
    /// the version read per tenant by the (tenant, component) primary key.
    pub async fn rollout_candidates(
        &self,
        selector: &Selector,
        component: &str,
        skip_drifted: bool,
    ) -> Result<Vec<Candidate>, Error> {
        // Here only: elsewhere in this file its `max` would hide `Ord::max` on plain numbers.
        use sea_orm::sea_query::ExprTrait;
        let listed = Query::select()
            .expr(Expr::val(1))
            .from(plan::Entity)
            .and_where(
                Expr::col((plan::Entity, plan::Column::Id))
                    .equals((tenant::Entity, tenant::Column::Plan)),
            )
            .and_where(plan_lists(component))
            .to_owned();
        let version = Query::select()
            .column((tenant_component::Entity, tenant_component::Column::Version))
            .from(tenant_component::Entity)
            .and_where(
                Expr::col((tenant_component::Entity, tenant_component::Column::TenantId))
                    .equals((tenant::Entity, tenant::Column::Id)),
            )
            .and_where(
                Expr::col((
                    tenant_component::Entity,
                    tenant_component::Column::Component,
                ))
                .eq(component),
            )
            .to_owned();
        let mut query = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .expr_as(Expr::SubQuery(None, Box::new(version.into())), "version")
            .filter(tenant::Column::ProvisionTime.is_not_null())
            .filter(tenant::Column::State.ne(TenantState::Deleted.as_str()))
            .filter(Expr::exists(listed));
        if skip_drifted {
            // The tenant's last drift check, when it found the storage drifted.
            query = query.filter(Expr::cust(
                "NOT EXISTS (SELECT 1 FROM tenant_drift d \
                 WHERE d.tenant_id = \"tenants\".\"id\" AND d.drifted)",
            ));
        }
        match selector {
            Selector::All => {}
            Selector::Labels(labels) => query = query.filter(self.label_condition(labels)),
            Selector::Tenants(ids) => {
                query = query.filter(tenant::Column::Id.is_in(ids.iter().map(TenantId::as_uuid)))
            }
        }
        let rows: Vec<(Uuid, Option<String>)> = query
            .order_by_asc(tenant::Column::Id)
            .into_tuple()
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, version)| Candidate {
                tenant: id.into(),
                version,
            })
            .collect())
    }

    /// Inserts a rollout with its targets. With a request id already used, returns the id of the
    /// rollout it started, and the hash of the request that started it, instead.
    pub async fn insert_rollout(
        &self,
        ctx: &CallContext,
        r: &Rollout,
        request: Option<(Uuid, &str)>,
        targets: &[NewTarget],
    ) -> Result<Option<(Uuid, Option<String>)>, Error> {
        let request_id = request.map(|(id, _)| id);
        if let Some(existing) = self.rollout_by_request(request_id).await? {
            return Ok(Some(existing));
        }
        let ctx = ctx.clone();
        let result = self
            .conn()
            .transaction::<_, (), sea_orm::DbErr>(|txn| {
                let row = rollout::ActiveModel {
                    id: Set(r.id),
                    component: Set(r.component.clone()),
                    target_version: Set(r.target_version.clone()),
                    selector: Set(selector_json(&r.selector)),
                    max_concurrency: Set(r.max_concurrency as i32),
                    canary_count: Set(r.canary_count as i32),
                    error_policy: Set(r.error_policy.as_str().to_owned()),
                    max_failure_ratio: Set(r.max_failure_ratio),
                    state: Set(r.state.as_str().to_owned()),
                    error: Set(None),
                    request_id: Set(request_id),
                    request_hash: Set(request.map(|(_, hash)| hash.to_owned())),
                    create_time: Set(r.create_time),
                    start_time: Set(None),
                    end_time: Set(None),
                };
                let now = r.create_time;
                let targets: Vec<_> = targets
                    .iter()
                    .enumerate()
                    .map(|(position, t)| rollout_target::ActiveModel {
                        rollout_id: Set(r.id),
                        tenant_id: Set(t.tenant.as_uuid()),
                        position: Set(position as i32),
                        state: Set(t.state.as_str().to_owned()),
                        attempts: Set(0),
                        from_version: Set(t.from_version.clone()),
                        to_version: Set((t.state == TargetState::Skipped)
                            .then(|| t.from_version.clone())
                            .flatten()),
                        error: Set(None),
                        claimed_by: Set(None),
                        lease_until: Set(None),
                        duration_ms: Set(None),
                        update_time: Set(now),
                    })
                    .collect();
                Box::pin(async move {
                    rollout::Entity::insert(row)
                        .exec_without_returning(txn)
                        .await?;
                    audit::record(txn, &ctx, None).await?;
                    // Chunks keep each statement under SQLite's bound-parameter limit.
                    for chunk in targets.chunks(500) {
                        rollout_target::Entity::insert_many(chunk.to_vec())
                            .exec_without_returning(txn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await;
        match result {
            Ok(()) => Ok(None),
            Err(sea_orm::TransactionError::Transaction(e)) if is_unique_violation(&e) => self
                .rollout_by_request(request_id)
                .await?
                .map(Some)
                .ok_or_else(|| db_error(e)),
            Err(
                sea_orm::TransactionError::Transaction(e)
                | sea_orm::TransactionError::Connection(e),
            ) => Err(db_error(e)),
        }
    }

    async fn rollout_by_request(
        &self,
        request_id: Option<Uuid>,
    ) -> Result<Option<(Uuid, Option<String>)>, Error> {
        let Some(request_id) = request_id else {
            return Ok(None);
        };
        let row = rollout::Entity::find()
            .filter(rollout::Column::RequestId.eq(request_id))
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| (r.id, r.request_hash)))
    }

    pub async fn rollout(&self, id: Uuid) -> Result<Option<Rollout>, Error> {
        let Some(row) = rollout::Entity::find_by_id(id)
            .one(self.conn())
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let counts = self.rollout_counts(id, None).await?;
        to_domain(row, counts).map(Some)
    }

    /// Rollouts newest first, optionally in some states, before (older than) `before`.
    pub async fn list_rollouts(
        &self,
        states: &[RolloutState],
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Rollout>, Error> {
        let mut query = rollout::Entity::find();
        if !states.is_empty() {
            query = query.filter(rollout::Column::State.is_in(states.iter().map(|s| s.as_str())));
        }
        if let Some(before) = before {
            query = query.filter(rollout::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(rollout::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
        let counts = self.rollouts_counts(&ids).await?;
        rows.into_iter()
            .map(|row| {
                let of = counts.get(&row.id).copied().unwrap_or_default();
                to_domain(row, of)
            })
            .collect()
    }

    pub async fn active_rollouts(&self) -> Result<Vec<Uuid>, Error> {
        let rows = rollout::Entity::find()
            .filter(rollout::Column::State.is_in(RolloutState::ACTIVE.map(|s| s.as_str())))
            .order_by_asc(rollout::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Targets by state; with `first`, only among the first `first` positions (the canaries).
    pub async fn rollout_counts(
        &self,
        id: Uuid,
        first: Option<i32>,
    ) -> Result<RolloutCounts, Error> {
        let mut query = rollout_target::Entity::find()
            .select_only()
            .column(rollout_target::Column::State)
            .column_as(rollout_target::Column::TenantId.count(), "n")
            .filter(rollout_target::Column::RolloutId.eq(id))
            .group_by(rollout_target::Column::State);
        if let Some(first) = first {
            query = query.filter(rollout_target::Column::Position.lt(first));
        }
        let rows: Vec<(String, i64)> = query
            .into_tuple()
            .all(self.conn())
            .await
            .map_err(db_error)?;
        let mut counts = RolloutCounts::default();
        for (state, n) in rows {
            add_count(&mut counts, &state, n)?;
        }
        Ok(counts)
    }

    /// Targets by state of each rollout in `ids`, in one query. A rollout without targets (or
    /// not in the catalog) has no entry.
    pub async fn rollouts_counts(
        &self,
        ids: &[Uuid],
    ) -> Result<BTreeMap<Uuid, RolloutCounts>, Error> {
        let mut out = BTreeMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let rows: Vec<(Uuid, String, i64)> = rollout_target::Entity::find()
            .select_only()
            .column(rollout_target::Column::RolloutId)
            .column(rollout_target::Column::State)
            .column_as(rollout_target::Column::TenantId.count(), "n")
            .filter(rollout_target::Column::RolloutId.is_in(ids.iter().copied()))
            .group_by(rollout_target::Column::RolloutId)
            .group_by(rollout_target::Column::State)
            .into_tuple()
            .all(self.conn())
            .await
            .map_err(db_error)?;
        for (id, state, n) in rows {
            add_count(out.entry(id).or_default(), &state, n)?;
        }
        Ok(out)
    }

    /// Moves a rollout from one of `from` to `to` (recording why), with a `finished` event when
    /// `to` ends it. `false` when it was no longer in `from`.
    pub async fn transition_rollout(
        &self,
        ctx: &CallContext,
        id: Uuid,
        from: &[RolloutState],
        to: RolloutState,
        error: Option<&str>,
    ) -> Result<bool, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        let mut update = rollout::Entity::update_many()
            .col_expr(rollout::Column::State, Expr::value(to.as_str()))
            .filter(rollout::Column::Id.eq(id))
            .filter(rollout::Column::State.is_in(from.iter().map(|s| s.as_str())));
        if !to.is_active() {
            update = update.col_expr(rollout::Column::EndTime, Expr::value(self.now()));
        }
        if let Some(error) = error {
            update = update.col_expr(rollout::Column::Error, Expr::value(error.to_owned()));
        }
        let moved = update.exec(&txn).await.map_err(db_error)?.rows_affected == 1;
        if moved {
            audit::record(&txn, ctx, None).await.map_err(db_error)?;
        }
        if moved && !to.is_active() {
            event(
                &txn,
                self.now(),
                id,
                "finished",
                None,
                json!({ "state": to.as_str(), "error": error }),
            )
            .await?;
        }
        txn.commit().await.map_err(db_error)?;
        if moved && !to.is_active() {
            self.endings.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(moved)
    }

    /// Changes each time this process ends a rollout ([`Self::transition_rollout`]). Rollouts
    /// ended by other replicas are not seen here.
    pub fn rollout_endings(&self) -> tokio::sync::watch::Receiver<u64> {
        self.endings.subscribe()
    }
}

/// Adds a `GROUP BY state` row (the state as stored, its count) to `counts`.
fn add_count(counts: &mut RolloutCounts, state: &str, n: i64) -> Result<(), Error> {
    let state = TargetState::parse(state)
        .ok_or_else(|| Error::Internal(format!("bad target state {state}")))?;
    counts.add(state, n as u32);
    Ok(())
}

fn selector_json(selector: &Selector) -> serde_json::Value {
    match selector {
        Selector::All => json!({ "all": true }),
        Selector::Labels(labels) => json!({ "labels": labels.as_map() }),
        Selector::Tenants(ids) => {
            json!({ "tenants": ids.iter().map(ToString::to_string).collect::<Vec<_>>() })
        }
    }
}

fn selector_from_json(value: &serde_json::Value) -> Option<Selector> {
    if value.get("all").is_some() {
        return Some(Selector::All);
    }
    if let Some(labels) = value.get("labels") {
        let map: BTreeMap<String, String> = serde_json::from_value(labels.clone()).ok()?;
        return Some(Selector::Labels(Labels::from_trusted(map)));
    }
    let ids = value.get("tenants")?.as_array()?;
    ids.iter()
        .map(|v| v.as_str().and_then(TenantId::parse))
        .collect::<Option<Vec<_>>>()
        .map(Selector::Tenants)
}

fn to_domain(row: rollout::Model, counts: RolloutCounts) -> Result<Rollout, Error> {
    let corrupt = |what: &str| {
        Error::Internal(format!(
            "catalog row of rollout {} has an invalid {what}",
            row.id
        ))
    };
    Ok(Rollout {
        id: row.id,
        selector: selector_from_json(&row.selector).ok_or_else(|| corrupt("selector"))?,
        max_concurrency: row.max_concurrency.max(1) as u32,
        canary_count: row.canary_count.max(0) as u32,
        error_policy: ErrorPolicy::parse(&row.error_policy)
            .ok_or_else(|| corrupt("error policy"))?,
        max_failure_ratio: row.max_failure_ratio,
        state: RolloutState::parse(&row.state).ok_or_else(|| corrupt("state"))?,
        error: row.error.clone(),
        create_time: row.create_time,
        start_time: row.start_time,
        end_time: row.end_time,
        target_version: row.target_version,
        component: row.component,
        counts,
    })
}
