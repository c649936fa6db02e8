use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Whether the tenant's last drift check found a difference on a table this component's
/// migrations made: the fleet view counts drifted tenants per component from the catalog alone,
/// and the team owning a component sees which of its tenants need mending. Each recorded check
/// sets it for every component of the tenant; a check that could not be made leaves it.
/// `tenant_drift.differences` holds, from now on, a JSON object per difference (with its
/// component) instead of a sentence.
#[derive(DeriveIden)]
enum TenantComponents {
    Table,
    Drifted,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TenantComponents::Table)
                    .add_column(
                        ColumnDef::new(TenantComponents::Drifted)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TenantComponents::Table)
                    .drop_column(TenantComponents::Drifted)
                    .to_owned(),
            )
            .await
    }
}
