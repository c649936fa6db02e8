use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "component_migrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub component: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: String,
    /// The migration's place in the component's history, from 0 with no gap; unique per
    /// component, which is what stops two concurrent pushes both landing.
    pub position: i32,
    pub description: String,
    pub up_sql: String,
    pub down_sql: String,
    pub sqlite_up_sql: String,
    pub sqlite_down_sql: String,
    pub checksum: String,
    pub destructive: bool,
    /// The lint's notes, a JSON array of `domain::LintNote`.
    pub findings: Json,
    pub create_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
