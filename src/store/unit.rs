//! A use case's unit of work: one catalog transaction, opened by the use case, in which the data
//! plane runs a tenant's DDL (when the tenant's storage is in the catalog database) and the
//! store records the catalog's mirror, the audit row and any rollout outcome; the use case then
//! commits it, or drops it, which rolls it back. Whatever the use case wrote commits together,
//! or none of it does. It carries the call's context, so the audit row it owes is written from
//! the unit itself, never from anything ambient.

use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::{Catalog, db_error};
use crate::domain::{CallContext, Error};

/// An open catalog transaction and the context of the call it serves; rolled back if dropped
/// uncommitted.
pub struct UnitOfWork {
    txn: DatabaseTransaction,
    ctx: CallContext,
}

impl Catalog {
    /// Opens a unit of work for the call of `ctx` on the shared catalog pool.
    pub async fn begin(&self, ctx: &CallContext) -> Result<UnitOfWork, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        let ctx = ctx.clone();
        Ok(UnitOfWork { txn, ctx })
    }

    /// Opens a unit of work on the rollout workers' pool (see [`Catalog::rollout_conn`]): for
    /// the transactions that migrate rollout targets.
    pub async fn begin_rollout(&self, ctx: &CallContext) -> Result<UnitOfWork, Error> {
        let txn = self.rollout_conn().begin().await.map_err(db_error)?;
        let ctx = ctx.clone();
        Ok(UnitOfWork { txn, ctx })
    }
}

impl UnitOfWork {
    /// The transaction, for the data plane's DDL and the store's writes.
    pub fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// The context of the call the unit serves: who, under which request id, and the audit
    /// row it owes.
    pub fn ctx(&self) -> &CallContext {
        &self.ctx
    }

    pub async fn commit(self) -> Result<(), Error> {
        self.txn.commit().await.map_err(db_error)
    }

    /// Rolls back at once (rather than when the connection is next used), releasing the locks
    /// the transaction took.
    pub async fn rollback(self) -> Result<(), Error> {
        self.txn.rollback().await.map_err(db_error)
    }
}
