use sea_orm::entity::prelude::*;

/// A bearer token the control plane created (the first start's admin token): its SHA-256 only.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// admin or service.
    pub role: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub create_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
