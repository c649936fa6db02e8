//! Rollout work on PostgreSQL, one statement (of data-modifying CTEs) and one round trip each: a
//! claim with its events and the claimed tenants' rows; an outcome with its event; and the
//! migrated targets of one transaction, recorded in it — their outcomes, their events and the
//! catalog's mirror of their versions — with one change notice for all of them.
//!
//! Catalog objects are named with the catalog's schema (PostgreSQL always knows it), so that
//! no schema on the `search_path` (a tenant's, while it is migrated) can stand in for the
//! catalog's.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::entity::tenant;
use super::rollout_work::{Claim, Outcome, describe};
use super::{Catalog, db_error, tenants::to_domain};
use crate::domain::{Error, RolloutState, TargetState, Tenant, TenantId};

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
        // tenants table. The tenant's version of the rollout's component is read by its
        // (tenant, component) key, in the same statement: no round trip of its own.
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
             SELECT claimed.tenant_id, claimed.attempts, \
               (SELECT c.version FROM {q}tenant_components c \
                WHERE c.tenant_id = claimed.tenant_id \
                  AND c.component = (SELECT component FROM {q}rollouts WHERE id = $4)) \
                 AS component_version, \
               t.* \
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

    /// [`Catalog::finish_target`] on PostgreSQL: the target's change and its event, in one
    /// statement. `false` (and nothing written) when `me` does not hold the target.
    pub(super) async fn finish_target_pg(
        &self,
        id: Uuid,
        tenant: TenantId,
        me: &str,
        outcome: &Outcome,
    ) -> Result<bool, Error> {
        let q = self.prefix();
        let (state, kind, detail) = describe(outcome);
        let mut values: Vec<Value> = vec![
            id.into(),
            tenant.as_uuid().into(),
            me.into(),
            TargetState::Running.as_str().into(),
            state.as_str().into(),
            kind.into(),
            detail.into(),
            self.now().into(),
        ];
        // The columns the outcome sets; the others keep their values.
        let set = match outcome {
            Outcome::Migrated {
                from,
                to,
                duration_ms,
            } => {
                values.extend([
                    from.clone().into(),
                    to.clone().into(),
                    (*duration_ms).into(),
                ]);
                ", from_version = $9, to_version = $10, duration_ms = $11"
            }
            Outcome::Skipped { version, .. } => {
                values.push(version.clone().into());
                ", to_version = $9"
            }
            Outcome::Failed { error } | Outcome::Retry { error } => {
                values.push(error.clone().into());
                ", error = $9"
            }
        };
        let sql = format!(
            "WITH done AS ( \
               UPDATE {q}rollout_targets \
               SET state = $5, claimed_by = NULL, lease_until = NULL, update_time = $8{set} \
               WHERE rollout_id = $1 AND tenant_id = $2 AND claimed_by = $3 AND state = $4 \
               RETURNING rollout_id, tenant_id) \
             INSERT INTO {q}rollout_events (rollout_id, kind, tenant_id, detail, event_time) \
             SELECT rollout_id, $6, tenant_id, $7, $8 FROM done \
             RETURNING seq"
        );
        let row = self
            .rollout_conn()
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    /// Records rollout targets migrated in `txn`, the transaction that migrated their tenants'
    /// `component` (whose version rows the data plane wrote there): each target's outcome and
    /// its event, and the catalog's mirror of its tenant's version of the component (in
    /// `tenant_components`; the compiled component's in the tenant's row too), for every
    /// target in one statement, with
    /// one change notice naming all their tenants (the `tenants` trigger skips the rows of a
    /// transaction that set `tenant_plane.batch_notify`). `false` when `me` no longer holds one
    /// of them (its lease ran out and another worker took it): the caller rolls the transaction
    /// back, so every tenant is migrated by exactly one worker.
    ///
    /// Each target is changed by its primary key, in a statement of its own within the one:
    /// a set-based update from an array of targets was planned (generically, for an array of
    /// unknown length) as a hash join over all of the rollout's targets.
    pub async fn record_migrated(
        &self,
        txn: &DatabaseTransaction,
        rollout: Uuid,
        component: &str,
        me: &str,
        targets: &[(TenantId, &Outcome)],
    ) -> Result<bool, Error> {
        let q = self.own_schema()?;
        let (state, kind, _) = describe(&Outcome::Migrated {
            from: None,
            to: None,
            duration_ms: 0,
        });
        let mut values: Vec<Value> = vec![
            rollout.into(),
            me.into(),
            state.as_str().into(),
            self.now().into(),
            TargetState::Running.as_str().into(),
            kind.into(),
            component.into(),
        ];
        // The tenant's row mirrors the compiled component's version (as before components);
        // a run of another component only clears the row's error, as `record_run` does.
        let compiled = component == crate::domain::SAMPLE;
        let mut ctes = vec![
            "quiet AS MATERIALIZED (SELECT set_config('tenant_plane.batch_notify', 'on', true))"
                .to_owned(),
        ];
        let mut counts = Vec::with_capacity(targets.len());
        let mut ids = Vec::with_capacity(targets.len());
        for (i, (tenant, outcome)) in targets.iter().enumerate() {
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
            let n = values.len();
            let (tenant_p, from_p, to_p, duration_p, detail_p) =
                (n + 1, n + 2, n + 3, n + 4, n + 5);
            let (set_version, version_changed) = if compiled {
                (
                    format!("migration_version = ${to_p}, "),
                    format!(" OR t.migration_version IS NULL OR t.migration_version <> ${to_p}"),
                )
            } else {
                (String::new(), String::new())
            };
            values.extend([
                tenant.as_uuid().into(),
                from.clone().into(),
                to.clone().into(),
                (*duration_ms).into(),
                describe(outcome).2.into(),
            ]);
            ctes.push(format!(
                "done{i} AS ( \
                   UPDATE {q}rollout_targets \
                   SET state = $3, claimed_by = NULL, lease_until = NULL, update_time = $4, \
                     from_version = ${from_p}, to_version = ${to_p}, duration_ms = ${duration_p} \
                   WHERE rollout_id = $1 AND tenant_id = ${tenant_p} AND claimed_by = $2 \
                     AND state = $5 \
                   RETURNING tenant_id), \
                 event{i} AS ( \
                   INSERT INTO {q}rollout_events (rollout_id, kind, tenant_id, detail, event_time) \
                   SELECT $1, $6, tenant_id, ${detail_p}, $4 FROM done{i}), \
                 mirror{i} AS ( \
                   UPDATE {q}tenants t \
                   SET {set_version}last_error = NULL, last_error_time = NULL, \
                     revision = t.revision + 1, update_time = $4 \
                   FROM quiet \
                   WHERE t.id = ${tenant_p} AND EXISTS (SELECT 1 FROM done{i}) \
                     AND (t.last_error IS NOT NULL{version_changed})), \
                 component{i} AS ( \
                   INSERT INTO {q}tenant_components AS c \
                     (tenant_id, component, version, last_error, last_error_time, update_time) \
                   SELECT tenant_id, $7, ${to_p}, NULL, NULL, $4 FROM done{i} \
                   ON CONFLICT (tenant_id, component) DO UPDATE \
                   SET version = excluded.version, last_error = NULL, last_error_time = NULL, \
                     update_time = excluded.update_time)"
            ));
            counts.push(format!("(SELECT count(*) FROM done{i})"));
            ids.push(tenant.to_string());
        }
        // A notice's payload must stay under 8000 bytes: at most 100 ids to one.
        let payloads: Vec<String> = ids
            .chunks(100)
            .map(|chunk| format!("tenants:{}", chunk.join(",")))
            .collect();
        let expected = i64::try_from(targets.len()).unwrap_or(i64::MAX);
        values.push(serde_json::json!(payloads).into());
        values.push(expected.into());
        let (payloads_p, expected_p) = (values.len() - 1, values.len());
        let sql = format!(
            "WITH {ctes}, \
             ended AS (SELECT {counts} AS n), \
             notified AS ( \
               SELECT pg_notify(c.channel, p) FROM ended, {q}notice_channel c, \
                 jsonb_array_elements_text(${payloads_p}) AS p \
               WHERE ended.n = ${expected_p}) \
             SELECT n AS ended, (SELECT count(*) FROM notified) AS notices FROM ended",
            ctes = ctes.join(", "),
            counts = if counts.is_empty() {
                "0".to_owned()
            } else {
                counts.join(" + ")
            },
        );
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .map_err(db_error)?;
        let ended: Option<i64> = match row {
            Some(row) => row.try_get("", "ended").map_err(db_error)?,
            None => None,
        };
        Ok(ended == Some(expected))
    }

    fn own_schema(&self) -> Result<&str, Error> {
        self.qualifier
            .as_deref()
            .ok_or_else(|| Error::Internal("the catalog's schema is not known".into()))
    }
}
