use sea_orm::entity::prelude::*;

/// The first answer to an idempotent request (AIP-155): which resource it made.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "request_ids")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: Uuid,
    pub method: String,
    /// SHA-256 of the request, so reusing a request id for a different request is caught.
    pub request_hash: String,
    pub resource_id: Uuid,
    pub result: Option<Json>,
    pub create_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
