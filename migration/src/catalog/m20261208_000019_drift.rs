use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each tenant's last drift check: whether its storage still had the shape its applied
/// migrations produce, and how it differed. One row per tenant, replaced by each check, so a
/// fleet view counts drifted tenants from the catalog alone, without opening any tenant's
/// storage.
#[derive(DeriveIden)]
enum TenantDrift {
    Table,
    TenantId,
    CheckTime,
    Drifted,
    /// The differences found, as JSON: a list of sentences.
    Differences,
    /// The fingerprints of the expected and the actual shape (SHA-256, hex).
    ExpectedFingerprint,
    ActualFingerprint,
    /// Why the last check could not be made; the last successful check's finding stays.
    Error,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantDrift::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(TenantDrift::TenantId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(TenantDrift::CheckTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(TenantDrift::Drifted).boolean().not_null())
                    .col(ColumnDef::new(TenantDrift::Differences).json().not_null())
                    .col(ColumnDef::new(TenantDrift::ExpectedFingerprint).string_len(64))
                    .col(ColumnDef::new(TenantDrift::ActualFingerprint).string_len(64))
                    .col(ColumnDef::new(TenantDrift::Error).text())
                    .foreign_key(
                        ForeignKey::create()
                            .from(TenantDrift::Table, TenantDrift::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TenantDrift::Table).to_owned())
            .await
    }
}
