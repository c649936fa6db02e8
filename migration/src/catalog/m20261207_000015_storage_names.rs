use sea_orm_migration::prelude::*;

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Storage names are unique in the catalog, and the storage tenants already have carries their
/// mark.
///
/// A schema or database name is prefix + slug, and the prefix is a setting: with `tenant_` then
/// `t`, the slugs `acme` and `enant-acme` give the same name. Unique indexes refuse the second
/// tenant, whatever prefix each was made with (SHARED tenants all share one schema, so only
/// SCHEMA tenants' schema names count).
///
/// The control plane now marks the schemas and databases it makes (`COMMENT ... IS
/// 'tenant-plane tenant <id>'`, `'tenant-plane shared'` for the shared schema), adopts and
/// drops only storage with its tenant's mark, and leaves marked schemas out when it looks for
/// the catalog. PostgreSQL: storage of tenants not purged that exists unmarked, made before
/// marks, is marked here.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS tenants_schema_name_key \
               ON tenants (schema_name) WHERE isolation <> 'shared'; \
             CREATE UNIQUE INDEX IF NOT EXISTS tenants_database_name_key \
               ON tenants (database_name)",
        )
        .await?;
        on_postgres(manager, MARK_EXISTING).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX IF EXISTS tenants_schema_name_key; \
                 DROP INDEX IF EXISTS tenants_database_name_key",
            )
            .await?;
        Ok(())
    }
}

const MARK_EXISTING: &str = r#"
DO $mark$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT id, isolation, schema_name, database_name FROM tenants WHERE state <> 'PURGED'
    LOOP
        IF t.isolation IN ('schema', 'shared') AND EXISTS (
            SELECT 1 FROM pg_namespace
            WHERE nspname = t.schema_name AND obj_description(oid, 'pg_namespace') IS NULL
        ) THEN
            EXECUTE format('COMMENT ON SCHEMA %I IS %L', t.schema_name,
                CASE WHEN t.isolation = 'shared' THEN 'tenant-plane shared'
                     ELSE 'tenant-plane tenant ' || t.id END);
        ELSIF t.isolation = 'database' AND EXISTS (
            SELECT 1 FROM pg_database
            WHERE datname = t.database_name AND shobj_description(oid, 'pg_database') IS NULL
        ) THEN
            EXECUTE format('COMMENT ON DATABASE %I IS %L', t.database_name,
                'tenant-plane tenant ' || t.id);
        END IF;
    END LOOP;
END
$mark$;
"#;
