//! Tenant API keys: random secrets handed out once, known afterwards only by their SHA-256.
//!
//! A secret is 256 random bits, so a plain SHA-256 is enough to store it safely (a slow password
//! hash protects guessable secrets; these are not guessable) and lets a key be found by its hash
//! with one indexed lookup.

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Error, TenantId};

/// Every secret starts with this, so leaked keys are easy to scan for.
pub const SECRET_PREFIX: &str = "tpk_";
/// How many characters of the secret are kept to recognise it.
const SHOWN_CHARS: usize = 12;

/// An API key as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant: TenantId,
    pub display_name: String,
    /// The secret's first characters.
    pub prefix: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub revoke_time: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// "tenants/{tenant}/apiKeys/{id}".
    pub fn name(&self) -> String {
        format!("tenants/{}/apiKeys/{}", self.tenant, self.id)
    }

    /// Whether the key still works at `now`.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        self.revoke_time.is_none() && self.expire_time.is_none_or(|t| t > now)
    }
}

/// A freshly made secret and what is stored of it.
#[derive(Debug)]
pub struct NewSecret {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

impl NewSecret {
    pub fn generate() -> Result<Self, Error> {
        let secret = Self::random_secret(SECRET_PREFIX)
            .map_err(|e| Error::Internal(format!("no randomness for an API key: {e}")))?;
        Ok(Self {
            prefix: secret.chars().take(SHOWN_CHARS).collect(),
            hash: hash_secret(&secret),
            secret,
        })
    }

    /// `prefix` followed by 256 random bits in unpadded base64url (43 characters): the form
    /// of API key secrets and of bearer tokens.
    pub fn random_secret(prefix: &str) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }
}

/// The stored form of a secret: lowercase hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_stored_only_as_hashes() {
        let a = NewSecret::generate().unwrap();
        let b = NewSecret::generate().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(SECRET_PREFIX) && a.secret.len() > 40);
        assert_eq!(a.hash, hash_secret(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret) && a.secret.starts_with(&a.prefix));
    }

    #[test]
    fn revoked_and_expired_keys_stop_working() {
        let now = Utc::now();
        let key = ApiKey {
            id: Uuid::nil(),
            tenant: TenantId::new(),
            display_name: String::new(),
            prefix: String::new(),
            create_time: now,
            expire_time: None,
            revoke_time: None,
        };
        assert!(key.usable(now));
        let expired = ApiKey {
            expire_time: Some(now),
            ..key.clone()
        };
        assert!(!expired.usable(now));
        let revoked = ApiKey {
            revoke_time: Some(now),
            ..key
        };
        assert!(!revoked.usable(now));
    }
}
