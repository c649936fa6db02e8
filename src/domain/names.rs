//! Parsed identifiers. Once a value has one of these types it has been checked: nothing
//! downstream re-validates it, and only a [`StorageName`] is ever used as an SQL identifier.

use crate::sql::Ident;
use std::{collections::BTreeMap, fmt};

use uuid::Uuid;

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1); a schema or
/// database name must fit whole, or two tenants could end up sharing one.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Slugs that would be confusing or dangerous as a subdomain or storage name.
/// ("shared" would name the schema of SHARED-isolation tenants.)
const RESERVED_SLUGS: &[&str] = &[
    "shared",
    "public",
    "www",
    "api",
    "admin",
    "default",
    "template0",
    "template1",
    "postgres",
];

/// A tenant id: a UUID, issued as UUIDv7 so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Uuid);

impl TenantId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Option<Self> {
        Uuid::try_parse(text).ok().map(Self)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for TenantId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant slug: a DNS label (RFC 1123) that starts with a letter, is not a UUID (so a name
/// "tenants/{x}" is never ambiguous) and is not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.len() > MAX_IDENTIFIER_BYTES {
            return Err(format!("must be at most {MAX_IDENTIFIER_BYTES} characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("may contain only lowercase letters a-z, digits and hyphens".into());
        }
        if !text.as_bytes()[0].is_ascii_lowercase() {
            return Err("must start with a lowercase letter".into());
        }
        if text.ends_with('-') {
            return Err("must not end with a hyphen".into());
        }
        if text.contains("--") {
            return Err("must not contain two hyphens in a row".into());
        }
        if TenantId::parse(text).is_some() {
            return Err("must not be a UUID".into());
        }
        if RESERVED_SLUGS.contains(&text) || text.starts_with("pg-") {
            return Err(format!("'{text}' is reserved"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configured prefix of every tenant schema and database name (TENANT_DATABASE_PREFIX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePrefix(String);

impl StoragePrefix {
    /// Longest prefix accepted: leaves room for slugs of a useful length within 63 bytes.
    pub const MAX_BYTES: usize = 32;

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > Self::MAX_BYTES {
            return Err(format!("must be at most {} bytes", Self::MAX_BYTES));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err("may contain only lowercase letters a-z, digits and underscores".into());
        }
        if text.as_bytes().first().is_some_and(|b| b.is_ascii_digit()) {
            return Err("must not start with a digit".into());
        }
        if text.starts_with("pg_") {
            return Err("must not start with pg_ (reserved by PostgreSQL)".into());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A schema or database name derived from prefix + slug (hyphens become underscores, which
/// slugs cannot contain, so the mapping stays one-to-one). Always quoted when sent to SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageName(String);

impl StorageName {
    pub fn derive(prefix: &StoragePrefix, slug: &Slug) -> Result<Self, String> {
        let name = format!("{}{}", prefix.as_str(), slug.as_str().replace('-', "_"));
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(format!(
                "is too long: with the prefix '{}' the storage name '{name}' exceeds PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifier limit",
                prefix.as_str()
            ));
        }
        if name == "public" || name == "information_schema" || name.starts_with("pg_") {
            return Err(format!("would give the reserved storage name '{name}'"));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a double-quoted SQL identifier. Derivation admits only [a-z0-9_], so there
    /// is nothing to escape; the doubling of quotes is kept as a second line of defence.
    pub fn quoted(&self) -> Ident {
        Ident::new(&self.0)
    }
}

impl fmt::Display for StorageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plan id such as `free`, `pro` or `enterprise`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlanName(String);

impl PlanName {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_IDENTIFIER_BYTES {
            return Err(format!("must be 1 to {MAX_IDENTIFIER_BYTES} characters"));
        }
        if !text.as_bytes()[0].is_ascii_lowercase()
            || !text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(
                "must start with a lowercase letter and contain only a-z, 0-9, '-' and '_'".into(),
            );
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tenant labels: keys and values in the style of Kubernetes labels, so they are safe in
/// selectors, metrics and JSON paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// More labels than this is a sign labels are being used as a data store.
    pub const MAX_LABELS: usize = 64;
    const MAX_PART: usize = 63;

    /// Parses `pairs`; each error names the offending key.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut labels = BTreeMap::new();
        let mut errors = Vec::new();
        for (key, value) in pairs {
            if let Err(why) = Self::check_key(key) {
                errors.push((key.clone(), why));
            } else if let Err(why) = Self::check_value(value) {
                errors.push((key.clone(), why));
            } else {
                labels.insert(key.clone(), value.clone());
            }
        }
        if labels.len() > Self::MAX_LABELS {
            errors.push((
                String::new(),
                format!("at most {} labels are allowed", Self::MAX_LABELS),
            ));
        }
        if errors.is_empty() {
            Ok(Self(labels))
        } else {
            Err(errors)
        }
    }

    fn check_key(key: &str) -> Result<(), String> {
        let ok_char =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.');
        if key.is_empty() || key.len() > Self::MAX_PART {
            return Err(format!(
                "label keys must be 1 to {} characters",
                Self::MAX_PART
            ));
        }
        if !key.bytes().all(ok_char) || !key.as_bytes()[0].is_ascii_alphanumeric() {
            return Err("label keys may contain only a-z, 0-9, '-', '_' and '.', starting with a letter or digit".into());
        }
        Ok(())
    }

    fn check_value(value: &str) -> Result<(), String> {
        let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if value.len() > Self::MAX_PART || !value.bytes().all(ok_char) {
            return Err(format!(
                "label values must be at most {} characters of A-Z, a-z, 0-9, '-', '_' and '.'",
                Self::MAX_PART
            ));
        }
        Ok(())
    }

    pub fn from_trusted(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_dns_labels() {
        for ok in ["acme", "a", "acme-corp", "a1", "x-2-y"] {
            assert!(Slug::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn slugs_refuse_everything_that_is_not_a_plain_dns_label() {
        let long = "a".repeat(64);
        let hostile = [
            "",
            "Acme",
            "acme corp",
            "acme;drop",
            "a\"b",
            "a'b",
            "1acme",
            "-acme",
            "acme-",
            "a--b",
            "pg_catalog",
            "pg-foo",
            "public",
            "www",
            "ünïcode",
            "acme.example",
            "tenant_x",
            &long,
            "0190f7a4-7a1c-7cde-8f00-123456789abc",
            "a190f7a4-7a1c-7cde-8f00-123456789abc",
        ];
        for bad in hostile {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn storage_names_fit_postgres_identifiers() {
        let prefix = StoragePrefix::parse("tenant_").unwrap();
        let slug = Slug::parse("acme-corp").unwrap();
        assert_eq!(
            StorageName::derive(&prefix, &slug).unwrap().as_str(),
            "tenant_acme_corp"
        );
        let longest = Slug::parse(&"a".repeat(56)).unwrap();
        assert_eq!(
            StorageName::derive(&prefix, &longest)
                .unwrap()
                .as_str()
                .len(),
            63
        );
        let too_long = Slug::parse(&"a".repeat(57)).unwrap();
        assert!(StorageName::derive(&prefix, &too_long).is_err());
    }

    #[test]
    fn storage_names_never_collide_with_postgres_reserved_names() {
        let empty = StoragePrefix::parse("").unwrap();
        assert!(StorageName::derive(&empty, &Slug::parse("acme").unwrap()).is_ok());
        // A slug cannot be "public", but a prefix must not manufacture pg_ names either.
        assert!(StoragePrefix::parse("pg_").is_err());
        assert!(StoragePrefix::parse("Tenant").is_err());
        assert!(StoragePrefix::parse("t\"; drop").is_err());
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(
            StorageName("a\"b".into()).quoted().to_string(),
            "\"a\"\"b\""
        );
    }

    #[test]
    fn plan_names_are_checked() {
        assert!(PlanName::parse("enterprise").is_ok());
        assert!(PlanName::parse("Pro").is_err());
        assert!(PlanName::parse("").is_err());
        assert!(PlanName::parse("pro plan").is_err());
    }

    #[test]
    fn labels_are_checked_key_by_key() {
        let mut ok = BTreeMap::new();
        ok.insert("tier".to_owned(), "gold".to_owned());
        ok.insert("region".to_owned(), "eu-west-1".to_owned());
        assert!(Labels::parse(&ok).is_ok());
        let mut bad = BTreeMap::new();
        bad.insert("Tier".to_owned(), "x".to_owned());
        bad.insert("ok".to_owned(), "with space".to_owned());
        let errors = Labels::parse(&bad).unwrap_err();
        assert_eq!(errors.len(), 2);
    }
}
