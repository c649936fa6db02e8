use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A rollout: migrating many tenants to one version, persisted so any replica can work on it
/// and a restarted one resumes it.
#[derive(DeriveIden)]
enum Rollouts {
    Table,
    Id,
    TargetVersion,
    Selector,
    MaxConcurrency,
    CanaryCount,
    ErrorPolicy,
    MaxFailureRatio,
    State,
    Error,
    RequestId,
    RequestHash,
    CreateTime,
    StartTime,
    EndTime,
}

/// One tenant of a rollout. `lease_until` lets another replica take over the target of a
/// replica that died while migrating it.
#[derive(DeriveIden)]
enum RolloutTargets {
    Table,
    RolloutId,
    TenantId,
    Position,
    State,
    Attempts,
    FromVersion,
    ToVersion,
    Error,
    ClaimedBy,
    LeaseUntil,
    DurationMs,
    UpdateTime,
}

/// What happened, in order, for WatchRollout: read by sequence number, so a watcher on any
/// replica sees the events of every replica.
#[derive(DeriveIden)]
enum RolloutEvents {
    Table,
    Seq,
    RolloutId,
    Kind,
    TenantId,
    Detail,
    EventTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Rollouts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Rollouts::Id).uuid().not_null().primary_key())
                    .col(
                        ColumnDef::new(Rollouts::TargetVersion)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Rollouts::Selector).json_binary().not_null())
                    .col(
                        ColumnDef::new(Rollouts::MaxConcurrency)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Rollouts::CanaryCount).integer().not_null())
                    .col(
                        ColumnDef::new(Rollouts::ErrorPolicy)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Rollouts::MaxFailureRatio)
                            .double()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Rollouts::State).string_len(16).not_null())
                    .col(ColumnDef::new(Rollouts::Error).text().null())
                    .col(
                        ColumnDef::new(Rollouts::RequestId)
                            .uuid()
                            .null()
                            .unique_key(),
                    )
                    // SHA-256 of the request, so a request id reused for another request is caught.
                    .col(ColumnDef::new(Rollouts::RequestHash).string_len(64).null())
                    .col(
                        ColumnDef::new(Rollouts::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Rollouts::StartTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Rollouts::EndTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RolloutTargets::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RolloutTargets::RolloutId).uuid().not_null())
                    .col(ColumnDef::new(RolloutTargets::TenantId).uuid().not_null())
                    .col(
                        ColumnDef::new(RolloutTargets::Position)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RolloutTargets::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RolloutTargets::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RolloutTargets::FromVersion)
                            .string_len(255)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RolloutTargets::ToVersion)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(RolloutTargets::Error).text().null())
                    .col(
                        ColumnDef::new(RolloutTargets::ClaimedBy)
                            .string_len(64)
                            .null(),
                    )
                    // Epoch milliseconds: compared in SQL, so an integer on every backend.
                    .col(
                        ColumnDef::new(RolloutTargets::LeaseUntil)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RolloutTargets::DurationMs)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RolloutTargets::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(RolloutTargets::RolloutId)
                            .col(RolloutTargets::TenantId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("rollout_targets_rollout_id_fkey")
                            .from(RolloutTargets::Table, RolloutTargets::RolloutId)
                            .to(Rollouts::Table, Rollouts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Workers claim the next targets of a rollout by state and position.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("rollout_targets_claim_idx")
                    .table(RolloutTargets::Table)
                    .col(RolloutTargets::RolloutId)
                    .col(RolloutTargets::State)
                    .col(RolloutTargets::Position)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RolloutEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RolloutEvents::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RolloutEvents::RolloutId).uuid().not_null())
                    .col(
                        ColumnDef::new(RolloutEvents::Kind)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RolloutEvents::TenantId).uuid().null())
                    .col(
                        ColumnDef::new(RolloutEvents::Detail)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RolloutEvents::EventTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("rollout_events_rollout_id_fkey")
                            .from(RolloutEvents::Table, RolloutEvents::RolloutId)
                            .to(Rollouts::Table, Rollouts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("rollout_events_rollout_seq_idx")
                    .table(RolloutEvents::Table)
                    .col(RolloutEvents::RolloutId)
                    .col(RolloutEvents::Seq)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RolloutEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RolloutTargets::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Rollouts::Table).to_owned())
            .await
    }
}
