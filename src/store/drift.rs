//! Tenants' last drift checks (`tenant_drift`): one row per tenant, replaced by each check, so
//! the fleet's drifted tenants are counted from the catalog alone; and, with each, which of the
//! tenant's components drifted (`tenant_components.drifted`), so they are counted per component.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait,
    sea_query::{Alias, Expr, OnConflict, Query},
};

use super::entity::{tenant, tenant_component};
use super::tenants::to_domain;
use super::{Catalog, db_error};
use crate::domain::{Error, Selector, Tenant, TenantId, TenantState};

const TABLE: &str = "tenant_drift";

/// One tenant's drift check, to record.
#[derive(Debug, Clone)]
pub struct DriftRecord {
    pub tenant: TenantId,
    pub check_time: DateTime<Utc>,
    /// What the check found, or why it could not be made.
    pub outcome: Result<DriftFinding, String>,
}

/// What a check that could be made found.
#[derive(Debug, Clone)]
pub struct DriftFinding {
    /// Each difference as a JSON object: what kind of change (`change`), on which object
    /// (`object`, `table`, `name`), for a changed one what of it (`what`, `actual`,
    /// `expected`), the component that made it (`component`, when one did) and the sentence
    /// (`description`). Nothing reads them back: they are for people querying the catalog.
    pub differences: Vec<serde_json::Value>,
    /// The tenant's components at least one difference is attributed to: their rows of
    /// `tenant_components` are marked drifted, the tenant's other rows not.
    pub drifted_components: Vec<String>,
    pub expected_fingerprint: String,
    pub actual_fingerprint: String,
}

impl Catalog {
    /// Up to `limit` tenants the selector matches that have storage and are not deleted, in
    /// id order, after `after`: the fleet is read a page at a time.
    pub async fn drift_candidates(
        &self,
        selector: &Selector,
        after: Option<TenantId>,
        limit: u64,
    ) -> Result<Vec<Tenant>, Error> {
        let mut query = tenant::Entity::find()
            .filter(tenant::Column::ProvisionTime.is_not_null())
            .filter(tenant::Column::State.ne(TenantState::Deleted.as_str()));
        match selector {
            Selector::All => {}
            Selector::Labels(labels) => query = query.filter(self.label_condition(labels)),
            Selector::Tenants(ids) => {
                query = query.filter(tenant::Column::Id.is_in(ids.iter().map(TenantId::as_uuid)))
            }
        }
        if let Some(after) = after {
            query = query.filter(tenant::Column::Id.gt(after.as_uuid()));
        }
        let rows = query
            .order_by_asc(tenant::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        rows.into_iter().map(to_domain).collect()
    }

    /// Records checks, replacing each tenant's previous one, and marks the tenant's components
    /// drifted or not, in one transaction; a check that could not be made keeps the previous
    /// finding and marks, and records only its time and error.
    pub async fn record_drift(&self, records: &[DriftRecord]) -> Result<(), Error> {
        let col = |name: &str| Alias::new(name);
        let mut found = Query::insert();
        found.into_table(col(TABLE)).columns([
            col("tenant_id"),
            col("check_time"),
            col("drifted"),
            col("differences"),
            col("expected_fingerprint"),
            col("actual_fingerprint"),
            col("error"),
        ]);
        found.on_conflict(
            OnConflict::column(col("tenant_id"))
                .update_columns([
                    col("check_time"),
                    col("drifted"),
                    col("differences"),
                    col("expected_fingerprint"),
                    col("actual_fingerprint"),
                    col("error"),
                ])
                .to_owned(),
        );
        let mut failed = Query::insert();
        failed
            .into_table(col(TABLE))
            .columns([
                col("tenant_id"),
                col("check_time"),
                col("drifted"),
                col("differences"),
                col("error"),
            ])
            .on_conflict(
                OnConflict::column(col("tenant_id"))
                    .update_columns([col("check_time"), col("error")])
                    .to_owned(),
            );
        let (mut any_found, mut any_failed) = (false, false);
        // Components of checked tenants: the clean ones' marks are cleared (only rows marked
        // are written), then the drifted ones' set.
        let mut checked = Vec::new();
        let mut drifted = Condition::any();
        let mut any_drifted = false;
        for record in records {
            let tenant = record.tenant.as_uuid();
            match &record.outcome {
                Ok(finding) => {
                    any_found = true;
                    checked.push(tenant);
                    for component in &finding.drifted_components {
                        any_drifted = true;
                        drifted = drifted.add(
                            Condition::all()
                                .add(tenant_component::Column::TenantId.eq(tenant))
                                .add(tenant_component::Column::Component.eq(component.as_str())),
                        );
                    }
                    found
                        .values([
                            tenant.into(),
                            record.check_time.into(),
                            (!finding.differences.is_empty()).into(),
                            serde_json::json!(finding.differences).into(),
                            finding.expected_fingerprint.clone().into(),
                            finding.actual_fingerprint.clone().into(),
                            Option::<String>::None.into(),
                        ])
                        .map_err(|e| Error::Internal(format!("recording drift: {e}")))?;
                }
                Err(error) => {
                    any_failed = true;
                    failed
                        .values([
                            tenant.into(),
                            record.check_time.into(),
                            false.into(),
                            serde_json::json!([]).into(),
                            error.clone().into(),
                        ])
                        .map_err(|e| Error::Internal(format!("recording drift: {e}")))?;
                }
            }
        }
        let txn = self.conn().begin().await.map_err(db_error)?;
        for (any, statement) in [(any_found, found), (any_failed, failed)] {
            if any {
                txn.execute(&statement).await.map_err(db_error)?;
            }
        }
        if any_found {
            tenant_component::Entity::update_many()
                .col_expr(tenant_component::Column::Drifted, Expr::value(false))
                .filter(tenant_component::Column::TenantId.is_in(checked))
                .filter(tenant_component::Column::Drifted.eq(true))
                .exec(&txn)
                .await
                .map_err(db_error)?;
        }
        if any_drifted {
            tenant_component::Entity::update_many()
                .col_expr(tenant_component::Column::Drifted, Expr::value(true))
                .filter(drifted)
                .exec(&txn)
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)
    }

    /// Live tenants (provisioned, not deleted) whose last drift check found their storage
    /// drifted. Both filters match partial indexes (catalog migration 000021), so the count
    /// reads the drifted few, not the fleet.
    pub async fn drifted_tenants(&self) -> Result<i64, Error> {
        let backend = self.conn().get_database_backend();
        let row = self
            .conn()
            .query_one_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT count(*) AS n FROM {TABLE} d WHERE d.drifted = {TRUE} \
                     AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = d.tenant_id \
                       AND ({NOT_LIVE}))",
                    TRUE = match backend {
                        DbBackend::Postgres => "true",
                        _ => "1",
                    },
                    NOT_LIVE = super::fleet::NOT_LIVE,
                ),
            ))
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => row.try_get::<i64>("", "n").map_err(db_error),
            None => Ok(0),
        }
    }
}
