use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The audit log: one row per call of a mutating RPC, written in the transaction of the change
/// it made (or, for a call that changed nothing, on its own). Rows are never updated once they
/// say `OK`, and never deleted by the control plane; there is no foreign key to `tenants`, so a
/// tenant's history outlives its row.
#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    /// UUIDv7 chosen when the call started: one row per call, however many transactions it runs.
    Id,
    Time,
    Actor,
    /// The RPC, "tenant.v1.TenantService/CreateTenant".
    Action,
    TenantId,
    RequestId,
    /// The google.rpc.Code name of the call's answer: "OK", "INVALID_ARGUMENT", ...
    Outcome,
    /// Why a failed call failed, in a few words; never SQL text or secrets.
    Message,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuditEvents::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::Time)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::Actor)
                            .string_len(256)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::Action)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::TenantId).uuid().null())
                    .col(
                        ColumnDef::new(AuditEvents::RequestId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::Outcome)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::Message).string_len(512).null())
                    .to_owned(),
            )
            .await?;
        // ListAuditEvents reads newest first, by (time, id), alone or under one equality filter.
        let indexes: [(&str, Option<AuditEvents>); 4] = [
            ("audit_events_by_time", None),
            ("audit_events_by_tenant", Some(AuditEvents::TenantId)),
            ("audit_events_by_actor", Some(AuditEvents::Actor)),
            ("audit_events_by_action", Some(AuditEvents::Action)),
        ];
        for (name, leading) in indexes {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table).if_not_exists();
            if let Some(column) = leading {
                index.col(column);
            }
            manager
                .create_index(index.col(AuditEvents::Time).col(AuditEvents::Id).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
