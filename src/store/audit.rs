//! The audit log, `audit_events`: one row per call of a mutating RPC, saying who called what,
//! on which tenant, with which request id, how it ended and when.
//!
//! ## How a call gets exactly one row, committed with its change
//! Each call of a mutating RPC owes one row ([`AuditRow`]: its id, a UUIDv7 chosen as the call
//! starts, and its action), carried by the call's [`CallContext`], which every use case that
//! changes something takes explicitly. Every store function that changes the catalog takes the
//! context too and calls [`record`] inside its own transaction, so the row commits with the
//! change or not at all — whichever task runs the write. The insert keeps a row already there:
//! a call that writes in several transactions (CreateTenant that also provisions, a
//! StartRollout with nothing to do) keeps the row of its first committed change. A failure that
//! is itself a change — a provisioning or migration that marks the tenant's error — is recorded
//! the same way by [`record_failure`].
//!
//! When the call has ended, [`Catalog::finish_audit`] (called by the gRPC layer) completes the
//! log: a failed call's row gets the final code, or, if its change rolled back (and so nothing
//! changed), is written on its own; a successful call that changed nothing (`validate_only`,
//! an upsert that changes no setting) gets its row then. A successful call that recorded its
//! change needs nothing more: every store function that records a success commits that
//! transaction or fails the call, so the row committed. A call answered from an AIP-155 request
//! id's first answer ([`CallContext::replayed`]) gets none: the first call has its row.
//!
//! A context without a row — background jobs ([`CallContext::system`]), read-only and metering
//! RPCs — makes [`record`] write nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
    sea_query::{Expr, InsertStatement, OnConflict},
};
use uuid::Uuid;

use super::entity::audit_event;
use super::{Catalog, db_error};
use crate::domain::{AuditRow, CallContext, Error, TenantId};

/// The outcome of a successful call: the google.rpc.Code name of `OK`.
pub const OK: &str = "OK";
/// The outcome of a failure recorded with its change, until the call's final code replaces it.
/// Left only if the process stopped in between.
const FAILURE_PENDING: &str = "UNKNOWN";

/// Records the success of the call of `ctx` in `conn`, which should be the transaction of its
/// change. Writes nothing for a call that owes no row.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    ctx: &CallContext,
    tenant: Option<TenantId>,
) -> Result<(), DbErr> {
    match success(ctx, tenant) {
        Some(row) => {
            conn.execute(&row.statement).await?;
            row.sent();
            Ok(())
        }
        None => Ok(()),
    }
}

/// [`record`] in a use case's unit of work, with the error classified: the audit row of a
/// change to `tenant` that the use case made in `txn` (a tenant role's new password, say).
pub async fn record_change(
    txn: &sea_orm::DatabaseTransaction,
    ctx: &CallContext,
    tenant: TenantId,
) -> Result<(), Error> {
    record(txn, ctx, Some(tenant))
        .await
        .map_err(super::db_error)
}

/// The success row of the call of `ctx` for `tenant`, for a caller that sends it within a
/// statement of its own, in the transaction of its change (PostgreSQL: a data-modifying
/// `WITH`); `None` for a call that owes no row.
pub fn success(ctx: &CallContext, tenant: Option<TenantId>) -> Option<SuccessRow> {
    let row = Arc::clone(ctx.audit()?);
    let statement = insert(ctx, &row, tenant, OK, None);
    Some(SuccessRow { row, statement })
}

/// A call's success row, to be sent in the transaction of its change.
#[derive(Debug)]
pub struct SuccessRow {
    row: Arc<AuditRow>,
    /// Inserts the row, unless it is there already.
    pub statement: InsertStatement,
}

impl SuccessRow {
    /// Notes that the row went with the change (its statement succeeded).
    pub fn sent(self) {
        self.row.mark_recorded();
    }
}

/// Records the failure of the call of `ctx` in `conn`, the transaction that records what the
/// failure changed (a tenant's error); [`Catalog::finish_audit`] sets the final code.
pub async fn record_failure<C: ConnectionTrait>(
    conn: &C,
    ctx: &CallContext,
    tenant: Option<TenantId>,
) -> Result<(), DbErr> {
    match ctx.audit() {
        Some(row) => {
            let message = Some("failed; the call's final status was not recorded");
            let statement = insert(ctx, row, tenant, FAILURE_PENDING, message);
            conn.execute(&statement).await.map(|_| ())
        }
        None => Ok(()),
    }
}

/// The insert of the call's row, which keeps a row already there.
fn insert(
    ctx: &CallContext,
    row: &AuditRow,
    tenant: Option<TenantId>,
    outcome: &str,
    message: Option<&str>,
) -> InsertStatement {
    let model = audit_event::ActiveModel {
        id: Set(row.id()),
        time: Set(row.now()),
        actor: Set(ctx.actor().to_string()),
        action: Set(row.action().to_owned()),
        tenant_id: Set(tenant.or_else(|| row.tenant()).map(|t| t.as_uuid())),
        request_id: Set(ctx.request_id().to_owned()),
        outcome: Set(outcome.to_owned()),
        message: Set(message.map(str::to_owned)),
    };
    audit_event::Entity::insert(model)
        .on_conflict(
            OnConflict::column(audit_event::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .into_query()
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub tenant: Option<TenantId>,
    pub request_id: String,
    pub outcome: String,
    pub message: Option<String>,
}

/// One page of the audit log, newest first; every filter set must match.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant: Option<TenantId>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Events at or after this time.
    pub start: Option<DateTime<Utc>>,
    /// Events before this time.
    pub end: Option<DateTime<Utc>>,
    /// Only events older than this (time, id): the last event of the previous page.
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: u64,
}

impl Catalog {
    /// Completes the row of the call of `ctx`, which has ended with `outcome` (a
    /// google.rpc.Code name): a failure replaces a pending failure or is written on its own; a
    /// success is written if the call changed nothing and was not a replay. A row that says OK
    /// is never changed: its change committed. Nothing for a call that owes no row.
    pub async fn finish_audit(
        &self,
        ctx: &CallContext,
        outcome: &str,
        message: Option<&str>,
    ) -> Result<(), Error> {
        let Some(row) = ctx.audit() else {
            return Ok(());
        };
        if outcome == OK {
            // A replay has the first call's row; a recorded success committed its own.
            if row.is_replayed() || row.is_recorded() {
                return Ok(());
            }
            let statement = insert(ctx, row, None, OK, None);
            return self
                .conn()
                .execute(&statement)
                .await
                .map(|_| ())
                .map_err(db_error);
        }
        let updated = audit_event::Entity::update_many()
            .col_expr(audit_event::Column::Outcome, Expr::value(outcome))
            .col_expr(
                audit_event::Column::Message,
                Expr::value(message.map(str::to_owned)),
            )
            .filter(audit_event::Column::Id.eq(row.id()))
            .filter(audit_event::Column::Outcome.ne(OK))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        if updated.rows_affected == 0 {
            let statement = insert(ctx, row, None, outcome, message);
            self.conn().execute(&statement).await.map_err(db_error)?;
        }
        Ok(())
    }

    pub async fn list_audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, Error> {
        use audit_event::Column;
        let mut cond = Condition::all();
        if let Some(tenant) = query.tenant {
            cond = cond.add(Column::TenantId.eq(tenant.as_uuid()));
        }
        if let Some(actor) = &query.actor {
            cond = cond.add(Column::Actor.eq(actor.as_str()));
        }
        if let Some(action) = &query.action {
            cond = cond.add(Column::Action.eq(action.as_str()));
        }
        if let Some(start) = query.start {
            cond = cond.add(Column::Time.gte(start));
        }
        if let Some(end) = query.end {
            cond = cond.add(Column::Time.lt(end));
        }
        if let Some((time, id)) = query.before {
            cond = cond.add(
                Condition::any().add(Column::Time.lt(time)).add(
                    Condition::all()
                        .add(Column::Time.eq(time))
                        .add(Column::Id.lt(id)),
                ),
            );
        }
        let rows = audit_event::Entity::find()
            .filter(cond)
            .order_by_desc(Column::Time)
            .order_by_desc(Column::Id)
            .limit(query.limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEvent {
                id: r.id,
                time: r.time,
                actor: r.actor,
                action: r.action,
                tenant: r.tenant_id.map(TenantId::from),
                request_id: r.request_id,
                outcome: r.outcome,
                message: r.message,
            })
            .collect())
    }
}

/// Rows deleted per statement by [`Catalog::prune_audit`]: a first pass over years of rows
/// holds no lock for long and commits as it goes.
const PRUNE_BATCH: u64 = 10_000;

impl Catalog {
    /// Deletes the audit rows written before `before`, a batch at a time (oldest first, along
    /// the index on `time`); how many.
    pub async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        let mut pruned = 0;
        loop {
            let oldest = audit_event::Entity::find()
                .select_only()
                .column(audit_event::Column::Id)
                .filter(audit_event::Column::Time.lt(before))
                .order_by_asc(audit_event::Column::Time)
                .limit(PRUNE_BATCH)
                .into_query();
            let deleted = audit_event::Entity::delete_many()
                .filter(audit_event::Column::Id.in_subquery(oldest))
                .exec(self.conn())
                .await
                .map_err(db_error)?
                .rows_affected;
            pruned += deleted;
            if deleted < PRUNE_BATCH {
                return Ok(pruned);
            }
        }
    }
}
