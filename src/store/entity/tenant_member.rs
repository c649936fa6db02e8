use sea_orm::entity::prelude::*;

/// A user's membership of a tenant. The tenant's rows are its `users` quota.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// OWNER, ADMIN or MEMBER.
    pub role: String,
    /// Bumped on every change, for the member's etag.
    pub revision: i64,
    pub join_time: DateTimeUtc,
    pub update_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
