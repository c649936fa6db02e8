use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Idempotency records (AIP-155): the first answer to a request id, so a retried mutation
/// returns it instead of acting twice.
#[derive(DeriveIden)]
enum RequestIds {
    Table,
    RequestId,
    Method,
    RequestHash,
    ResourceId,
    Result,
    CreateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestIds::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RequestIds::RequestId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RequestIds::Method)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestIds::RequestHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RequestIds::ResourceId).uuid().not_null())
                    // The first answer, for requests whose retry cannot recompute it; NULL while
                    // the first call is still running.
                    .col(ColumnDef::new(RequestIds::Result).json_binary().null())
                    .col(
                        ColumnDef::new(RequestIds::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestIds::Table).to_owned())
            .await
    }
}
