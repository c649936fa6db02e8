use sea_orm::entity::prelude::*;

/// The catalog's mirror of one tenant's version of one component.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_components")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub component: String,
    /// The last migration applied; `None` when none is.
    pub version: Option<String>,
    /// The error of the last failed run of the component in the tenant's storage.
    pub last_error: Option<String>,
    pub last_error_time: Option<DateTimeUtc>,
    pub update_time: DateTimeUtc,
    /// Whether the tenant's last drift check found a difference on a table this component's
    /// migrations made.
    pub drifted: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
