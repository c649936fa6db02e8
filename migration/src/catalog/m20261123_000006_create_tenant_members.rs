use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Which users belong to which tenant, and with what role. A tenant's rows are its `users`
/// quota: the store counts them under the tenant's `quota_usage` row lock. Rows of a deleted
/// tenant are kept (undelete restores them) and go when the tenant is purged.
#[derive(DeriveIden)]
enum TenantMembers {
    Table,
    TenantId,
    UserId,
    Role,
    Revision,
    JoinTime,
    UpdateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantMembers::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(TenantMembers::TenantId).uuid().not_null())
                    .col(
                        ColumnDef::new(TenantMembers::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TenantMembers::Role)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TenantMembers::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TenantMembers::JoinTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TenantMembers::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TenantMembers::TenantId)
                            .col(TenantMembers::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        // ListTenantsForUser: a user's tenants, in tenant order, without a scan.
        manager
            .create_index(
                Index::create()
                    .name("tenant_members_by_user")
                    .table(TenantMembers::Table)
                    .col(TenantMembers::UserId)
                    .col(TenantMembers::TenantId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TenantMembers::Table).to_owned())
            .await
    }
}
