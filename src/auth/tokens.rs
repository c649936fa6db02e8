//! Bearer tokens: configured as ROLE:NAME:SHA256 entries, known only by their SHA-256.
//!
//! A token the control plane makes is 256 random bits, so a plain SHA-256 stores it safely and
//! lets a presented token be found with one hash and one map lookup.

use std::{collections::HashMap, sync::Arc};

use sha2::{Digest, Sha256};

use super::{Principal, Role};
use crate::domain::{Error, NewSecret, hash_secret};

/// Every token the control plane makes starts with this, so leaked tokens are easy to scan for.
pub const TOKEN_PREFIX: &str = "tpa_";

/// The hex SHA-256 of a token, as configured and stored.
pub fn hash_token(token: &str) -> String {
    hash_secret(token)
}

/// A SHA-256, as the set keys tokens by (no hex text made per call).
type Digest32 = [u8; 32];

/// The 32 bytes of a 64-digit hex SHA-256.
fn parse_hex(hash: &str) -> Option<Digest32> {
    let mut out = [0u8; 32];
    let bytes = hash.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// A new random token (`tpa_` and 256 bits, base64url).
pub fn new_token() -> Result<String, Error> {
    NewSecret::random_secret(TOKEN_PREFIX)
        .map_err(|e| Error::Internal(format!("no randomness for a token: {e}")))
}

/// The known tokens, by hash.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    by_hash: HashMap<Digest32, Arc<Principal>>,
}

impl TokenSet {
    /// Parses ROLE:NAME:SHA256 entries; `origin` names where they come from in errors. An
    /// error never quotes the entry, which may be a token pasted by mistake.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = &'a str>,
        origin: &str,
    ) -> Result<Self, String> {
        let mut set = Self::default();
        set.add_entries(entries, origin)?;
        Ok(set)
    }

    /// Adds ROLE:NAME:SHA256 entries as [`TokenSet::parse`] reads them. A token already in the
    /// set is refused like one listed twice in `entries`. On an error, the entries before the
    /// faulty one have been added.
    pub fn add_entries<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a str>,
        origin: &str,
    ) -> Result<(), String> {
        for (i, entry) in entries.into_iter().enumerate() {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let at = || format!("{origin}, entry {}", i + 1);
            let mut parts = entry.splitn(3, ':');
            let (Some(role), Some(name), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("{}: expected ROLE:NAME:SHA256", at()));
            };
            let role = Role::parse(role)
                .ok_or_else(|| format!("{}: the role must be admin or service", at()))?;
            self.insert(role, name, hash)
                .map_err(|why| format!("{}: {why}", at()))?;
        }
        Ok(())
    }

    /// Adds a token by its hash.
    pub fn insert(&mut self, role: Role, name: &str, hash: &str) -> Result<(), String> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err("the name must be 1 to 64 letters, digits, '-', '_' or '.'".into());
        }
        let Some(hash) = parse_hex(hash).filter(|_| hash.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            return Err(
                "SHA256 must be 64 hex digits: the token's SHA-256, not the token itself".into(),
            );
        };
        if self.by_hash.contains_key(&hash) {
            return Err("the same token is listed twice".into());
        }
        self.by_hash.insert(
            hash,
            Arc::new(Principal {
                role,
                name: name.to_owned(),
            }),
        );
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Who `token` belongs to, if anyone.
    pub fn find(&self, token: &str) -> Option<Arc<Principal>> {
        let digest: Digest32 = Sha256::digest(token.as_bytes()).into();
        self.by_hash.get(&digest).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_find_their_tokens() {
        let admin = hash_token("s3cret");
        let service = hash_token("other").to_uppercase();
        let set = TokenSet::parse(
            [
                format!("admin:ops:{admin}").as_str(),
                "# a comment",
                "",
                format!("service:billing:{service}").as_str(),
            ],
            "test",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        let found = set.find("s3cret").unwrap();
        assert_eq!((found.role, found.name.as_str()), (Role::Admin, "ops"));
        assert_eq!(set.find("other").unwrap().role, Role::Service);
        assert!(set.find("nope").is_none());
    }

    #[test]
    fn bad_entries_are_refused_without_quoting_them() {
        let hash = hash_token("x");
        for bad in [
            "admin:ops".to_owned(),
            format!("root:ops:{hash}"),
            format!("admin::{hash}"),
            format!("admin:has space:{hash}"),
            "admin:ops:tpa_pastedTheTokenItself".to_owned(),
            format!("admin:a:{hash},admin:b:{hash}"),
        ] {
            let entries: Vec<&str> = bad.split(',').collect();
            let why = TokenSet::parse(entries, "TENANT_PLANE_AUTH_TOKENS").unwrap_err();
            assert!(why.starts_with("TENANT_PLANE_AUTH_TOKENS, entry"), "{why}");
            assert!(!why.contains("tpa_"), "{why}");
            assert!(!why.contains(&hash), "{why}");
        }
    }

    #[test]
    fn a_token_already_in_the_set_is_refused() {
        let hash = hash_token("x");
        let mut set = TokenSet::parse([format!("admin:a:{hash}").as_str()], "first").unwrap();
        let why = set
            .add_entries(["", format!("service:b:{hash}").as_str()], "second")
            .unwrap_err();
        assert_eq!(why, "second, entry 2: the same token is listed twice");
    }

    #[test]
    fn new_tokens_are_random_and_prefixed() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
    }
}
