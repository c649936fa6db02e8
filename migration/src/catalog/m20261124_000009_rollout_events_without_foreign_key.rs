use sea_orm_migration::prelude::*;

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Rollout events keep their rollout's id without a foreign key (PostgreSQL).
///
/// Every event row is written by a statement that reads its rollout's row or one of its
/// targets' rows (which keep their foreign key), and rollouts are never deleted. The key's check
/// took a `FOR KEY SHARE` lock on the rollout's row for each event: the workers of a rollout,
/// logging two events per tenant, all locked that one row, and PostgreSQL turned the shared
/// locks into MultiXacts. SQLite keeps the key: it cannot drop one, and its check takes no lock.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "ALTER TABLE rollout_events DROP CONSTRAINT IF EXISTS rollout_events_rollout_id_fkey",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "ALTER TABLE rollout_events ADD CONSTRAINT rollout_events_rollout_id_fkey \
             FOREIGN KEY (rollout_id) REFERENCES rollouts (id) ON DELETE CASCADE",
        )
        .await
    }
}
