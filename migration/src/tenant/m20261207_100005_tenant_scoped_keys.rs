//! Every key of the sample tables includes `tenant_id` where the tables hold the rows of many
//! tenants (SHARED isolation). Row-level security does not apply to unique and foreign-key
//! checks: with keys of their own, one tenant could learn whether an email exists in another
//! tenant (a unique violation), block another tenant's delete by referencing its row, or probe
//! another tenant's ids through the primary key. Keyed on `(tenant_id, ...)`, each tenant's
//! keys are checked among its own rows only, and a foreign key can only reach a row of the same
//! tenant.
//!
//! A tenant with storage of its own (SCHEMA or DATABASE isolation, SQLite files) has no
//! `tenant_id` column and needs none: its keys are already its own, so there the migration
//! changes nothing.

use sea_orm_migration::prelude::*;

use super::in_shared_schema;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The keys, from the old shape to the new, in an order that never leaves a foreign key
/// without the unique key it references.
const UP: &[&str] = &[
    "ALTER TABLE messages DROP CONSTRAINT messages_project_id_fkey",
    "ALTER TABLE projects DROP CONSTRAINT projects_owner_id_fkey",
    "ALTER TABLE users DROP CONSTRAINT users_pkey, DROP CONSTRAINT users_email_key, \
       ADD PRIMARY KEY (tenant_id, id), ADD CONSTRAINT users_email_key UNIQUE (tenant_id, email)",
    "ALTER TABLE projects DROP CONSTRAINT projects_pkey, ADD PRIMARY KEY (tenant_id, id)",
    "ALTER TABLE messages DROP CONSTRAINT messages_pkey, ADD PRIMARY KEY (tenant_id, id)",
    "ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey, ADD PRIMARY KEY (tenant_id, id)",
    "ALTER TABLE projects ADD CONSTRAINT projects_owner_id_fkey \
       FOREIGN KEY (tenant_id, owner_id) REFERENCES users (tenant_id, id)",
    "ALTER TABLE messages ADD CONSTRAINT messages_project_id_fkey \
       FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id)",
    // The indexes that serve the foreign keys' checks, within the tenant.
    "DROP INDEX projects_owner_id_idx",
    "CREATE INDEX projects_owner_id_idx ON projects (tenant_id, owner_id)",
    "DROP INDEX messages_project_id_created_at_idx",
    "CREATE INDEX messages_project_id_created_at_idx \
       ON messages (tenant_id, project_id, created_at)",
];

/// Back to keys of their own: fails where two tenants now share an email or an id.
const DOWN: &[&str] = &[
    "DROP INDEX messages_project_id_created_at_idx",
    "CREATE INDEX messages_project_id_created_at_idx ON messages (project_id, created_at)",
    "DROP INDEX projects_owner_id_idx",
    "CREATE INDEX projects_owner_id_idx ON projects (owner_id)",
    "ALTER TABLE messages DROP CONSTRAINT messages_project_id_fkey",
    "ALTER TABLE projects DROP CONSTRAINT projects_owner_id_fkey",
    "ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey, ADD PRIMARY KEY (id)",
    "ALTER TABLE messages DROP CONSTRAINT messages_pkey, ADD PRIMARY KEY (id)",
    "ALTER TABLE projects DROP CONSTRAINT projects_pkey, ADD PRIMARY KEY (id)",
    "ALTER TABLE users DROP CONSTRAINT users_pkey, DROP CONSTRAINT users_email_key, \
       ADD PRIMARY KEY (id), ADD CONSTRAINT users_email_key UNIQUE (email)",
    "ALTER TABLE projects ADD CONSTRAINT projects_owner_id_fkey \
       FOREIGN KEY (owner_id) REFERENCES users (id)",
    "ALTER TABLE messages ADD CONSTRAINT messages_project_id_fkey \
       FOREIGN KEY (project_id) REFERENCES projects (id)",
];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if !in_shared_schema() {
        return Ok(());
    }
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN).await
    }
}
