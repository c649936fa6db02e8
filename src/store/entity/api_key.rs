use sea_orm::entity::prelude::*;

/// A tenant API key. The secret itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub display_name: String,
    /// The secret's first characters, to recognise a key in lists and logs.
    pub prefix: String,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    pub create_time: DateTimeUtc,
    pub expire_time: Option<DateTimeUtc>,
    pub revoke_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
