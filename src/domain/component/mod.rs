//! Components: streams of tenant migrations that application services own and push over the
//! API (`components/{component}`), and their migrations
//! (`components/{component}/migrations/{version}`).
//!
//! A component's history is append-only and immutable: a migration is identified by its
//! version and its [`checksum`], and the rules a push must satisfy against the registered
//! history are in [`history`]. The compiled sample schema is the component [`SAMPLE`], which
//! nobody can push to: its migrations ship inside the server.

mod history;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use history::{Classified, classify};

/// The id of the compiled component (the sample tenant schema of the `migration` crate).
pub const SAMPLE: &str = "sample";

/// The version table of the compiled component: the name sea-orm-migration has always used,
/// so tenants provisioned before components existed keep theirs.
const SAMPLE_VERSION_TABLE: &str = "seaql_migrations";

/// A component's id: a DNS label (lowercase letters, digits and '-', starting with a letter and
/// ending with a letter or digit, at most 63 characters). It becomes part of the version table's
/// name in every tenant's storage, so it must be a safe identifier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId(String);

impl ComponentId {
    pub const MAX_LEN: usize = 63;

    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return Err(format!("must be 1 to {} characters", Self::MAX_LEN));
        }
        let first_ok = bytes[0].is_ascii_lowercase();
        let last = bytes[bytes.len() - 1];
        let last_ok = last.is_ascii_lowercase() || last.is_ascii_digit();
        let chars_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !(first_ok && last_ok && chars_ok) {
            return Err(
                "must be a DNS label: lowercase letters, digits and '-', starting with \
                        a letter and ending with a letter or digit"
                    .into(),
            );
        }
        Ok(Self(text.to_owned()))
    }

    /// The compiled component.
    pub fn sample() -> Self {
        Self(SAMPLE.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the component's migrations are compiled into the server (only [`SAMPLE`]).
    pub fn is_compiled(&self) -> bool {
        self.0 == SAMPLE
    }

    /// `components/{id}`.
    pub fn name(&self) -> String {
        format!("components/{}", self.0)
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of `component`'s version table in each tenant's storage: `seaql_migrations` for
/// the compiled component, `seaql_migrations_<component>` for the others, with '-' written as
/// '_' so the name is a plain identifier. Component ids hold no '_', so no two components share
/// a table.
pub fn version_table(component: &ComponentId) -> String {
    if component.is_compiled() {
        SAMPLE_VERSION_TABLE.to_owned()
    } else {
        format!(
            "{SAMPLE_VERSION_TABLE}_{}",
            component.as_str().replace('-', "_")
        )
    }
}

/// A migration's version, for example `0001_create_invoices`: a digit, then lowercase letters,
/// digits and '_', at most 128 characters. Versions sort bytewise in the order migrations are
/// applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MigrationVersion(String);

impl MigrationVersion {
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return Err(format!("must be 1 to {} characters", Self::MAX_LEN));
        }
        let ok = bytes[0].is_ascii_digit()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !ok {
            return Err(
                "must start with a digit and contain only a-z, 0-9 and '_' (for \
                        example 0001_create_invoices)"
                    .into(),
            );
        }
        Ok(Self(text.to_owned()))
    }

    /// A version of the compiled component: a sea-orm-migration name such as
    /// `m20261123_100001_create_users`, which starts with a letter. Same alphabet, same
    /// length bound.
    pub fn parse_compiled(text: &str) -> Result<Self, String> {
        let bytes = text.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= Self::MAX_LEN
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err("is not a version of the compiled component".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MigrationVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One of a migration's four scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Script {
    UpSql,
    DownSql,
    SqliteUpSql,
    SqliteDownSql,
}

impl Script {
    pub const ALL: [Script; 4] = [
        Self::UpSql,
        Self::DownSql,
        Self::SqliteUpSql,
        Self::SqliteDownSql,
    ];

    /// The field's name, as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpSql => "up_sql",
            Self::DownSql => "down_sql",
            Self::SqliteUpSql => "sqlite_up_sql",
            Self::SqliteDownSql => "sqlite_down_sql",
        }
    }

    /// Whether the script is written for SQLite (the embedded mode).
    pub fn is_sqlite(self) -> bool {
        matches!(self, Self::SqliteUpSql | Self::SqliteDownSql)
    }

    /// Whether the script reverts its migration.
    pub fn is_down(self) -> bool {
        matches!(self, Self::DownSql | Self::SqliteDownSql)
    }
}

/// What a migration is made of, as pushed: everything its checksum covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationBody {
    pub version: MigrationVersion,
    pub description: String,
    pub up_sql: String,
    pub down_sql: String,
    pub sqlite_up_sql: String,
    pub sqlite_down_sql: String,
}

impl MigrationBody {
    pub fn script(&self, script: Script) -> &str {
        match script {
            Script::UpSql => &self.up_sql,
            Script::DownSql => &self.down_sql,
            Script::SqliteUpSql => &self.sqlite_up_sql,
            Script::SqliteDownSql => &self.sqlite_down_sql,
        }
    }

    /// The migration's checksum: SHA-256, as lowercase hex, over the version, the description
    /// and the four scripts, each preceded by its length in bytes (8 bytes, big-endian), so
    /// no two different migrations encode alike (moving text from one script to the next
    /// changes the lengths).
    pub fn checksum(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"tenant-plane migration v1\0");
        let fields = [
            self.version.as_str(),
            &self.description,
            &self.up_sql,
            &self.down_sql,
            &self.sqlite_up_sql,
            &self.sqlite_down_sql,
        ];
        for field in fields {
            hash.update((field.len() as u64).to_be_bytes());
            hash.update(field.as_bytes());
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How serious a lint finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteSeverity {
    Note,
    Error,
}

/// Something the lint found in one statement of one of a migration's scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LintNote {
    pub version: String,
    pub script: Script,
    pub statement_index: usize,
    pub rule: String,
    pub severity: NoteSeverity,
    pub message: String,
    pub statement: String,
}

/// A component: registered by an application service, or the compiled one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub id: ComponentId,
    pub description: String,
    pub owner: String,
    /// The version of its latest migration, if it has any.
    pub latest_version: Option<String>,
    pub migration_count: usize,
    /// `None` for the compiled component.
    pub create_time: Option<DateTime<Utc>>,
    /// When a migration was last pushed; `None` for the compiled component and one without
    /// migrations.
    pub update_time: Option<DateTime<Utc>>,
}

impl Component {
    pub fn compiled(&self) -> bool {
        self.id.is_compiled()
    }

    pub fn version_table(&self) -> String {
        version_table(&self.id)
    }
}

/// One of a component's migrations, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentMigration {
    pub component: ComponentId,
    pub body: MigrationBody,
    /// Empty for a compiled migration.
    pub checksum: String,
    /// Its position in the component's history, counting from 0.
    pub index: usize,
    pub destructive: bool,
    /// The lint's notes (findings that did not refuse it).
    pub findings: Vec<LintNote>,
    /// `None` for a compiled migration.
    pub create_time: Option<DateTime<Utc>>,
}

impl ComponentMigration {
    /// `components/{component}/migrations/{version}`.
    pub fn name(&self) -> String {
        format!(
            "components/{}/migrations/{}",
            self.component, self.body.version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(up: &str, down: &str) -> MigrationBody {
        MigrationBody {
            version: MigrationVersion::parse("0001_init").unwrap(),
            description: String::new(),
            up_sql: up.into(),
            down_sql: down.into(),
            sqlite_up_sql: String::new(),
            sqlite_down_sql: String::new(),
        }
    }

    #[test]
    fn component_ids_are_dns_labels() {
        for good in ["billing", "a", "messages-v2", "x1", &"a".repeat(63)] {
            assert!(ComponentId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Billing",
            "1billing",
            "billing-",
            "bill_ing",
            "bill.ing",
            "-billing",
            &"a".repeat(64),
            "billing\"; DROP",
        ] {
            assert!(ComponentId::parse(bad).is_err(), "{bad}");
        }
        assert!(ComponentId::parse("sample").unwrap().is_compiled());
        assert!(!ComponentId::parse("billing").unwrap().is_compiled());
    }

    #[test]
    fn versions_start_with_a_digit_and_are_safe_words() {
        for good in ["0001_create_invoices", "1", "20261208_x1", &"9".repeat(128)] {
            assert!(MigrationVersion::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a001", "0001-x", "0001_X", "0001 x", &"9".repeat(129)] {
            assert!(MigrationVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_tables_are_one_per_component_and_the_sample_keeps_its_own() {
        assert_eq!(version_table(&ComponentId::sample()), "seaql_migrations");
        assert_eq!(
            version_table(&ComponentId::parse("billing").unwrap()),
            "seaql_migrations_billing"
        );
        assert_eq!(
            version_table(&ComponentId::parse("search-v2").unwrap()),
            "seaql_migrations_search_v2"
        );
    }

    #[test]
    fn the_checksum_is_lowercase_hex_and_tells_moved_text_apart() {
        let a = body("CREATE TABLE a ();", "");
        let sum = a.checksum();
        assert_eq!(sum.len(), 64);
        assert!(
            sum.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(sum, body("CREATE TABLE a ();", "").checksum());
        // The same text split differently between two scripts is another migration.
        assert_ne!(
            body("CREATE TABLE a (); DROP", "").checksum(),
            body("CREATE TABLE a ();", " DROP").checksum()
        );
        let mut described = a.clone();
        described.description = "x".into();
        assert_ne!(described.checksum(), sum);
    }
}
