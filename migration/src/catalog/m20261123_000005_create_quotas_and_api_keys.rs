use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A tenant's use of one resource: the current window's count (COUNTER) or the level (GAUGE,
/// window_start 0). One row per tenant and resource; a new window overwrites the old one.
#[derive(DeriveIden)]
enum QuotaUsage {
    Table,
    TenantId,
    Resource,
    WindowStart,
    Used,
    UpdateTime,
}

/// Tenant API keys. Only a SHA-256 of the secret is kept; the secret is shown once.
#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    TenantId,
    DisplayName,
    Prefix,
    SecretHash,
    CreateTime,
    ExpireTime,
    RevokeTime,
}

/// The channel other replicas LISTEN on to drop what they cached of a changed row.
const NOTIFY_FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION tenant_plane_notify_change() RETURNS trigger AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    IF TG_TABLE_NAME = 'tenants' THEN
        PERFORM pg_notify('tenant_plane_catalog', 'tenant:' || changed.id::text || ':' || changed.slug);
    ELSIF TG_TABLE_NAME = 'plans' THEN
        PERFORM pg_notify('tenant_plane_catalog', 'plan:' || changed.id);
    ELSIF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('tenant_plane_catalog', 'api_key:' || changed.secret_hash);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"#;

const TRIGGERS: [(&str, &str); 3] = [
    ("tenants", "tenants_notify_change"),
    ("plans", "plans_notify_change"),
    ("api_keys", "api_keys_notify_change"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QuotaUsage::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(QuotaUsage::TenantId).uuid().not_null())
                    .col(
                        ColumnDef::new(QuotaUsage::Resource)
                            .string_len(63)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(QuotaUsage::WindowStart)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(QuotaUsage::Used).big_integer().not_null())
                    .col(
                        ColumnDef::new(QuotaUsage::UpdateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(QuotaUsage::TenantId)
                            .col(QuotaUsage::Resource),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ApiKeys::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ApiKeys::TenantId).uuid().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::DisplayName)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ApiKeys::Prefix).string_len(16).not_null())
                    .col(
                        ColumnDef::new(ApiKeys::SecretHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::ExpireTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::RevokeTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_keys_by_tenant")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::TenantId)
                    .col(ApiKeys::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared(NOTIFY_FUNCTION).await?;
            for (table, trigger) in TRIGGERS {
                db.execute_unprepared(&format!(
                    "DROP TRIGGER IF EXISTS {trigger} ON {table}; \
                     CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION tenant_plane_notify_change()"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            let db = manager.get_connection();
            for (table, trigger) in TRIGGERS {
                db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {trigger} ON {table}"))
                    .await?;
            }
            db.execute_unprepared("DROP FUNCTION IF EXISTS tenant_plane_notify_change()")
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(QuotaUsage::Table).to_owned())
            .await
    }
}
