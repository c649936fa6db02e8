//! Queries on the `plans` table.
//!
//! Every write drops the plan's cached limits and components ([`Change::Plan`]) before it
//! returns, so the next quota decision or provisioning on this replica reads the new ones.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
    sea_query::{Expr, OnConflict},
};

use super::cache::{Change, PlanRules};
use super::entity::plan;
use super::{Catalog, audit, db_error, is_unique_violation};
use crate::domain::{CallContext, Error, Isolation, Plan, PlanLimit, PlanName};

/// A plan to create at start-up if it does not exist yet.
#[derive(Debug, Clone)]
pub struct PlanDefaults {
    pub id: PlanName,
    pub display_name: String,
    pub default_isolation: Option<Isolation>,
    pub limits: Vec<PlanLimit>,
}

impl Catalog {
    /// Inserts each plan that does not exist; existing plans are left as operators set them.
    /// Safe when replicas run it at once (ON CONFLICT DO NOTHING).
    pub async fn ensure_plans(&self, plans: &[PlanDefaults]) -> Result<(), Error> {
        let now = self.now();
        let rows = plans.iter().map(|p| plan::ActiveModel {
            id: Set(p.id.as_str().to_owned()),
            display_name: Set(p.display_name.clone()),
            default_isolation: Set(p.default_isolation.map(|i| i.as_str().to_owned())),
            limits: Set(PlanLimit::encode(&p.limits)),
            components: Set(serde_json::json!([crate::domain::SAMPLE])),
            revision: Set(1),
            create_time: Set(now),
            update_time: Set(now),
        });
        plan::Entity::insert_many(rows)
            .on_conflict(OnConflict::column(plan::Column::Id).do_nothing().to_owned())
            .exec_without_returning(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The plan's default isolation (`Some(None)`: the plan exists and has none), or `None`
    /// when there is no such plan.
    pub async fn plan_default_isolation(
        &self,
        id: &PlanName,
    ) -> Result<Option<Option<Isolation>>, Error> {
        let row = plan::Entity::find_by_id(id.as_str().to_owned())
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row.map(|p| p.default_isolation.as_deref().and_then(Isolation::parse)))
    }

    /// The components the plan lists, in its order, from memory when possible (like its
    /// limits); `None` when there is no such plan.
    pub async fn plan_components(&self, plan_id: &str) -> Result<Option<Vec<String>>, Error> {
        Ok(self
            .cached_plan(plan_id)
            .await?
            .map(|rules| rules.components.clone()))
    }

    pub async fn get_plan(&self, id: &PlanName) -> Result<Option<Plan>, Error> {
        let row = plan::Entity::find_by_id(id.as_str().to_owned())
            .one(self.conn())
            .await
            .map_err(db_error)?;
        row.map(to_domain).transpose()
    }

    /// At most `limit` plans ordered by id, starting after `after` (the last id of the previous
    /// page).
    pub async fn list_plans(
        &self,
        after: Option<&PlanName>,
        limit: u64,
    ) -> Result<Vec<Plan>, Error> {
        let mut query = plan::Entity::find();
        if let Some(after) = after {
            query = query.filter(plan::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(plan::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        rows.into_iter().map(to_domain).collect()
    }

    /// Inserts a new plan. `None` when a plan with its id exists already (a concurrent upsert
    /// got there first): the caller reads it and decides.
    pub async fn insert_plan(&self, ctx: &CallContext, new: &Plan) -> Result<Option<Plan>, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        let inserted = plan::Entity::insert(from_domain(new).into_active_model())
            .exec_without_returning(&txn)
            .await;
        match inserted {
            Ok(_) => {
                audit::record(&txn, ctx, None).await.map_err(db_error)?;
                txn.commit().await.map_err(db_error)?;
                // A cached "no such plan" must go.
                self.changed(&Change::Plan(new.id.to_string()));
                Ok(Some(new.clone()))
            }
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Writes every mutable column of `p` if the row is still at `expected_revision`, bumping the
    /// revision. `None` when the row has moved on (or is gone): the caller re-reads and decides.
    pub async fn save_plan(
        &self,
        ctx: &CallContext,
        p: &Plan,
        expected_revision: i64,
    ) -> Result<Option<Plan>, Error> {
        let mut saved = p.clone();
        saved.revision = expected_revision + 1;
        saved.update_time = self.now();
        let model = from_domain(&saved);
        let txn = self.conn().begin().await.map_err(db_error)?;
        let result = plan::Entity::update_many()
            .col_expr(plan::Column::DisplayName, Expr::value(model.display_name))
            .col_expr(
                plan::Column::DefaultIsolation,
                Expr::value(model.default_isolation),
            )
            .col_expr(plan::Column::Limits, Expr::value(model.limits))
            .col_expr(plan::Column::Components, Expr::value(model.components))
            .col_expr(plan::Column::Revision, Expr::value(model.revision))
            .col_expr(plan::Column::UpdateTime, Expr::value(model.update_time))
            .filter(plan::Column::Id.eq(model.id))
            .filter(plan::Column::Revision.eq(expected_revision))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if result.rows_affected != 1 {
            return Ok(None);
        }
        audit::record(&txn, ctx, None).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.changed(&Change::Plan(saved.id.to_string()));
        Ok(Some(saved))
    }
}

fn from_domain(p: &Plan) -> plan::Model {
    plan::Model {
        id: p.id.as_str().to_owned(),
        display_name: p.display_name.clone(),
        default_isolation: p.default_isolation.map(|i| i.as_str().to_owned()),
        limits: PlanLimit::encode(&p.limits),
        components: serde_json::json!(p.components),
        revision: p.revision,
        create_time: p.create_time,
        update_time: p.update_time,
    }
}

fn to_domain(m: plan::Model) -> Result<Plan, Error> {
    let corrupt = |field: &str| {
        Error::Internal(format!(
            "catalog row of plan {} has an invalid {field}",
            m.id
        ))
    };
    let default_isolation = match m.default_isolation.as_deref() {
        None => None,
        Some(text) => Some(Isolation::parse(text).ok_or_else(|| corrupt("default_isolation"))?),
    };
    Ok(Plan {
        id: PlanName::parse(&m.id).map_err(|_| corrupt("id"))?,
        display_name: m.display_name,
        default_isolation,
        limits: PlanLimit::decode(&m.limits),
        components: serde_json::from_value(m.components).map_err(|_| corrupt("components"))?,
        revision: m.revision,
        create_time: m.create_time,
        update_time: m.update_time,
    })
}

/// What the catalog's cache keeps of a plan row.
pub(super) fn plan_rules(m: plan::Model) -> Result<PlanRules, Error> {
    let components = serde_json::from_value(m.components)
        .map_err(|e| Error::Internal(format!("plan {} has malformed components: {e}", m.id)))?;
    Ok(PlanRules {
        limits: PlanLimit::decode(&m.limits),
        components,
    })
}
