//! Rollout work on PostgreSQL, a round trip each: a claim with its events and the claimed
//! tenants' rows (one statement of data-modifying CTEs); an outcome with its event; a migrated
//! target recorded inside the transaction of the tenant's migration, with the tenant's version
//! rows and the catalog's mirror of the version; and a step into a tenant's schema. The last
//! three are the catalog's functions (catalog migration 000010), which keep their plans while a
//! tenant's schema is on the `search_path`.
//!
//! Catalog objects are named with the catalog's schema ([`Catalog::knows_own_schema`]): some
//! calls run with the tenant's schema on the `search_path`, where a tenant's object of the same
//! name must not stand in for the catalog's.

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, FromQueryResult, Statement, Value,
};
use uuid::Uuid;

use super::entity::tenant;
use super::rollout_work::{Claim, Outcome, describe};
use super::{Catalog, db_error, tenants::to_domain};
use crate::domain::{Error, RolloutState, TargetState, Tenant, TenantId};

/// What a migration in a tenant's schema applied, for the statement that records it.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// The tenant's schema, which holds its version table.
    pub schema: &'a str,
    /// Versions applied, oldest first: their rows go into the tenant's version table.
    pub versions: &'a [String],
    /// When, in Unix seconds (the version table's `applied_at`).
    pub at: i64,
}

impl Catalog {
    fn prefix(&self) -> &str {
        self.qualifier.as_deref().unwrap_or("")
    }

    /// [`Catalog::claim_targets`] on PostgreSQL, with each claimed tenant's row (`None` for a
    /// tenant whose row is gone). Targets whose lease ran out are claimed only with `expired`.
    pub(super) async fn claim_targets_pg(
        &self,
        mut values: Vec<Value>,
        expired: bool,
    ) -> Result<Vec<(Claim, Option<Tenant>)>, Error> {
        let q = self.prefix();
        values.push(expired.into());
        // PENDING targets are read in position order straight off the (rollout_id, state,
        // position) index, so a claim reads a few index entries rather than every pending
        // target; RUNNING ones whose lease ran out only when `$8` asks for them (the worker's
        // periodic pass). Materialised: the planner must not re-run a SKIP LOCKED subquery and
        // claim more than the limit. The picked rows are updated by their row ids alone (they
        // stay locked, so the ids hold), joined to `picked`: a join is planned as one row-id
        // fetch per picked row, where `ctid = ANY (...)` (an array of unknown length) was
        // planned as a scan of the whole table while it was small, and the plan was kept as it
        // grew; with another condition, a generic plan scanned the whole rollout's index. The
        // tenants are read by their ids: a join alone made a generic plan hash the whole
        // tenants table.
        let sql = format!(
            "WITH pending AS MATERIALIZED ( \
               SELECT ctid, position FROM {q}rollout_targets \
               WHERE rollout_id = $4 AND state = 'PENDING' AND position < $5 \
               ORDER BY position LIMIT $7 FOR UPDATE SKIP LOCKED), \
             expired AS MATERIALIZED ( \
               SELECT ctid, position FROM {q}rollout_targets \
               WHERE $8 AND rollout_id = $4 AND state = 'RUNNING' AND lease_until < $6 \
                 AND position < $5 \
               ORDER BY position LIMIT $7 FOR UPDATE SKIP LOCKED), \
             picked AS MATERIALIZED ( \
               SELECT ctid FROM (SELECT * FROM expired UNION ALL SELECT * FROM pending) AS free \
               WHERE EXISTS (SELECT 1 FROM {q}rollouts WHERE id = $4 AND state IN ('PENDING', 'RUNNING')) \
               ORDER BY position LIMIT $7), \
             claimed AS ( \
               UPDATE {q}rollout_targets r SET state = 'RUNNING', claimed_by = $1, lease_until = $2, \
                 attempts = r.attempts + 1, update_time = $3 \
               FROM picked WHERE r.ctid = picked.ctid \
               RETURNING r.tenant_id, r.attempts), \
             started AS ( \
               INSERT INTO {q}rollout_events (rollout_id, kind, tenant_id, detail, event_time) \
               SELECT $4, 'started', tenant_id, jsonb_build_object('attempt', attempts), $3 \
               FROM claimed), \
             running AS ( \
               UPDATE {q}rollouts SET state = '{running}', start_time = $3 \
               WHERE id = $4 AND state = '{pending}' AND EXISTS (SELECT 1 FROM claimed)) \
             SELECT claimed.tenant_id, claimed.attempts, t.* \
             FROM claimed LEFT JOIN {q}tenants t ON t.id = claimed.tenant_id \
               AND t.id = ANY (ARRAY (SELECT tenant_id FROM claimed))",
            running = RolloutState::Running.as_str(),
            pending = RolloutState::Pending.as_str(),
        );
        let rows = self
            .rollout_conn()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .map_err(db_error)?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let claim = Claim::from_row(row)?;
            let present: Option<Uuid> = row.try_get("", "id").map_err(db_error)?;
            let tenant = match present {
                Some(_) => Some(to_domain(
                    tenant::Model::from_query_result(row, "").map_err(db_error)?,
                )?),
                None => None,
            };
            claims.push((claim, tenant));
        }
        Ok(claims)
    }

    /// [`Catalog::finish_target`] on PostgreSQL: the target's change and its event, by the
    /// catalog's `tenant_plane_finish_target`.
    pub(super) async fn finish_target_pg(
        &self,
        id: Uuid,
        tenant: TenantId,
        me: &str,
        outcome: &Outcome,
    ) -> Result<bool, Error> {
        finish(self.rollout_conn(), self, id, tenant, me, outcome, None).await
    }

    /// Records a migrated rollout target in `txn`, the transaction that migrated the tenant's
    /// schema: the applied versions' rows, the catalog's mirror of the version, and the
    /// target's outcome with its event. `false` when `me` no longer holds the target (its lease
    /// ran out and another worker took it): nothing was written, and the caller rolls the
    /// migration back, so every tenant is migrated by exactly one worker.
    ///
    /// The mirror is what [`super::provisioning::record_migration`] writes for a migration
    /// (not a provisioning).
    pub async fn record_migrated_target(
        &self,
        txn: &DatabaseTransaction,
        rollout: Uuid,
        me: &str,
        tenant: TenantId,
        applied: Applied<'_>,
        outcome: &Outcome,
    ) -> Result<bool, Error> {
        self.own_schema()?;
        if !matches!(outcome, Outcome::Migrated { .. }) {
            return Err(Error::Internal(
                "only a migrated target commits with its migration".into(),
            ));
        }
        finish(txn, self, rollout, tenant, me, outcome, Some(applied)).await
    }

    /// Records the migrated targets of one batch in `txn`, the transaction that migrated
    /// them: what [`Self::record_migrated_target`] writes for each, in one call (the catalog's
    /// `tenant_plane_finish_batch_notify_once`, which also tells the other replicas of all the
    /// batch's tenants in one notification). Each comes with the versions its migration was
    /// run on top of (`before`, sorted bytewise), which its version table must hold exactly.
    /// `false` when `me` no longer holds one of them or a version table holds other versions:
    /// the caller rolls the batch back.
    pub async fn record_migrated_batch(
        &self,
        txn: &DatabaseTransaction,
        rollout: Uuid,
        me: &str,
        batch: &[(TenantId, Applied<'_>, &[String], &Outcome)],
    ) -> Result<bool, Error> {
        let q = self.own_schema()?;
        let mut targets = Vec::with_capacity(batch.len());
        for (tenant, applied, before, outcome) in batch {
            let Outcome::Migrated {
                from,
                to,
                duration_ms,
            } = *outcome
            else {
                return Err(Error::Internal(
                    "only a migrated target commits with its migration".into(),
                ));
            };
            targets.push(serde_json::json!({
                "tenant": tenant.as_uuid(),
                "schema": applied.schema,
                "from": from,
                "to": to,
                "duration_ms": duration_ms,
                "detail": describe(outcome).2,
                "before": before,
                "versions": applied.versions,
                "applied_at": applied.at,
            }));
        }
        let (state, kind, _) = describe(&Outcome::Migrated {
            from: None,
            to: None,
            duration_ms: 0,
        });
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "SELECT {q}tenant_plane_finish_batch_notify_once($1, $2, $3, $4, $5, $6, $7) \
                     AS ended"
                ),
                [
                    rollout.into(),
                    me.into(),
                    TargetState::Running.as_str().into(),
                    state.as_str().into(),
                    kind.into(),
                    self.now().into(),
                    serde_json::Value::Array(targets).into(),
                ],
            ))
            .await
            .map_err(db_error)?;
        let ended: Option<i32> = match row {
            Some(row) => row.try_get("", "ended").map_err(db_error)?,
            None => None,
        };
        Ok(ended.is_some_and(|n| usize::try_from(n).is_ok_and(|n| n == batch.len())))
    }

    /// Takes a tenant's migration lock in `txn` and puts its `schema` on the `search_path` for
    /// the rest of the transaction, without reading its version table: for a rollout batch,
    /// whose version rows are checked when they are written.
    pub async fn lock_tenant_schema(
        &self,
        txn: &DatabaseTransaction,
        schema: &str,
        lock_key: &str,
    ) -> Result<(), DbErr> {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0)), \
             set_config('search_path', quote_ident($2), true)",
            [lock_key.into(), schema.into()],
        ))
        .await?;
        Ok(())
    }

    /// Takes a tenant's migration lock in `txn`, puts its `schema` on the `search_path` for
    /// the rest of the transaction, and reads its version table (sorted by version: oldest
    /// first), in one round trip: the catalog's `tenant_plane_enter`. A missing schema or version table is an
    /// `undefined_table` error.
    pub async fn enter_tenant_schema(
        &self,
        txn: &DatabaseTransaction,
        schema: &str,
        lock_key: &str,
    ) -> Result<Vec<(String, i64)>, DbErr> {
        let q = self
            .qualifier
            .as_deref()
            .ok_or_else(|| DbErr::Custom("the catalog's schema is not known".into()))?;
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("SELECT version, applied_at FROM {q}tenant_plane_enter($1, $2)"),
                [schema.into(), lock_key.into()],
            ))
            .await?;
        let mut versions = rows
            .iter()
            .map(|row| Ok((row.try_get("", "version")?, row.try_get("", "applied_at")?)))
            .collect::<Result<Vec<(String, i64)>, DbErr>>()?;
        versions.sort_unstable();
        Ok(versions)
    }

    fn own_schema(&self) -> Result<&str, Error> {
        self.qualifier
            .as_deref()
            .ok_or_else(|| Error::Internal("the catalog's schema is not known".into()))
    }
}

/// Calls `tenant_plane_finish_target` for `outcome`; with `applied`, a migrated tenant's
/// version rows and mirror go with it. `false` when `me` does not hold the target.
async fn finish<C: ConnectionTrait>(
    conn: &C,
    catalog: &Catalog,
    rollout: Uuid,
    tenant: TenantId,
    me: &str,
    outcome: &Outcome,
    applied: Option<Applied<'_>>,
) -> Result<bool, Error> {
    let (q, now) = (catalog.prefix(), catalog.now());
    let (state, kind, detail) = describe(outcome);
    // Which columns the outcome sets; the others keep their values.
    let (migrated, skipped, error) = match outcome {
        Outcome::Migrated { .. } => (true, false, None),
        Outcome::Skipped { .. } => (false, true, None),
        Outcome::Failed { error } | Outcome::Retry { error } => (false, false, Some(error.clone())),
    };
    let (from, to, duration) = match outcome {
        Outcome::Migrated {
            from,
            to,
            duration_ms,
        } => (from.clone(), to.clone(), Some(*duration_ms)),
        Outcome::Skipped { version, .. } => (None, version.clone(), None),
        _ => (None, None, None),
    };
    let (schema, versions, at) = match applied {
        Some(applied) => (
            Some(applied.schema.to_owned()),
            Some(serde_json::json!(applied.versions)),
            Some(applied.at),
        ),
        None => (None, None, None),
    };
    let values: Vec<Value> = vec![
        rollout.into(),
        tenant.as_uuid().into(),
        me.into(),
        TargetState::Running.as_str().into(),
        state.as_str().into(),
        kind.into(),
        detail.into(),
        now.into(),
        migrated.into(),
        skipped.into(),
        from.into(),
        to.into(),
        duration.into(),
        error.into(),
        schema.into(),
        versions.into(),
        at.into(),
    ];
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT {q}tenant_plane_finish_target($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17) AS logged"
            ),
            values,
        ))
        .await
        .map_err(db_error)?;
    let logged: Option<i64> = match row {
        Some(row) => row.try_get("", "logged").map_err(db_error)?,
        None => None,
    };
    Ok(logged.is_some())
}
