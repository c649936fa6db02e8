//! The unit of work shared by the use cases that run something in a tenant's storage
//! (ProvisionTenant, MigrateTenant, a rollout's target migrated on its own): the run and the
//! catalog's record of it.
//!
//! Where the tenant's storage is a schema of the catalog database, this opens one catalog
//! transaction; the data plane runs the tenant's DDL in it, the store records the catalog's
//! mirror of the tenant's version (with the call's audit row) in it, and it commits once: the
//! tenant and the catalog never disagree. A tenant with a database of its own (a PostgreSQL
//! database or an SQLite file) commits its DDL there first, and the catalog records it after,
//! in a transaction of its own: the mirror may lag the tenant, never lead it.

use crate::dataplane::{DataPlane, Report, Run, Storage, TenantMigrations};
use crate::domain::{CallContext, Error, Isolation};
use crate::store::{
    Catalog, Change,
    component_mirror::record_shared_version,
    provisioning::{Mirror, RowChange, record_run},
    settle_login,
};

/// Runs `run` for the components `sets` in the tenant's storage and records it in the catalog
/// as `mirror` says; what the run found and did, and how it changed the tenant's row.
pub(super) async fn run_and_record(
    ctx: &CallContext,
    catalog: &Catalog,
    dataplane: &DataPlane,
    storage: &Storage,
    run: &Run,
    sets: &[TenantMigrations],
    mirror: Mirror,
) -> Result<(Report, RowChange), Error> {
    if !dataplane.in_catalog(storage) {
        let report = dataplane.run_own(storage, run, sets).await?;
        let recorded = catalog
            .record_run(ctx, storage.tenant, &report.versions(), mirror)
            .await?;
        return Ok((report, recorded));
    }
    let unit = catalog.begin(ctx).await?;
    let report = dataplane.run(unit.txn(), storage, run, sets).await?;
    let now = catalog.now();
    let versions = report.versions();
    let mut recorded = record_run(
        unit.txn(),
        unit.ctx(),
        now,
        storage.tenant,
        &versions,
        mirror,
    )
    .await?;
    if mirror != Mirror::Migrated {
        // The role is made in this transaction: a suspension or deletion meanwhile found no role
        // to take LOGIN from.
        settle_login(unit.txn(), storage.tenant, &storage.role, &recorded).await?;
    }
    let shared = storage.isolation == Isolation::Shared;
    if shared {
        // One schema serves every shared tenant: they all are at its version now. That may
        // change this tenant's row again, so the row returned above is not kept.
        record_shared_version(unit.txn(), now, &versions).await?;
        if let RowChange::Changed(row) = &mut recorded {
            *row = None;
        }
    }
    unit.commit().await?;
    catalog.changed(&if shared {
        Change::All
    } else {
        Change::TenantRow(storage.tenant)
    });
    Ok((report, recorded))
}
