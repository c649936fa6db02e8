//! The worker's side of rollouts: claiming targets under a lease, renewing leases, recording
//! outcomes, and the event log that watchers read. Every change of a target is written with its
//! event in one transaction.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait, Value, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::entity::{rollout, rollout_event, rollout_target};
use super::{Catalog, db_error};
use crate::domain::{Error, RolloutState, TargetState, Tenant, TenantId};

/// A target claimed by a worker.
#[derive(Debug, Clone)]
pub struct Claim {
    pub tenant: TenantId,
    pub attempts: i32,
    /// The catalog's mirror of the tenant's version of the rollout's component, read with the
    /// claim (`tenant_components`); `None` when none of its migrations is applied, or the
    /// tenant has no row for it (the component is new to it).
    pub version: Option<String>,
}

impl Claim {
    /// A claim from a row of a claiming statement: its `tenant_id`, `attempts` and
    /// `component_version` columns.
    pub(super) fn from_row(row: &sea_orm::QueryResult) -> Result<Self, Error> {
        let tenant: Uuid = row.try_get("", "tenant_id").map_err(db_error)?;
        Ok(Self {
            tenant: tenant.into(),
            attempts: row.try_get("", "attempts").map_err(db_error)?,
            version: row.try_get("", "component_version").map_err(db_error)?,
        })
    }
}

/// How a claimed target ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Migrated {
        from: Option<String>,
        to: Option<String>,
        duration_ms: i64,
    },
    Skipped {
        version: Option<String>,
        reason: String,
    },
    Failed {
        error: String,
    },
    /// A transient problem: the target goes back to PENDING for another attempt.
    Retry {
        error: String,
    },
}

/// One entry of a rollout's event log.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub kind: String,
    pub tenant: Option<TenantId>,
    pub detail: serde_json::Value,
    pub time: DateTime<Utc>,
}

impl Catalog {
    /// Claims up to `limit` targets of an active rollout for worker `me`: PENDING ones, and
    /// with `expired` RUNNING ones whose lease has run out. Only positions below `below` (the
    /// canaries, while they run). Moves a PENDING rollout to RUNNING on its first claim. Each
    /// claim comes with the mirror of its tenant's version of the rollout's component; on
    /// PostgreSQL with its tenant's row too, both read by the same statement.
    pub async fn claim_targets(
        &self,
        id: Uuid,
        me: &str,
        limit: u32,
        below: i32,
        lease_ms: i64,
        expired: bool,
    ) -> Result<Vec<(Claim, Option<Tenant>)>, Error> {
        let now_ms = self.now().timestamp_millis();
        let values: Vec<Value> = vec![
            me.into(),
            (now_ms + lease_ms).into(),
            self.now().into(),
            id.into(),
            below.into(),
            now_ms.into(),
            i64::from(limit).into(),
        ];
        if self.backend == super::Backend::Postgres {
            return self.claim_targets_pg(values, expired).await;
        }
        let mut values = values;
        values.push(expired.into());
        let candidates = "SELECT tenant_id FROM rollout_targets \
             WHERE rollout_id = $4 AND position < $5 \
               AND (state = 'PENDING' OR ($8 AND state = 'RUNNING' AND lease_until < $6)) \
               AND EXISTS (SELECT 1 FROM rollouts WHERE id = $4 AND state IN ('PENDING', 'RUNNING')) \
             ORDER BY position LIMIT $7";
        let set = "SET state = 'RUNNING', claimed_by = $1, lease_until = $2, attempts = attempts + 1, update_time = $3";
        let sql = format!(
            "UPDATE rollout_targets {set} WHERE rollout_id = $4 AND tenant_id IN ({candidates}) \
             RETURNING tenant_id, attempts, \
               (SELECT c.version FROM tenant_components c, rollouts r \
                WHERE r.id = rollout_targets.rollout_id AND c.component = r.component \
                  AND c.tenant_id = rollout_targets.tenant_id) AS component_version"
        );
        let txn = self.rollout_conn().begin().await.map_err(db_error)?;
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sql.replace('$', "?"),
                values,
            ))
            .await
            .map_err(db_error)?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let claim = Claim::from_row(row)?;
            let tenant = claim.tenant.as_uuid();
            let attempt = claim.attempts;
            claims.push((claim, None));
            event(
                &txn,
                self.now(),
                id,
                "started",
                Some(tenant),
                json!({ "attempt": attempt }),
            )
            .await?;
        }
        if !claims.is_empty() {
            rollout::Entity::update_many()
                .col_expr(
                    rollout::Column::State,
                    Expr::value(RolloutState::Running.as_str()),
                )
                .col_expr(rollout::Column::StartTime, Expr::value(self.now()))
                .filter(rollout::Column::Id.eq(id))
                .filter(rollout::Column::State.eq(RolloutState::Pending.as_str()))
                .exec(&txn)
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(claims)
    }

    /// Extends the leases of every target `me` is working on.
    pub async fn renew_leases(&self, me: &str, lease_ms: i64) -> Result<(), Error> {
        rollout_target::Entity::update_many()
            .col_expr(
                rollout_target::Column::LeaseUntil,
                Expr::value(self.now().timestamp_millis() + lease_ms),
            )
            .filter(rollout_target::Column::ClaimedBy.eq(me))
            .filter(rollout_target::Column::State.eq(TargetState::Running.as_str()))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Records how a target ended, with its event, if `me` still holds it. `false` when another
    /// worker took it over (this worker's lease had run out).
    pub async fn finish_target(
        &self,
        id: Uuid,
        tenant: TenantId,
        me: &str,
        outcome: &Outcome,
    ) -> Result<bool, Error> {
        if self.backend == super::Backend::Postgres {
            return self.finish_target_pg(id, tenant, me, outcome).await;
        }
        let (state, kind, detail) = describe(outcome);
        let txn = self.rollout_conn().begin().await.map_err(db_error)?;
        let mut update = rollout_target::Entity::update_many()
            .col_expr(rollout_target::Column::State, Expr::value(state.as_str()))
            .col_expr(
                rollout_target::Column::ClaimedBy,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                rollout_target::Column::LeaseUntil,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(rollout_target::Column::UpdateTime, Expr::value(self.now()));
        match outcome {
            Outcome::Migrated {
                from,
                to,
                duration_ms,
            } => {
                update = update
                    .col_expr(
                        rollout_target::Column::FromVersion,
                        Expr::value(from.clone()),
                    )
                    .col_expr(rollout_target::Column::ToVersion, Expr::value(to.clone()))
                    .col_expr(
                        rollout_target::Column::DurationMs,
                        Expr::value(*duration_ms),
                    );
            }
            Outcome::Skipped { version, .. } => {
                update = update.col_expr(
                    rollout_target::Column::ToVersion,
                    Expr::value(version.clone()),
                );
            }
            Outcome::Failed { error } | Outcome::Retry { error } => {
                update = update.col_expr(rollout_target::Column::Error, Expr::value(error.clone()));
            }
        }
        let done = update
            .filter(rollout_target::Column::RolloutId.eq(id))
            .filter(rollout_target::Column::TenantId.eq(tenant.as_uuid()))
            .filter(rollout_target::Column::ClaimedBy.eq(me))
            .filter(rollout_target::Column::State.eq(TargetState::Running.as_str()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if done.rows_affected == 0 {
            txn.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        event(&txn, self.now(), id, kind, Some(tenant.as_uuid()), detail).await?;
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Events of a rollout after `seq`, oldest first.
    pub async fn rollout_events(
        &self,
        id: Uuid,
        after: i64,
        limit: u64,
    ) -> Result<Vec<Event>, Error> {
        let rows = rollout_event::Entity::find()
            .filter(rollout_event::Column::RolloutId.eq(id))
            .filter(rollout_event::Column::Seq.gt(after))
            .order_by_asc(rollout_event::Column::Seq)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|e| Event {
                seq: e.seq,
                kind: e.kind,
                tenant: e.tenant_id.map(Into::into),
                detail: e.detail,
                time: e.event_time,
            })
            .collect())
    }

    /// The last event's sequence number (0 if none), to watch from "now".
    pub async fn last_rollout_event(&self, id: Uuid) -> Result<i64, Error> {
        let row = rollout_event::Entity::find()
            .filter(rollout_event::Column::RolloutId.eq(id))
            .order_by_desc(rollout_event::Column::Seq)
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row.map_or(0, |e| e.seq))
    }
}

pub(super) async fn event(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    rollout_id: Uuid,
    kind: &str,
    tenant: Option<Uuid>,
    detail: serde_json::Value,
) -> Result<(), Error> {
    let row = rollout_event::ActiveModel {
        rollout_id: Set(rollout_id),
        kind: Set(kind.to_owned()),
        tenant_id: Set(tenant),
        detail: Set(detail),
        event_time: Set(now),
        ..Default::default()
    };
    rollout_event::Entity::insert(row)
        .exec_without_returning(txn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// A target's state, event kind and event detail after `outcome`.
pub(super) fn describe(outcome: &Outcome) -> (TargetState, &'static str, serde_json::Value) {
    match outcome {
        Outcome::Migrated {
            from,
            to,
            duration_ms,
        } => (
            TargetState::Migrated,
            "migrated",
            json!({ "from": from, "to": to, "duration_ms": duration_ms }),
        ),
        Outcome::Skipped { version, reason } => (
            TargetState::Skipped,
            "skipped",
            json!({ "version": version, "reason": reason }),
        ),
        Outcome::Failed { error } => (TargetState::Failed, "failed", json!({ "error": error })),
        Outcome::Retry { error } => (TargetState::Pending, "released", json!({ "error": error })),
    }
}
