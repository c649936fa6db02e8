//! AIP-158 pagination: page sizes and opaque page tokens bound to the query they continue.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Error, FieldViolation};

/// A validated page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u64);

impl PageSize {
    /// Used when the caller sends 0.
    pub const DEFAULT: u64 = 50;
    /// Larger requests are lowered to this, keeping one page's memory and latency bounded.
    pub const MAX: u64 = 1000;

    pub fn parse(requested: i32, field: &str) -> Result<Self, Error> {
        match requested {
            n if n < 0 => Err(Error::invalid(field, "must not be negative")),
            0 => Ok(Self(Self::DEFAULT)),
            n => Ok(Self((n as u64).min(Self::MAX))),
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// Where the next page starts, and a fingerprint of the query it belongs to: a token used with
/// other filters, or tampered with, is refused rather than silently giving a wrong page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    /// The last key of the previous page.
    #[serde(rename = "a")]
    pub after: String,
    #[serde(rename = "q")]
    query: String,
}

impl PageToken {
    pub fn new(after: String, query_fingerprint: &str) -> Self {
        Self {
            after,
            query: query_fingerprint.to_owned(),
        }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let check = checksum(&json);
        URL_SAFE_NO_PAD.encode([json.as_slice(), check.as_slice()].concat())
    }

    /// Decodes `text`, refusing it unless it was issued for a query with `query_fingerprint`.
    pub fn decode(text: &str, query_fingerprint: &str, field: &str) -> Result<Option<Self>, Error> {
        if text.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid(field, "is not a page token issued for this query");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let split = bytes.len().checked_sub(CHECK_LEN).ok_or_else(invalid)?;
        let (json, check) = bytes.split_at(split);
        if checksum(json) != check {
            return Err(invalid());
        }
        let token: Self = serde_json::from_slice(json).map_err(|_| invalid())?;
        if token.query != query_fingerprint {
            return Err(Error::invalid(
                field,
                "was issued for a query with other parameters",
            ));
        }
        Ok(Some(token))
    }
}

const CHECK_LEN: usize = 8;

/// A checksum against accidental corruption and casual edits. Tokens are not secrets: a
/// well-formed forged token can only start a listing at another position.
fn checksum(bytes: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::digest([b"tenant-plane page token".as_slice(), bytes].concat());
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

/// A short, stable fingerprint of a query's parameters.
/// A list request's page, checked: how many rows, after which key, for which query.
#[derive(Debug)]
pub struct Page<K> {
    pub limit: u64,
    pub after: Option<K>,
    query: String,
}

impl<K> Page<K> {
    /// Checks `page_size` and `page_token` (which must have been issued for `query`), reading the
    /// token's key with `key`; every problem goes to `violations`.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        query: &str,
        key: impl FnOnce(&str) -> Option<K>,
        violations: &mut Vec<FieldViolation>,
    ) -> Self {
        let limit = PageSize::parse(page_size, "page_size")
            .map_err(|e| violations.extend(e.into_violations()))
            .map_or(PageSize::DEFAULT, PageSize::get);
        let query = fingerprint(query);
        let after = match PageToken::decode(page_token, &query, "page_token") {
            Ok(Some(token)) => {
                let after = key(&token.after);
                if after.is_none() {
                    violations.push(FieldViolation::new(
                        "page_token",
                        "is not a page token issued for this query",
                    ));
                }
                after
            }
            Ok(None) => None,
            Err(e) => {
                violations.extend(e.into_violations());
                None
            }
        };
        Self {
            limit,
            after,
            query,
        }
    }

    /// Rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> u64 {
        self.limit + 1
    }

    /// Cuts `rows` (fetched with [`Self::fetch`]) to the page, and returns the next page's token,
    /// empty at the end.
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> String) -> String {
        if rows.len() as u64 <= self.limit {
            return String::new();
        }
        rows.truncate(self.limit as usize);
        rows.last()
            .map(|last| PageToken::new(key(last), &self.query).encode())
            .unwrap_or_default()
    }
}

pub fn fingerprint(parts: &str) -> String {
    let digest = Sha256::digest(parts.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_clamp_and_refuse_negatives() {
        assert_eq!(PageSize::parse(0, "page_size").unwrap().get(), 50);
        assert_eq!(PageSize::parse(7, "page_size").unwrap().get(), 7);
        assert_eq!(PageSize::parse(5000, "page_size").unwrap().get(), 1000);
        assert!(PageSize::parse(-1, "page_size").is_err());
    }

    #[test]
    fn tokens_round_trip_only_for_their_query() {
        let token = PageToken::new("abc".into(), "q1").encode();
        assert_eq!(
            PageToken::decode(&token, "q1", "page_token")
                .unwrap()
                .unwrap()
                .after,
            "abc"
        );
        assert!(PageToken::decode(&token, "q2", "page_token").is_err());
        assert!(PageToken::decode("garbage", "q1", "page_token").is_err());
        assert!(PageToken::decode("", "q1", "page_token").unwrap().is_none());
        let mut tampered = token.into_bytes();
        tampered[3] ^= 1;
        assert!(
            PageToken::decode(&String::from_utf8_lossy(&tampered), "q1", "page_token").is_err()
        );
    }
}
