//! Tenant memberships: which users belong to a tenant, and with what role.
//!
//! A tenant's members are its `users` quota: the count of members is the gauge's level, kept
//! exact by the store (see `store::members`). Once a tenant has an owner it keeps one.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{Etag, TenantId};

/// The quota resource that counts a tenant's members.
pub const USERS: &str = "users";

/// A user id as an identity provider issues it: opaque to the control plane, but bounded and
/// restricted to characters that are safe in resource names, logs and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Longest id accepted: room for an email address or an issuer-qualified subject.
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@:+".contains(&b))
        {
            return Err("may contain only A-Z, a-z, 0-9 and . _ @ : + -".into());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a member may do in its tenant; the tenant's application enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "OWNER",
            Self::Admin => "ADMIN",
            Self::Member => "MEMBER",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "OWNER" => Some(Self::Owner),
            "ADMIN" => Some(Self::Admin),
            "MEMBER" => Some(Self::Member),
            _ => None,
        }
    }
}

/// A user's membership of one tenant, as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub tenant: TenantId,
    pub user_id: UserId,
    pub role: Role,
    /// Bumped on every change; the etag is made from it.
    pub revision: i64,
    pub join_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Member {
    /// A new member at revision 1.
    pub fn new(tenant: TenantId, user_id: UserId, role: Role, now: DateTime<Utc>) -> Self {
        Self {
            tenant,
            user_id,
            role,
            revision: 1,
            join_time: now,
            update_time: now,
        }
    }

    /// "tenants/{tenant_id}/members/{user_id}".
    pub fn name(&self) -> String {
        format!("tenants/{}/members/{}", self.tenant, self.user_id)
    }

    pub fn etag(&self) -> Etag {
        Etag::from_revision(self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_accept_emails_and_issuer_subjects() {
        for good in [
            "a",
            "alice@example.com",
            "auth0:5f1c2a",
            "user+tag@example.co.uk",
            "A-Z_0.9",
            &"x".repeat(UserId::MAX_LEN),
        ] {
            assert_eq!(UserId::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn user_ids_refuse_empty_long_and_unsafe_text() {
        for bad in [
            "",
            &"x".repeat(UserId::MAX_LEN + 1),
            "alice smith",
            "a/b",
            "'; drop table tenant_members;--",
            "é",
            "a\n",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("owner"), None);
    }

    #[test]
    fn member_names_use_the_tenant_id() {
        let tenant = TenantId::new();
        let user = UserId::parse("bob@example.com").unwrap();
        let member = Member::new(tenant, user, Role::Admin, Utc::now());
        assert_eq!(
            member.name(),
            format!("tenants/{tenant}/members/bob@example.com")
        );
        assert_eq!(member.etag().to_string(), "r1");
    }
}
