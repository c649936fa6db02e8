use sea_orm::entity::prelude::*;

/// One call of a mutating RPC: who, what, on which tenant, and how it ended.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// UUIDv7 chosen when the call started: a call that writes in several transactions still
    /// leaves one row.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub time: DateTimeUtc,
    pub actor: String,
    /// The RPC, "tenant.v1.TenantService/CreateTenant".
    pub action: String,
    pub tenant_id: Option<Uuid>,
    /// The call's `x-request-id`.
    pub request_id: String,
    /// The google.rpc.Code name of the answer: "OK", "INVALID_ARGUMENT", ...
    pub outcome: String,
    pub message: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
