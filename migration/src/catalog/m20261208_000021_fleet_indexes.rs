use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Partial indexes for the fleet view, which counts every live tenant (provisioned and not
/// deleted) per plan, every live tenant's component versions, and the drifted ones:
///
/// - `tenants_live_by_plan`: the live tenants' plans, so counting them per plan reads a small
///   index instead of every tenant's row.
/// - `tenants_not_live`: the tenants that are not live (never provisioned, or deleted), a small
///   set, so the count of component versions reads the mirror (`tenant_components`) and leaves
///   out that set, instead of joining every mirror row with its tenant.
/// - `tenant_drift_drifted`: the tenants whose last drift check found drift, a few of a fleet
///   that is checked every day.
#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Plan,
    State,
    ProvisionTime,
}

#[derive(DeriveIden)]
enum TenantDrift {
    Table,
    TenantId,
    Drifted,
}

const LIVE: &str = "tenants_live_by_plan";
const DRIFTED: &str = "tenant_drift_drifted";
const NOT_LIVE: &str = "tenants_not_live";
const DELETED: &str = "DELETED";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(LIVE)
                    .table(Tenants::Table)
                    .col(Tenants::Plan)
                    .and_where(Expr::col(Tenants::ProvisionTime).is_not_null())
                    .and_where(Expr::col(Tenants::State).ne(DELETED))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(NOT_LIVE)
                    .table(Tenants::Table)
                    .col(Tenants::Id)
                    .cond_where(
                        Cond::any()
                            .add(Expr::col(Tenants::ProvisionTime).is_null())
                            .add(Expr::col(Tenants::State).eq(DELETED)),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(DRIFTED)
                    .table(TenantDrift::Table)
                    .col(TenantDrift::TenantId)
                    .and_where(Expr::col(TenantDrift::Drifted).eq(true))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .if_exists()
                    .name(DRIFTED)
                    .table(TenantDrift::Table)
                    .to_owned(),
            )
            .await?;
        for name in [LIVE, NOT_LIVE] {
            manager
                .drop_index(
                    Index::drop()
                        .if_exists()
                        .name(name)
                        .table(Tenants::Table)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
