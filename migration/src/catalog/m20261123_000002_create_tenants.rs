use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Slug,
    DisplayName,
    Plan,
    Isolation,
    State,
    StateBeforeDelete,
    StateBeforeSuspend,
    Labels,
    LimitOverrides,
    SchemaName,
    DatabaseName,
    SuspendReason,
    MigrationVersion,
    LastError,
    LastErrorTime,
    ProvisionTime,
    Revision,
    CreateTime,
    UpdateTime,
    DeleteTime,
    PurgeTime,
    SuspendTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .if_not_exists()
                    // UUIDv7: time-ordered, so the primary key is also the stable listing order.
                    .col(ColumnDef::new(Tenants::Id).uuid().not_null().primary_key())
                    // Unique across every tenant ever created, deleted ones included: a slug names
                    // storage, and reusing it while the old data is kept would be ambiguous.
                    .col(
                        ColumnDef::new(Tenants::Slug)
                            .string_len(63)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Tenants::DisplayName)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Tenants::Plan).string_len(63).not_null())
                    .col(ColumnDef::new(Tenants::Isolation).string_len(16).not_null())
                    .col(ColumnDef::new(Tenants::State).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Tenants::StateBeforeDelete)
                            .string_len(16)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tenants::StateBeforeSuspend)
                            .string_len(16)
                            .null(),
                    )
                    .col(ColumnDef::new(Tenants::Labels).json_binary().not_null())
                    .col(
                        ColumnDef::new(Tenants::LimitOverrides)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Tenants::SchemaName).string_len(63).null())
                    .col(ColumnDef::new(Tenants::DatabaseName).string_len(255).null())
                    .col(
                        ColumnDef::new(Tenants::SuspendReason)
                            .string_len(500)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tenants::MigrationVersion)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(Tenants::LastError).text().null())
                    .col(
                        ColumnDef::new(Tenants::LastErrorTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    // Set once the tenant's storage exists; cleared when it is purged.
                    .col(
                        ColumnDef::new(Tenants::ProvisionTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Tenants::Revision).big_integer().not_null())
                    .col(
                        ColumnDef::new(Tenants::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tenants::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tenants::DeleteTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tenants::PurgeTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tenants::SuspendTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Listing filters by state and plan; the purge job looks for due purge times.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("tenants_state_id_idx")
                    .table(Tenants::Table)
                    .col(Tenants::State)
                    .col(Tenants::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("tenants_purge_time_idx")
                    .table(Tenants::Table)
                    .col(Tenants::PurgeTime)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tenants::Table).to_owned())
            .await
    }
}
