//! Rollout work on PostgreSQL, a statement each: a claim with its events and the claimed
//! tenants' rows; an outcome with its event; and a migrated target recorded inside the
//! transaction of the tenant's migration, with the tenant's version rows and the catalog's mirror
//! of the version. Data-modifying CTEs make each one round trip, and each is atomic on its own.
//!
//! Catalog tables are named with the catalog's schema ([`Catalog::knows_own_schema`]): the last
//! statement runs with the tenant's schema on the `search_path`, where a tenant table of the same
//! name must not stand in for the catalog's.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::entity::tenant;
use super::rollout_work::{Claim, Outcome, describe};
use super::{Catalog, db_error, tenants::to_domain};
use crate::domain::{Error, RolloutState, TargetState, Tenant, TenantId};

/// What a migration in a tenant's schema applied, for the statement that records it.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
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
        // claim more than the limit. The picked rows are updated by their row ids (they stay
        // locked, so the ids hold), which no generic plan can turn into a scan of the rollout.
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
               UPDATE {q}rollout_targets SET state = 'RUNNING', claimed_by = $1, lease_until = $2, \
                 attempts = attempts + 1, update_time = $3 \
               WHERE ctid = ANY (ARRAY (SELECT ctid FROM picked)) AND rollout_id = $4 \
               RETURNING tenant_id, attempts), \
             started AS ( \
               INSERT INTO {q}rollout_events (rollout_id, kind, tenant_id, detail, event_time) \
               SELECT $4, 'started', tenant_id, jsonb_build_object('attempt', attempts), $3 \
               FROM claimed), \
             running AS ( \
               UPDATE {q}rollouts SET state = '{running}', start_time = $3 \
               WHERE id = $4 AND state = '{pending}' AND EXISTS (SELECT 1 FROM claimed)) \
             SELECT claimed.tenant_id AS claimed_tenant, claimed.attempts AS claimed_attempts, t.* \
             FROM claimed LEFT JOIN {q}tenants t ON t.id = claimed.tenant_id",
            running = RolloutState::Running.as_str(),
            pending = RolloutState::Pending.as_str(),
        );
        let rows = self
            .conn()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .map_err(db_error)?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let claimed: Uuid = row.try_get("", "claimed_tenant").map_err(db_error)?;
            let attempts: i32 = row.try_get("", "claimed_attempts").map_err(db_error)?;
            let present: Option<Uuid> = row.try_get("", "id").map_err(db_error)?;
            let tenant = match present {
                Some(_) => Some(to_domain(
                    tenant::Model::from_query_result(row, "").map_err(db_error)?,
                )?),
                None => None,
            };
            claims.push((
                Claim {
                    tenant: claimed.into(),
                    attempts,
                },
                tenant,
            ));
        }
        Ok(claims)
    }

    /// [`Catalog::finish_target`] on PostgreSQL: the target's change and its event in one
    /// statement.
    pub(super) async fn finish_target_pg(
        &self,
        id: Uuid,
        tenant: TenantId,
        me: &str,
        outcome: &Outcome,
    ) -> Result<bool, Error> {
        let sql = finish_sql(self.prefix(), "");
        let rows = self
            .conn()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                finish_values(id, tenant, me, outcome),
            ))
            .await
            .map_err(db_error)?;
        Ok(!rows.is_empty())
    }

    /// Records a migrated rollout target in `txn`, the transaction that migrated the tenant's
    /// schema (on the `search_path`): the applied versions' rows, the catalog's mirror of the
    /// version, and the target's outcome with its event, in one statement. `false` when `me`
    /// no longer holds the target (its lease ran out and another worker took it): the caller
    /// rolls the migration back, so every tenant is migrated by exactly one worker.
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
        let q = self
            .qualifier
            .as_deref()
            .ok_or_else(|| Error::Internal("the catalog's schema is not known".into()))?;
        let Outcome::Migrated { to, .. } = outcome else {
            return Err(Error::Internal(
                "only a migrated target commits with its migration".into(),
            ));
        };
        let mut values = finish_values(rollout, tenant, me, outcome);
        values.push(to.clone().into()); // $15
        values.push(applied.at.into()); // $16
        let rows: Vec<String> = applied
            .versions
            .iter()
            .enumerate()
            .map(|(i, version)| {
                values.push(version.clone().into());
                format!("(${}, $16)", 17 + i)
            })
            .collect();
        let versions = if rows.is_empty() {
            String::new()
        } else {
            format!(
                "versions AS (INSERT INTO seaql_migrations (version, applied_at) VALUES {}), ",
                rows.join(", ")
            )
        };
        let preamble = format!(
            "{versions}mirror AS ( \
               UPDATE {q}tenants SET migration_version = $15, last_error = NULL, \
                 last_error_time = NULL, revision = revision + 1, update_time = $2 \
               WHERE id = $10 AND (last_error IS NOT NULL OR migration_version IS NULL \
                 OR migration_version <> $15)), "
        );
        let held = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                finish_sql(q, &preamble),
                values,
            ))
            .await
            .map_err(db_error)?;
        Ok(!held.is_empty())
    }
}

/// The statement that ends a target held by `$11` and logs its event, after `preamble` (more
/// CTEs, each ending with a comma). Parameters `$1`–`$14` are [`finish_values`].
fn finish_sql(q: &str, preamble: &str) -> String {
    format!(
        "WITH {preamble}done AS ( \
           UPDATE {q}rollout_targets SET state = $1, claimed_by = NULL, lease_until = NULL, \
             update_time = $2, \
             from_version = CASE WHEN $3 THEN $5 ELSE from_version END, \
             to_version = CASE WHEN $3 OR $4 THEN $6 ELSE to_version END, \
             duration_ms = CASE WHEN $3 THEN $7 ELSE duration_ms END, \
             error = CASE WHEN $8::text IS NOT NULL THEN $8 ELSE error END \
           WHERE rollout_id = $9 AND tenant_id = $10 AND claimed_by = $11 AND state = $12 \
           RETURNING rollout_id, tenant_id) \
         INSERT INTO {q}rollout_events (rollout_id, kind, tenant_id, detail, event_time) \
         SELECT rollout_id, $13, tenant_id, $14, $2 FROM done \
         RETURNING seq"
    )
}

fn finish_values(rollout: Uuid, tenant: TenantId, me: &str, outcome: &Outcome) -> Vec<Value> {
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
    vec![
        state.as_str().into(),
        crate::service::now().into(),
        migrated.into(),
        skipped.into(),
        from.into(),
        to.into(),
        duration.into(),
        error.into(),
        rollout.into(),
        tenant.as_uuid().into(),
        me.into(),
        TargetState::Running.as_str().into(),
        kind.into(),
        detail.into(),
    ]
}
