//! A SCHEMA tenant's first provisioning, in one statement.
//!
//! Provisioning a tenant step by step looks first (does the schema exist, does the role, may it
//! connect already), then acts on what it found: six round trips in the provisioning's
//! transaction, `BEGIN` and `COMMIT` included. A tenant the catalog has never seen provisioned
//! almost always has nothing yet, so its provisioning is first tried as if so, in one batch:
//! the tenant's lock, the schema (not `IF NOT EXISTS`) with the tenant's mark, its version table, the
//! role (an error if it exists) and its grants, every migration, the version rows and the role's LOGIN settled
//! against the tenant's state. The batch goes inside the statement that records the tenant
//! provisioned, with the call's audit row (see the catalog's `tenant_plane_run_batch`), sent
//! outside any transaction: it commits whole, or not at all.
//!
//! Whatever error the database reports for it — the schema or the role already there, a
//! migration that fails, a privilege the control plane lacks — means it changed nothing, and
//! the provisioning runs step by step, which finds out which it was and says so. So does a
//! migration that cannot be batched. A lost connection fails the call instead: the statement
//! may have committed.

use chrono::Utc;

use super::plan::SEPARATOR;
use super::sql::{lock_sql, mark_sql, quote};
use super::{DataPlane, Storage, TargetRun, TenantMigrations, roles};
use crate::domain::Error;
use crate::store::{Change, provisioning::provision_in_one_statement, settle_login_sql};

impl DataPlane {
    /// Provisions the SCHEMA tenant of `storage`, whose schema is `name`, in one statement, if it
    /// has nothing yet. `None`, with nothing changed, when the migrations cannot all be batched
    /// or the database refused the statement.
    pub(super) async fn provision_first(
        &self,
        storage: &Storage,
        name: &str,
    ) -> Result<Option<TargetRun>, Error> {
        let names = self.migrations.names();
        let Some(statements) = self.migrations.planned(0, names.len()).await else {
            return Ok(None);
        };
        let schema = quote(name);
        let now = Utc::now();
        let batch: Vec<String> = [
            lock_sql(storage),
            format!("CREATE SCHEMA {schema}"),
            mark_sql("SCHEMA", name, storage),
            format!("SET LOCAL search_path TO {schema}"),
            TenantMigrations::install_sql(),
            // Before the migrations, so that what they create is granted as it is created.
            roles::before_migrations(storage, name, true, true),
        ]
        .into_iter()
        .chain(statements)
        .chain([
            TenantMigrations::record_sql(name, names, now.timestamp()),
            "SET LOCAL search_path TO DEFAULT".to_owned(),
            settle_login_sql(storage.tenant, &storage.role),
        ])
        .filter(|statement| !statement.is_empty())
        .collect();
        let Some(recorded) = provision_in_one_statement(
            self.catalog.conn(),
            storage.tenant,
            self.migrations.latest(),
            batch.join(SEPARATOR),
        )
        .await?
        else {
            return Ok(None);
        };
        tracing::info!(role = %storage.role, "tenant role made (it committed with the provisioning)");
        self.catalog.changed(&Change::TenantRow(storage.tenant));
        let mut report = self.report(
            names.iter().map(|name| (name.clone(), now)).collect(),
            names.to_vec(),
        );
        report.created = true;
        report.recorded = recorded;
        Ok(Some(TargetRun::Ran(report)))
    }
}
