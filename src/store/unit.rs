//! A use case's unit of work: one catalog transaction, opened by the use case, in which the data
//! plane runs a tenant's DDL (when the tenant's storage is in the catalog database) and the
//! store records the catalog's mirror, the audit row and any rollout outcome; the use case then
//! commits it, or drops it, which rolls it back. Whatever the use case wrote commits together,
//! or none of it does.

use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::{Catalog, db_error};
use crate::domain::Error;

/// An open catalog transaction, rolled back if dropped uncommitted.
pub struct UnitOfWork {
    txn: DatabaseTransaction,
}

impl Catalog {
    /// Opens a unit of work on the shared catalog pool.
    pub async fn begin(&self) -> Result<UnitOfWork, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        Ok(UnitOfWork { txn })
    }

    /// Opens a unit of work on the rollout workers' pool (see [`Catalog::rollout_conn`]): for
    /// the transactions that migrate rollout targets.
    pub async fn begin_rollout(&self) -> Result<UnitOfWork, Error> {
        let txn = self.rollout_conn().begin().await.map_err(db_error)?;
        Ok(UnitOfWork { txn })
    }
}

impl UnitOfWork {
    /// The transaction, for the data plane's DDL and the store's writes.
    pub fn txn(&self) -> &DatabaseTransaction {
        &self.txn
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
