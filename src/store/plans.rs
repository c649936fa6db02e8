//! Queries on the `plans` table.

use sea_orm::{ActiveValue::Set, EntityTrait, sea_query::OnConflict};

use super::entity::plan;
use super::{Catalog, db_error};
use crate::domain::{Error, Isolation, PlanLimit, PlanName};

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
        let now = chrono::Utc::now();
        let rows = plans.iter().map(|p| plan::ActiveModel {
            id: Set(p.id.as_str().to_owned()),
            display_name: Set(p.display_name.clone()),
            default_isolation: Set(p.default_isolation.map(|i| i.as_str().to_owned())),
            limits: Set(PlanLimit::encode(&p.limits)),
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
}
