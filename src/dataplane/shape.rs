//! The shape of one tenant's storage: its tables (and views), their columns with types,
//! nullability and defaults, their indexes, constraints, row-level security policies and
//! triggers, and the schema's functions, as the database's own catalogs describe them
//! ([`read`]). Drift detection ([`super::drift`]) compares
//! the shape a tenant has with the one its applied migrations produce.
//!
//! Everything is keyed by name and held in sorted maps, so two shapes compare field by field
//! and serialise canonically: the [`Shape::fingerprint`] of equal shapes is equal, whichever
//! order the catalogs listed things in. Nothing in a shape names the schema it was read from
//! (the definitions are read with that schema on the `search_path`), so a tenant's schema, a
//! tenant's own database and a scratch schema holding a reference compare as equals.
//!
//! Left out: the migration version tables (`seaql_migrations*`, whose rows differ by design),
//! the shared schema's role table, sequences (their use shows in the columns' defaults),
//! functions that belong to an extension (a tenant database's template may bring some),
//! privileges, comments, ownership and column order.
//!
//! Triggers and functions joined the shape after its first version. A shape with neither
//! serialises as it did before, so its fingerprint is unchanged; fingerprints are only ever
//! compared within one check anyway (the expected shape's with the actual one's).

mod diff;
pub(super) mod read;

pub use diff::{Difference, Object, differences};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The schema shape of one tenant's storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub tables: BTreeMap<String, Table>,
    /// Function name with its argument types (`touch(integer)`) → its definition but the
    /// first line, which names the schema (PostgreSQL; SQLite has no functions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub functions: BTreeMap<String, String>,
}

/// A table or view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// `table`, `view`, `materialized view`, `foreign table` or `partitioned table`.
    pub kind: String,
    /// Row-level security: empty when off, `enabled` or `enabled, forced`.
    pub row_security: String,
    /// A view's query; empty for a table.
    pub definition: String,
    pub columns: BTreeMap<String, Column>,
    /// Index name → its definition (`CREATE UNIQUE INDEX users_pkey ON users USING btree (id)`).
    pub indexes: BTreeMap<String, String>,
    /// Constraint name → its definition (`FOREIGN KEY (owner_id) REFERENCES users(id)`).
    pub constraints: BTreeMap<String, String>,
    /// Policy name → what it allows, to whom.
    pub policies: BTreeMap<String, String>,
    /// Trigger name → its definition (`CREATE TRIGGER touch BEFORE UPDATE ON users ...`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub triggers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// As `format_type` prints it (PostgreSQL), or as declared (SQLite).
    pub data_type: String,
    pub not_null: bool,
    /// The default expression, or how the column is generated; `None` when it has neither.
    pub default: Option<String>,
}

impl Shape {
    /// SHA-256 of the shape's canonical serialisation, in hex: equal shapes, equal fingerprints.
    pub fn fingerprint(&self) -> String {
        // Sorted maps of plain strings and booleans: serialising cannot fail, and always
        // writes keys in the same order.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&canonical)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
