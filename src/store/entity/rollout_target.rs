use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rollout_targets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub rollout_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    pub position: i32,
    pub state: String,
    pub attempts: i32,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub error: Option<String>,
    pub claimed_by: Option<String>,
    /// Epoch milliseconds.
    pub lease_until: Option<i64>,
    pub duration_ms: Option<i64>,
    pub update_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
