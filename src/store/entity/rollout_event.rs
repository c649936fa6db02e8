use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rollout_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub rollout_id: Uuid,
    pub kind: String,
    pub tenant_id: Option<Uuid>,
    pub detail: Json,
    pub event_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
