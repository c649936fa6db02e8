//! SQL text, where a statement must be written out rather than take bound values (DDL such as
//! `CREATE SCHEMA` or `ALTER ROLE` takes no parameters, nor does a batch of statements sent as
//! one): the one way to put a name ([`Ident`]) or a string ([`Literal`]) into it.
//!
//! Names that reach SQL come from parsed types (slugs, storage and role names: only
//! `[a-z0-9_]`), so there is nothing to escape in practice; quoting is still done, the same way
//! everywhere, so that even a corrupted catalog value cannot end a name or a string early.

use std::fmt;
use std::ops::Deref;

/// A double-quoted SQL identifier (its quotes doubled), ready to go into a statement's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident(String);

impl Ident {
    pub fn new(name: &str) -> Self {
        Self(format!("\"{}\"", name.replace('"', "\"\"")))
    }
}

/// A single-quoted SQL string literal (its quotes doubled), ready to go into a statement's
/// text. Assumes `standard_conforming_strings` (on since PostgreSQL 9.1, and SQLite's only
/// way), so a backslash is an ordinary character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal(String);

impl Literal {
    pub fn new(text: &str) -> Self {
        Self(format!("'{}'", text.replace('\'', "''")))
    }
}

macro_rules! sql_text {
    ($type:ty) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// The quoted text, as it goes into a statement.
        impl Deref for $type {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }
    };
}

sql_text!(Ident);
sql_text!(Literal);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_double_quoted_with_their_quotes_doubled() {
        assert_eq!(Ident::new("tenant_acme").to_string(), r#""tenant_acme""#);
        assert_eq!(Ident::new(r#"a"b"#).to_string(), r#""a""b""#);
    }

    #[test]
    fn literals_are_single_quoted_with_their_quotes_doubled() {
        assert_eq!(
            Literal::new("tenant-plane tenant 1").to_string(),
            "'tenant-plane tenant 1'"
        );
        assert_eq!(Literal::new("it's").to_string(), "'it''s'");
        assert_eq!(Literal::new(r"a\'b").to_string(), r"'a\''b'");
    }
}
