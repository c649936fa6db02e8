//! Drift: whether a tenant's storage still has the shape its applied migrations produce.
//!
//! The expected shape comes from the migrations themselves: the same migration code the data
//! plane runs is applied to a scratch schema of the catalog database inside a transaction that
//! is rolled back (PostgreSQL), or to an in-memory database (SQLite), and the shape left there
//! is read ([`super::shape::read`]). Such a reference depends only on which migrations are
//! applied and on the kind of storage, so it is built once per (migrations, kind) and kept in
//! memory: a fleet at a few versions costs a few references, however many tenants it has.
//!
//! A tenant's migrations are given as a list of [`Applied`] sets (the compiled set today; one
//! per component as tenants get several), each with how many of its migrations the tenant has;
//! the reference applies them in that order. The shared schema of SHARED tenants gets, after
//! each migration, the tenant column and policies it gets when migrated for real
//! ([`super::shared::secure`]), so its reference has them too.
//!
//! Each difference is attributed to the set whose migrations made the table it is on (or the
//! function it is about): the reference is built set by set, and the tables and functions
//! present after a set that were not before it are that set's. With several sets that costs
//! one more read of the scratch schema per set but the last (SQLite: a read after every set,
//! in memory), made only when a reference is built, never per tenant checked.
//!
//! Reading a tenant's actual shape costs one query (two round trips with the `search_path`)
//! per schema; [`DriftChecker::check_many`] reads many SCHEMA tenants in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sea_orm::{Database, DatabaseTransaction, DbErr, TransactionTrait};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::handles::Address;
use super::plan::Batch;
use super::shape::{Difference, Object, Shape, differences, read};
use super::sql::{Ident, exec, not_provisioned, required};
use super::{DataPlane, Storage, TenantMigrations, shared};
use crate::db::{Backend, db_error};
use crate::domain::{Error, Isolation};

/// The most references kept in memory; past it the cache starts afresh. A fleet needs one per
/// (versions applied, kind of storage) it holds, a handful in practice; the bound only keeps
/// a server that sees unusually many from growing without end.
const MAX_REFERENCES: usize = 256;

/// One migration set applied to a tenant: its first `count` migrations (oldest first).
#[derive(Clone, Copy)]
pub struct Applied<'a> {
    /// Names the set among a tenant's sets (a component's id; any fixed string for a server
    /// with one set): two sets may name their migrations alike.
    pub set: &'a str,
    pub migrations: &'a TenantMigrations,
    pub count: usize,
}

/// What a check of one tenant found.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// [`Shape::fingerprint`] of the shape the applied migrations produce.
    pub expected: String,
    /// [`Shape::fingerprint`] of the tenant's storage.
    pub actual: String,
    /// How the storage differs from the expected shape; empty when it does not.
    pub differences: Vec<Attributed>,
}

/// A [`Difference`] with the set (component) whose migrations made what it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributed {
    #[serde(flatten)]
    pub difference: Difference,
    /// The [`Applied::set`] whose migrations made the table the difference is on, or the
    /// function it is about; `None` when no set made it (an extra table or function).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

impl Drift {
    pub fn drifted(&self) -> bool {
        !self.differences.is_empty()
    }
}

/// The kind of storage a reference is built for: the tables SHARED tenants share carry a tenant
/// column and policies the others lack, and SQLite prints its catalogs differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Flavour {
    Postgres,
    Shared,
    Sqlite,
}

/// Checks tenants' storage against references built from their migrations (see the module
/// docs); cheap to share.
pub struct DriftChecker {
    dataplane: Arc<DataPlane>,
    /// References by [`reference_key`].
    references: Mutex<HashMap<String, Arc<Reference>>>,
}

/// The shape a tenant's applied migrations produce, with which set made each table.
#[derive(Debug)]
struct Reference {
    shape: Shape,
    /// Table name → the [`Applied::set`] whose migrations created it.
    makers: BTreeMap<String, String>,
    /// Function (name and argument types) → the set whose migrations created it.
    function_makers: BTreeMap<String, String>,
}

impl Reference {
    fn new() -> Self {
        Self {
            shape: Shape::default(),
            makers: BTreeMap::new(),
            function_makers: BTreeMap::new(),
        }
    }

    /// Notes, as made by `set`, the tables and functions of `so_far` no earlier set made.
    fn made(&mut self, so_far: &Shape, set: &str) {
        for name in so_far.tables.keys() {
            if !self.makers.contains_key(name) {
                self.makers.insert(name.clone(), set.to_owned());
            }
        }
        for name in so_far.functions.keys() {
            if !self.function_makers.contains_key(name) {
                self.function_makers.insert(name.clone(), set.to_owned());
            }
        }
    }

    /// The set that made what `difference` is about; `None` when none did.
    fn maker(&self, difference: &Difference) -> Option<String> {
        match difference.object() {
            Object::Function => self.function_makers.get(difference.name()),
            _ => self.makers.get(difference.table()),
        }
        .cloned()
    }
}

impl DriftChecker {
    pub fn new(dataplane: Arc<DataPlane>) -> Self {
        Self {
            dataplane,
            references: Mutex::new(HashMap::new()),
        }
    }

    /// Checks one tenant's storage against the shape `applied` produces.
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant))]
    pub async fn check(&self, storage: &Storage, applied: &[Applied<'_>]) -> Result<Drift, Error> {
        let expected = self.expected(storage, applied).await?;
        let actual = self.actual(storage).await?;
        Ok(compare(&expected, &actual))
    }

    /// Checks several tenants, each against the shape its own `applied` produces; one answer
    /// per item, in order. Tenants whose schema is in the catalog database are read in one
    /// transaction (a failure there starts another for the rest); the others one by one.
    pub async fn check_many(
        &self,
        items: &[(Storage, Vec<Applied<'_>>)],
    ) -> Vec<Result<Drift, Error>> {
        // References first: building one takes a catalog connection of its own, which must not
        // wait on the one the reads below hold (a pool may have a single connection).
        let mut expected = Vec::with_capacity(items.len());
        for (storage, applied) in items {
            expected.push(self.expected(storage, applied).await);
        }
        let mut answers = Vec::with_capacity(items.len());
        let mut txn: Option<DatabaseTransaction> = None;
        for ((storage, _), expected) in items.iter().zip(expected) {
            let expected = match expected {
                Ok(expected) => expected,
                Err(e) => {
                    answers.push(Err(e));
                    continue;
                }
            };
            if !self.dataplane.in_catalog(storage) {
                answers.push(
                    self.actual(storage)
                        .await
                        .map(|actual| compare(&expected, &actual)),
                );
                continue;
            }
            let open = match txn.take() {
                Some(open) => Ok(open),
                None => self.dataplane.catalog_db.begin().await.map_err(db_error),
            };
            let answer = match open {
                Ok(open) => match schema_shape(&open, storage).await {
                    Ok(actual) => {
                        txn = Some(open);
                        Ok(compare(&expected, &actual))
                    }
                    // The transaction may be aborted: the next tenant gets another.
                    Err(e) => {
                        let _ = open.rollback().await;
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            answers.push(answer);
        }
        if let Some(txn) = txn
            && let Err(e) = txn.rollback().await
        {
            tracing::warn!(error = %e, "ending a drift check's read-only transaction");
        }
        answers
    }

    /// The shape of the tenant's storage now. An error when it has none.
    pub async fn actual(&self, storage: &Storage) -> Result<Shape, Error> {
        let dataplane = &self.dataplane;
        match (storage.isolation, dataplane.backend) {
            (Isolation::Schema | Isolation::Shared, Backend::Postgres) => {
                let txn = dataplane.catalog_db.begin().await.map_err(db_error)?;
                let shape = schema_shape(&txn, storage).await;
                txn.rollback().await.map_err(db_error)?;
                shape
            }
            (Isolation::Database, Backend::Postgres) => {
                let database = required(&storage.database, "database")?;
                let conn = dataplane
                    .handles
                    .get(dataplane.pg_address(database))
                    .await?;
                let txn = conn.begin().await.map_err(db_error)?;
                // A tenant's own database keeps its tables in `public`, where its migrations
                // ran (nothing sets another `search_path` there).
                let shape = read::postgres(&txn, "public").await;
                txn.rollback().await.map_err(db_error)?;
                shape?.ok_or_else(|| not_provisioned(storage))
            }
            (Isolation::Database, Backend::Sqlite) => {
                let path = dataplane.file_path(required(&storage.database, "database")?);
                if !path.exists() {
                    return Err(not_provisioned(storage));
                }
                let conn = dataplane
                    .handles
                    .get(Address::Sqlite { path: &path })
                    .await?;
                read::sqlite(&conn).await
            }
            (Isolation::Schema | Isolation::Shared, Backend::Sqlite) => Err(Error::Internal(
                "schema or shared isolation in an SQLite catalog".into(),
            )),
        }
    }

    /// The shape `applied` produces in the tenant's kind of storage, built once and kept.
    async fn expected(
        &self,
        storage: &Storage,
        applied: &[Applied<'_>],
    ) -> Result<Arc<Reference>, Error> {
        let flavour = match (storage.isolation, self.dataplane.backend) {
            (_, Backend::Sqlite) => Flavour::Sqlite,
            (Isolation::Shared, Backend::Postgres) => Flavour::Shared,
            (_, Backend::Postgres) => Flavour::Postgres,
        };
        let key = reference_key(flavour, applied)?;
        if let Some(shape) = self.cached().get(&key) {
            return Ok(shape.clone());
        }
        let reference = Arc::new(match flavour {
            Flavour::Sqlite => sqlite_reference(applied).await?,
            Flavour::Postgres | Flavour::Shared => {
                self.postgres_reference(applied, flavour == Flavour::Shared)
                    .await?
            }
        });
        let mut cache = self.cached();
        if cache.len() >= MAX_REFERENCES {
            cache.clear();
        }
        cache.insert(key, reference.clone());
        Ok(reference)
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Reference>>> {
        // Every use of the map is one call on it: a panic elsewhere cannot leave it half-changed.
        self.references
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `applied` to a scratch schema of the catalog database, reads its shape, and
    /// rolls the whole back: nothing of it is ever committed or seen by another session.
    async fn postgres_reference(
        &self,
        applied: &[Applied<'_>],
        shared_schema: bool,
    ) -> Result<Reference, Error> {
        let scratch = format!("tenant_plane_drift_{}", uuid::Uuid::now_v7().simple());
        let txn = self.dataplane.catalog_db.begin().await.map_err(db_error)?;
        let built = async {
            exec(
                &txn,
                &format!(
                    "CREATE SCHEMA {0}; SET LOCAL search_path TO {0}",
                    Ident::new(&scratch)
                ),
            )
            .await?;
            let mut batch = Batch::default();
            let mut reference = Reference::new();
            for (i, set) in applied.iter().enumerate() {
                if i > 0 {
                    // The tables of the sets before this one, read before it runs.
                    batch.send(&txn).await.map_err(reference_failed)?;
                    reference.made(&scratch_shape(&txn, &scratch).await?, applied[i - 1].set);
                }
                if shared_schema {
                    shared::up(
                        &txn,
                        set.migrations,
                        &scratch,
                        0,
                        set.count,
                        &mut batch,
                        &reference_failed,
                    )
                    .await?;
                } else {
                    set.migrations
                        .up(&txn, 0, set.count, &mut batch)
                        .await
                        .map_err(reference_failed)?;
                }
            }
            batch.send(&txn).await.map_err(reference_failed)?;
            let shape = scratch_shape(&txn, &scratch).await?;
            if let Some(last) = applied.last() {
                reference.made(&shape, last.set);
            }
            reference.shape = shape;
            Ok(reference)
        }
        .await;
        txn.rollback().await.map_err(db_error)?;
        built
    }
}

async fn scratch_shape(txn: &DatabaseTransaction, scratch: &str) -> Result<Shape, Error> {
    read::postgres(txn, scratch)
        .await?
        .ok_or_else(|| Error::Internal("the scratch schema of a reference is gone".into()))
}

/// A reference built in an in-memory SQLite database, gone with its connection.
async fn sqlite_reference(applied: &[Applied<'_>]) -> Result<Reference, Error> {
    let conn = Database::connect("sqlite::memory:")
        .await
        .map_err(db_error)?;
    let built = async {
        let txn = conn.begin().await.map_err(db_error)?;
        let mut batch = Batch::default();
        let mut reference = Reference::new();
        for set in applied {
            set.migrations
                .up(&txn, 0, set.count, &mut batch)
                .await
                .map_err(reference_failed)?;
            // An in-memory read, with no round trip: after every set.
            let shape = read::sqlite(&txn).await?;
            reference.made(&shape, set.set);
            reference.shape = shape;
        }
        txn.rollback().await.map_err(db_error)?;
        Ok(reference)
    }
    .await;
    let _ = conn.close().await;
    built
}

/// The actual shape of a SCHEMA or SHARED tenant's schema, read in `txn`; the `search_path`
/// is left on it (see [`read::postgres`]).
async fn schema_shape(txn: &DatabaseTransaction, storage: &Storage) -> Result<Shape, Error> {
    let schema = required(&storage.schema, "schema")?;
    read::postgres(txn, schema)
        .await?
        .ok_or_else(|| not_provisioned(storage))
}

fn compare(expected: &Reference, actual: &Shape) -> Drift {
    Drift {
        expected: expected.shape.fingerprint(),
        actual: actual.fingerprint(),
        differences: differences(&expected.shape, actual)
            .into_iter()
            .map(|difference| Attributed {
                component: expected.maker(&difference),
                difference,
            })
            .collect(),
    }
}

fn reference_failed(e: DbErr) -> Error {
    Error::Internal(format!(
        "applying the tenant's migrations to build its expected shape: {e}"
    ))
}

/// What identifies a reference: the kind of storage, and each set with the names of the
/// migrations applied from it (history is immutable: a version's migration never changes).
fn reference_key(flavour: Flavour, applied: &[Applied<'_>]) -> Result<String, Error> {
    let mut hash = Sha256::new();
    hash.update(format!("{flavour:?}\n"));
    for set in applied {
        let names = set.migrations.names().get(..set.count).ok_or_else(|| {
            Error::Internal(format!(
                "{} migrations applied of a set of {}",
                set.count,
                set.migrations.names().len()
            ))
        })?;
        hash.update(set.set.as_bytes());
        hash.update([0]);
        for name in names {
            hash.update(name.as_bytes());
            hash.update([0]);
        }
        hash.update([1]);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
