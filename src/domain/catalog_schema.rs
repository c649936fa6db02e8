//! The catalog's own schema name.

use crate::sql::Ident;
use std::fmt;

use super::names::MAX_IDENTIFIER_BYTES;

/// The PostgreSQL schema of the catalog's own tables (TENANT_PLANE_CATALOG_SCHEMA). Every
/// catalog connection is pinned to it, so the catalog is never found through a `search_path`
/// that a tenant's schema could shadow (`"$user"` comes first in PostgreSQL's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSchema(String);

impl CatalogSchema {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_IDENTIFIER_BYTES {
            return Err(format!("must be 1 to {MAX_IDENTIFIER_BYTES} bytes"));
        }
        if !text.as_bytes()[0].is_ascii_lowercase() && text.as_bytes()[0] != b'_'
            || !text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err("must start with a-z or '_' and contain only a-z, 0-9 and '_'".into());
        }
        if text.starts_with("pg_") || text == "information_schema" {
            return Err(format!("'{text}' is reserved by PostgreSQL"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a double-quoted SQL identifier (only [a-z0-9_], nothing to escape).
    pub fn quoted(&self) -> Ident {
        Ident::new(&self.0)
    }
}

impl Default for CatalogSchema {
    fn default() -> Self {
        Self("public".into())
    }
}

impl fmt::Display for CatalogSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_schema_takes_plain_lowercase_names_only() {
        assert_eq!(
            CatalogSchema::parse("public").unwrap().quoted().to_string(),
            "\"public\""
        );
        assert!(CatalogSchema::parse("tenant_plane_catalog").is_ok());
        for bad in [
            "",
            "Public",
            "a-b",
            "x\"y",
            "pg_catalog",
            "information_schema",
            "1a",
        ] {
            assert!(CatalogSchema::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
