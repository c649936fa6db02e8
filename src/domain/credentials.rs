//! A tenant's PostgreSQL login role: its name, and the passwords RotateTenantCredentials sets.
//!
//! A password is 256 random bits, handed to the caller once and kept nowhere. PostgreSQL is
//! sent only its SCRAM-SHA-256 verifier (RFC 5802 and 7677, in the `SCRAM-SHA-256$...` form
//! PostgreSQL stores, after RFC 5803), computed here: PostgreSQL stores a verifier it is given
//! as it is, so neither its statement log nor ours ever carries the password itself.

use crate::sql::Ident;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::names::MAX_IDENTIFIER_BYTES;
use super::{Error, Isolation, StoragePrefix, Tenant};

/// Crockford's base32, lowercase: a tenant id (a UUID) in 26 characters, where hex would need
/// 32 and leave too little of the 63 bytes for the slug.
const ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_CHARS: usize = 26;

/// The login role of one tenant: `<prefix><slug>_<tenant id in base32>`.
///
/// Role names are global to a PostgreSQL cluster, while slugs are unique only within one
/// catalog: the tenant id makes the name unique wherever the catalog lives, and several
/// catalogs can share a cluster. The prefix is the one the tenant's schema or database name was
/// made with (read back from that stored name, not from today's configuration), so changing
/// TENANT_DATABASE_PREFIX never renames an existing tenant's role. The slug, cut short when the
/// prefix is long, is there for the people reading `pg_roles`; the name always fits PostgreSQL's
/// 63 bytes whole, and contains only `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbRoleName(String);

impl DbRoleName {
    pub fn of(tenant: &Tenant) -> Self {
        let slug = tenant.slug.as_str().replace('-', "_");
        let prefix = storage_prefix(tenant, &slug);
        let id = base32(tenant.id.as_uuid().as_u128());
        let room = MAX_IDENTIFIER_BYTES - prefix.len() - 1 - id.len();
        let short: String = slug.chars().take(room).collect();
        Self(format!("{prefix}{}_{id}", short.trim_end_matches('_')))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a double-quoted SQL identifier, for statements that take no parameters
    /// (`ALTER ROLE`, `GRANT`). Derivation admits only [a-z0-9_], so there is nothing to
    /// escape; the doubling of quotes is kept as a second line of defence.
    pub fn quoted(&self) -> Ident {
        Ident::new(&self.0)
    }
}

impl fmt::Display for DbRoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The prefix the tenant's stored schema or database name starts with; empty when that name is
/// missing or not of the derived form (the tenant id alone keeps the role name unique).
fn storage_prefix(tenant: &Tenant, slug: &str) -> String {
    let (stored, tail) = match tenant.isolation {
        Isolation::Shared => (&tenant.schema_name, "shared"),
        Isolation::Schema => (&tenant.schema_name, slug),
        Isolation::Database => (&tenant.database_name, slug),
    };
    stored
        .as_deref()
        .and_then(|name| name.strip_suffix(tail))
        .and_then(|prefix| StoragePrefix::parse(prefix).ok())
        .map(|prefix| prefix.as_str().to_owned())
        .unwrap_or_default()
}

fn base32(value: u128) -> String {
    (0..ID_CHARS)
        .rev()
        .map(|i| char::from(ID_ALPHABET[((value >> (i * 5)) & 0x1f) as usize]))
        .collect()
}

/// A tenant role's password: 256 random bits, URL-safe base64 (43 characters, nothing to
/// escape in a connection URL). Never printed: `Debug` shows no part of it.
pub struct DbPassword(String);

impl DbPassword {
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Internal(format!("no randomness for a password: {e}")))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The password, for the one answer that hands it out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DbPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DbPassword(<redacted>)")
    }
}

/// What PostgreSQL stores of a password with `password_encryption = scram-sha-256`:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. It cannot log in by itself, but
/// it would let an attacker test guesses offline, so it is not printed either.
pub struct ScramVerifier(String);

impl ScramVerifier {
    /// PostgreSQL's default (`scram_iterations`): clients of any version accept it.
    pub const ITERATIONS: u32 = 4096;
    /// PostgreSQL's own salt length.
    const SALT_BYTES: usize = 16;

    /// The verifier of `password`, with a fresh random salt.
    pub fn new(password: &DbPassword) -> Result<Self, Error> {
        let mut salt = [0u8; Self::SALT_BYTES];
        getrandom::fill(&mut salt)
            .map_err(|e| Error::Internal(format!("no randomness for a salt: {e}")))?;
        // The password is ASCII without spaces or control characters, so SASLprep leaves it as
        // it is and its bytes are the normalized password.
        Ok(Self::with_salt(
            password.expose().as_bytes(),
            &salt,
            Self::ITERATIONS,
        ))
    }

    fn with_salt(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let keys = ScramKeys::derive(password, salt, iterations);
        Self(format!(
            "SCRAM-SHA-256${iterations}:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(keys.stored_key),
            STANDARD.encode(keys.server_key),
        ))
    }

    /// The verifier as the SQL of `ALTER ROLE ... PASSWORD` takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScramVerifier(<redacted>)")
    }
}

struct ScramKeys {
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl ScramKeys {
    /// RFC 5802 §3: SaltedPassword = Hi(password, salt, i), with Hi = PBKDF2-HMAC-SHA-256.
    fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Self {
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;

    use super::*;
    use crate::domain::{Labels, PlanName, Slug, TenantId, TenantState};

    fn tenant(slug: &str, isolation: Isolation, stored: &str) -> Tenant {
        let now = Utc::now();
        let (schema_name, database_name) = match isolation {
            Isolation::Database => (None, Some(stored.to_owned())),
            _ => (Some(stored.to_owned()), None),
        };
        Tenant {
            id: TenantId::new(),
            slug: Slug::parse(slug).unwrap(),
            display_name: slug.into(),
            plan: PlanName::parse("free").unwrap(),
            isolation,
            state: TenantState::Active,
            state_before_suspend: None,
            state_before_delete: None,
            labels: Labels::default(),
            limit_overrides: BTreeMap::new(),
            schema_name,
            database_name,
            suspend_reason: None,
            migration_version: None,
            last_error: None,
            last_error_time: None,
            provision_time: Some(now),
            revision: 1,
            create_time: now,
            update_time: now,
            delete_time: None,
            purge_time: None,
            suspend_time: None,
        }
    }

    #[test]
    fn a_role_is_named_by_the_storage_prefix_the_slug_and_the_tenant_id() {
        let t = tenant("acme-corp", Isolation::Schema, "tenant_acme_corp");
        let name = DbRoleName::of(&t);
        let id = base32(t.id.as_uuid().as_u128());
        assert_eq!(name.as_str(), format!("tenant_acme_corp_{id}"));
        let shared = tenant("acme", Isolation::Shared, "t_shared");
        assert!(DbRoleName::of(&shared).as_str().starts_with("t_acme_"));
        let database = tenant("acme", Isolation::Database, "x_acme");
        assert!(DbRoleName::of(&database).as_str().starts_with("x_acme_"));
    }

    #[test]
    fn tenants_with_the_same_slug_in_two_catalogs_get_two_roles() {
        let a = tenant("acme", Isolation::Schema, "tenant_acme");
        let b = tenant("acme", Isolation::Schema, "tenant_acme");
        assert_ne!(DbRoleName::of(&a), DbRoleName::of(&b));
    }

    #[test]
    fn role_names_always_fit_63_bytes_of_plain_characters() {
        let prefix = "p".repeat(StoragePrefix::MAX_BYTES);
        let slug = "a".repeat(30);
        let t = tenant(&slug, Isolation::Schema, &format!("{prefix}{slug}"));
        let name = DbRoleName::of(&t);
        assert_eq!(name.as_str().len(), MAX_IDENTIFIER_BYTES);
        assert!(name.as_str().starts_with(&format!("{prefix}aaaa_")));
        let odd = tenant("a-b-c", Isolation::Schema, "\"; DROP ROLE x; --a_b_c");
        let name = DbRoleName::of(&odd);
        assert!(name.as_str().starts_with("a_b_c_"), "{name}");
        assert!(
            name.as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }

    #[test]
    fn ids_in_base32_keep_every_bit() {
        assert_eq!(base32(0), "0".repeat(26));
        assert_eq!(base32(u128::MAX), format!("7{}", "z".repeat(25)));
        assert_eq!(base32(1 << 5), format!("{}10", "0".repeat(24)));
    }

    #[test]
    fn passwords_are_random_and_never_printed() {
        let a = DbPassword::generate().unwrap();
        let b = DbPassword::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert!(!format!("{a:?}").contains(a.expose()));
        let verifier = ScramVerifier::new(&a).unwrap();
        assert!(!format!("{verifier:?}").contains(verifier.as_str()));
        assert!(!verifier.as_str().contains(a.expose()));
    }

    /// The exchange of RFC 7677 §3 (user "user", password "pencil"): a server holding our keys
    /// accepts the RFC's client proof and answers with the RFC's server signature.
    #[test]
    fn verifiers_check_the_rfc_7677_exchange() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive(b"pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = STANDARD
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let client_signature = hmac(&keys.stored_key, auth_message.as_bytes());
        let recovered: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored: [u8; 32] = Sha256::digest(&recovered).into();
        assert_eq!(
            stored, keys.stored_key,
            "the server accepts the client's proof"
        );
        assert_eq!(
            STANDARD.encode(hmac(&keys.server_key, auth_message.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let verifier = ScramVerifier::with_salt(b"pencil", &salt, 4096);
        assert_eq!(
            verifier.as_str(),
            format!(
                "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${}:{}",
                STANDARD.encode(keys.stored_key),
                STANDARD.encode(keys.server_key)
            )
        );
    }
}
