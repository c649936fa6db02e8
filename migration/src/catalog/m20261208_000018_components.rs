use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Components: streams of tenant migrations that application services own and push over the
/// API. A component's migrations are an append-only history (`position` counts from 0, with no
/// gap); the store never updates or deletes one.
#[derive(DeriveIden)]
enum Components {
    Table,
    Id,
    Description,
    Owner,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum ComponentMigrations {
    Table,
    Component,
    Version,
    Position,
    Description,
    UpSql,
    DownSql,
    SqliteUpSql,
    SqliteDownSql,
    Checksum,
    Destructive,
    /// The lint's notes (findings that did not refuse the migration), as JSON.
    Findings,
    CreateTime,
}

/// The catalog's mirror of each tenant's version of each component: one row per (tenant,
/// component) once the component has been run in the tenant's storage. The compiled sample
/// component is mirrored in `tenants.migration_version` as before, and here too.
#[derive(DeriveIden)]
enum TenantComponents {
    Table,
    TenantId,
    Component,
    Version,
    LastError,
    LastErrorTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    MigrationVersion,
    ProvisionTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum Plans {
    Table,
    Components,
}

/// Which component a rollout migrates (the compiled one for rollouts started before).
#[derive(DeriveIden)]
enum Rollouts {
    Table,
    Component,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Components::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Components::Id)
                            .string_len(63)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Components::Description).text().not_null())
                    .col(ColumnDef::new(Components::Owner).text().not_null())
                    .col(
                        ColumnDef::new(Components::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Components::UpdateTime).timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ComponentMigrations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ComponentMigrations::Component)
                            .string_len(63)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::Version)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::Position)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::Description)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ComponentMigrations::UpSql).text().not_null())
                    .col(
                        ColumnDef::new(ComponentMigrations::DownSql)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::SqliteUpSql)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::SqliteDownSql)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::Checksum)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::Destructive)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::Findings)
                            .json()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ComponentMigrations::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ComponentMigrations::Component)
                            .col(ComponentMigrations::Version),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ComponentMigrations::Table, ComponentMigrations::Component)
                            .to(Components::Table, Components::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One migration per position: two concurrent pushes of different tails cannot both land.
        manager
            .create_index(
                Index::create()
                    .name("component_migrations_position")
                    .table(ComponentMigrations::Table)
                    .col(ComponentMigrations::Component)
                    .col(ComponentMigrations::Position)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TenantComponents::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(TenantComponents::TenantId).uuid().not_null())
                    .col(
                        ColumnDef::new(TenantComponents::Component)
                            .string_len(63)
                            .not_null(),
                    )
                    .col(ColumnDef::new(TenantComponents::Version).string_len(128))
                    .col(ColumnDef::new(TenantComponents::LastError).text())
                    .col(ColumnDef::new(TenantComponents::LastErrorTime).timestamp_with_time_zone())
                    .col(
                        ColumnDef::new(TenantComponents::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TenantComponents::TenantId)
                            .col(TenantComponents::Component),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(TenantComponents::Table, TenantComponents::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The fleet view and ListTenants' version filter: tenants by component and version.
        manager
            .create_index(
                Index::create()
                    .name("tenant_components_by_version")
                    .table(TenantComponents::Table)
                    .col(TenantComponents::Component)
                    .col(TenantComponents::Version)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Plans::Table)
                    .add_column(
                        ColumnDef::new(Plans::Components)
                            .json()
                            .not_null()
                            .default(r#"["sample"]"#),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Rollouts::Table)
                    .add_column(
                        ColumnDef::new(Rollouts::Component)
                            .string_len(63)
                            .not_null()
                            .default("sample"),
                    )
                    .to_owned(),
            )
            .await?;
        // Every provisioned tenant has the sample component at the version its mirror says.
        let backfill = Query::insert()
            .into_table(TenantComponents::Table)
            .columns([
                TenantComponents::TenantId,
                TenantComponents::Component,
                TenantComponents::Version,
                TenantComponents::UpdateTime,
            ])
            .select_from(
                Query::select()
                    .column(Tenants::Id)
                    .expr(Expr::val("sample"))
                    .column(Tenants::MigrationVersion)
                    .column(Tenants::UpdateTime)
                    .from(Tenants::Table)
                    .and_where(Expr::col(Tenants::ProvisionTime).is_not_null())
                    .to_owned(),
            )
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .to_owned();
        manager.exec_stmt(backfill).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Rollouts::Table)
                    .drop_column(Rollouts::Component)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Plans::Table)
                    .drop_column(Plans::Components)
                    .to_owned(),
            )
            .await?;
        for table in [
            TenantComponents::Table.into_iden(),
            ComponentMigrations::Table.into_iden(),
            Components::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
