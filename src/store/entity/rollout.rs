use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rollouts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The component whose migrations the rollout runs.
    pub component: String,
    pub target_version: String,
    pub selector: Json,
    pub max_concurrency: i32,
    pub canary_count: i32,
    pub error_policy: String,
    #[sea_orm(column_type = "Double")]
    pub max_failure_ratio: f64,
    pub state: String,
    pub error: Option<String>,
    #[sea_orm(unique)]
    pub request_id: Option<Uuid>,
    pub request_hash: Option<String>,
    pub create_time: DateTimeUtc,
    pub start_time: Option<DateTimeUtc>,
    pub end_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
