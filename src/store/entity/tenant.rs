use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub slug: String,
    pub display_name: String,
    pub plan: String,
    pub isolation: String,
    pub state: String,
    pub state_before_delete: Option<String>,
    pub state_before_suspend: Option<String>,
    pub labels: Json,
    pub limit_overrides: Json,
    pub schema_name: Option<String>,
    pub database_name: Option<String>,
    pub suspend_reason: Option<String>,
    pub migration_version: Option<String>,
    pub last_error: Option<String>,
    pub last_error_time: Option<DateTimeUtc>,
    pub provision_time: Option<DateTimeUtc>,
    pub revision: i64,
    pub create_time: DateTimeUtc,
    pub update_time: DateTimeUtc,
    pub delete_time: Option<DateTimeUtc>,
    pub purge_time: Option<DateTimeUtc>,
    pub suspend_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
