//! RotateTenantCredentials: a new password for a tenant's least-privilege database role,
//! handed to the caller once and kept nowhere (PostgreSQL holds only its SCRAM verifier).

use super::provisioning::{Provisioning, storage_of};
use super::tenants::{TenantRef, load};
use crate::domain::{CallContext, DbPassword, DbRoleName, Error, ScramVerifier, TenantState};
use crate::store::{audit, lock_tenant_row};

/// A tenant role's name and its new password. `Debug` never shows the password.
#[derive(Debug)]
pub struct Credentials {
    pub role: DbRoleName,
    pub password: DbPassword,
}

impl Provisioning {
    /// Sets a new random password on the tenant's role. Refused, with nothing changed, for an
    /// SQLite catalog (no roles), a deleted tenant, or one whose storage is not provisioned. A
    /// suspended tenant's password may be rotated (after a leak, before resuming it).
    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn rotate_credentials(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
    ) -> Result<Credentials, Error> {
        let tenant = load(&self.catalog, target).await?;
        ctx.note_tenant(tenant.id);
        if !self.dataplane.has_roles() {
            return Err(Error::FailedPrecondition {
                subject: tenant.name(),
                message: "tenant database roles need a PostgreSQL catalog: the embedded SQLite \
                          catalog has no roles, and a tenant's SQLite file has no credentials"
                    .into(),
            });
        }
        let refusal = match (tenant.state, tenant.provision_time) {
            (TenantState::Deleted, _) => Some("it is DELETED (undelete it first)"),
            (_, None) => Some("its storage is not provisioned (ProvisionTenant creates its role)"),
            _ => None,
        };
        if let Some(why) = refusal {
            return Err(Error::FailedPrecondition {
                subject: tenant.name(),
                message: format!(
                    "cannot rotate the credentials of tenant {}: {why}",
                    tenant.slug
                ),
            });
        }
        let storage = storage_of(&tenant);
        let password = DbPassword::generate()?;
        let verifier = ScramVerifier::new(&password)?;
        // The tenant's lock, then its row, in the order provisioning takes them; the audit
        // event commits with the new password.
        let unit = self.catalog.begin(ctx).await?;
        self.dataplane.lock_tenant(unit.txn(), &storage).await?;
        lock_tenant_row(unit.txn(), tenant.id).await?;
        self.dataplane
            .set_password(unit.txn(), &storage, &verifier)
            .await?;
        audit::record_change(unit.txn(), unit.ctx(), tenant.id).await?;
        unit.commit().await?;
        tracing::info!(role = %storage.role, "tenant role password rotated");
        Ok(Credentials {
            role: storage.role,
            password,
        })
    }
}
