//! The tenant and its lifecycle.
//!
//! ```text
//! PROVISIONING -> ACTIVE <-> SUSPENDED
//!      |            |            |
//!      v            v            v
//!    FAILED ----> DELETED (soft; data kept) --undelete--> the state it had before
//! ```
//! Suspension and deletion remember the state they interrupted, so resuming and undeleting
//! return a tenant exactly where it was.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Error, Labels, PlanName, Slug, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    Schema,
    Database,
    Shared,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schema => "schema",
            Self::Database => "database",
            Self::Shared => "shared",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "schema" => Some(Self::Schema),
            "database" => Some(Self::Database),
            "shared" => Some(Self::Shared),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantState {
    Provisioning,
    Active,
    Suspended,
    Deleted,
    Failed,
}

impl TenantState {
    /// Every state.
    pub const ALL: [Self; 5] = [
        Self::Provisioning,
        Self::Active,
        Self::Suspended,
        Self::Deleted,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Deleted => "DELETED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the tenant's database role may log in: not while the tenant is suspended or
    /// deleted, so its own connections stop with it, not only the control plane's answers.
    pub fn admits_logins(self) -> bool {
        !matches!(self, Self::Suspended | Self::Deleted)
    }
}

/// An opaque version of a tenant row, sent to clients for optimistic concurrency (AIP-154).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Etag(i64);

impl Etag {
    pub fn from_revision(revision: i64) -> Self {
        Self(revision)
    }

    pub fn revision(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Option<Self> {
        let revision: i64 = text.strip_prefix('r')?.parse().ok()?;
        (revision > 0 && text.len() > 1 && text.as_bytes()[1].is_ascii_digit())
            .then_some(Self(revision))
    }
}

impl std::fmt::Display for Etag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A tenant as the catalog holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: Slug,
    pub display_name: String,
    pub plan: PlanName,
    pub isolation: Isolation,
    pub state: TenantState,
    /// The state to return to on resume (set while SUSPENDED).
    pub state_before_suspend: Option<TenantState>,
    /// The state to return to on undelete (set while DELETED).
    pub state_before_delete: Option<TenantState>,
    pub labels: Labels,
    pub limit_overrides: BTreeMap<String, i64>,
    pub schema_name: Option<String>,
    pub database_name: Option<String>,
    pub suspend_reason: Option<String>,
    pub migration_version: Option<String>,
    pub last_error: Option<String>,
    pub last_error_time: Option<DateTime<Utc>>,
    /// When the tenant's storage was created; `None` while it has none.
    pub provision_time: Option<DateTime<Utc>>,
    pub revision: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub delete_time: Option<DateTime<Utc>>,
    pub purge_time: Option<DateTime<Utc>>,
    pub suspend_time: Option<DateTime<Utc>>,
}

impl Tenant {
    pub fn etag(&self) -> Etag {
        Etag::from_revision(self.revision)
    }

    pub fn name(&self) -> String {
        format!("tenants/{}", self.id)
    }

    fn refuse(&self, action: &str) -> Error {
        Error::FailedPrecondition {
            subject: self.name(),
            message: format!(
                "cannot {action} tenant {} while it is {}",
                self.slug,
                self.state.as_str()
            ),
        }
    }

    /// Suspends a live tenant, keeping the reason and the state to resume to.
    pub fn suspend(&mut self, reason: String, now: DateTime<Utc>) -> Result<(), Error> {
        match self.state {
            TenantState::Active | TenantState::Provisioning | TenantState::Failed => {
                self.state_before_suspend = Some(self.state);
                self.state = TenantState::Suspended;
                self.suspend_reason = Some(reason);
                self.suspend_time = Some(now);
                Ok(())
            }
            TenantState::Suspended | TenantState::Deleted => Err(self.refuse("suspend")),
        }
    }

    pub fn resume(&mut self) -> Result<(), Error> {
        if self.state != TenantState::Suspended {
            return Err(self.refuse("resume"));
        }
        self.state = self
            .state_before_suspend
            .take()
            .unwrap_or(TenantState::Active);
        Ok(())
    }

    /// Soft delete: data is kept until `purge_time`.
    pub fn delete(&mut self, now: DateTime<Utc>, retention: chrono::Duration) -> Result<(), Error> {
        if self.state == TenantState::Deleted {
            return Err(self.refuse("delete"));
        }
        self.state_before_delete = Some(self.state);
        self.state = TenantState::Deleted;
        self.delete_time = Some(now);
        self.purge_time = Some(now + retention);
        Ok(())
    }

    /// Restores a deleted tenant. A live tenant already exists, hence ALREADY_EXISTS (AIP-164).
    pub fn undelete(&mut self) -> Result<(), Error> {
        if self.state != TenantState::Deleted {
            return Err(Error::AlreadyExists {
                kind: "tenant",
                name: format!("{} (it is not deleted)", self.slug),
            });
        }
        self.state = self
            .state_before_delete
            .take()
            .unwrap_or(TenantState::Active);
        // A purged tenant has no storage left: it must be provisioned again before use.
        if self.provision_time.is_none() && self.state == TenantState::Active {
            self.state = TenantState::Provisioning;
        }
        if self.provision_time.is_none() && self.state_before_suspend == Some(TenantState::Active) {
            self.state_before_suspend = Some(TenantState::Provisioning);
        }
        self.delete_time = None;
        self.purge_time = None;
        Ok(())
    }

    /// Refuses changes to a deleted tenant's fields: it must be undeleted first.
    pub fn ensure_mutable(&self) -> Result<(), Error> {
        if self.state == TenantState::Deleted {
            Err(self.refuse("update"))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(state: TenantState) -> Tenant {
        let now = Utc::now();
        Tenant {
            id: TenantId::new(),
            slug: Slug::parse("acme").unwrap(),
            display_name: "Acme".into(),
            plan: PlanName::parse("free").unwrap(),
            isolation: Isolation::Schema,
            state,
            state_before_suspend: None,
            state_before_delete: None,
            labels: Labels::default(),
            limit_overrides: BTreeMap::new(),
            schema_name: None,
            database_name: None,
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
    fn suspend_then_resume_returns_to_the_interrupted_state() {
        let mut t = tenant(TenantState::Provisioning);
        t.suspend("unpaid".into(), Utc::now()).unwrap();
        assert_eq!(t.state, TenantState::Suspended);
        assert_eq!(t.suspend_reason.as_deref(), Some("unpaid"));
        t.resume().unwrap();
        assert_eq!(t.state, TenantState::Provisioning);
        assert_eq!(
            t.suspend_reason.as_deref(),
            Some("unpaid"),
            "the reason is kept"
        );
    }

    #[test]
    fn a_deleted_tenant_cannot_be_suspended_resumed_or_deleted_again() {
        let mut t = tenant(TenantState::Deleted);
        assert!(matches!(
            t.suspend("x".into(), Utc::now()),
            Err(Error::FailedPrecondition { .. })
        ));
        assert!(matches!(t.resume(), Err(Error::FailedPrecondition { .. })));
        assert!(matches!(
            t.delete(Utc::now(), chrono::Duration::days(1)),
            Err(Error::FailedPrecondition { .. })
        ));
    }

    #[test]
    fn undelete_restores_the_state_before_deletion_and_clears_times() {
        let mut t = tenant(TenantState::Active);
        t.suspend("abuse".into(), Utc::now()).unwrap();
        let now = Utc::now();
        t.delete(now, chrono::Duration::days(30)).unwrap();
        assert_eq!(t.purge_time, Some(now + chrono::Duration::days(30)));
        t.undelete().unwrap();
        assert_eq!(t.state, TenantState::Suspended);
        assert_eq!((t.delete_time, t.purge_time), (None, None));
        t.resume().unwrap();
        assert_eq!(t.state, TenantState::Active);
    }

    #[test]
    fn undeleting_a_purged_tenant_waits_for_provisioning() {
        let mut t = tenant(TenantState::Active);
        t.delete(Utc::now(), chrono::Duration::days(1)).unwrap();
        t.provision_time = None;
        t.undelete().unwrap();
        assert_eq!(t.state, TenantState::Provisioning);
    }

    #[test]
    fn undeleting_a_live_tenant_says_it_already_exists() {
        assert!(matches!(
            tenant(TenantState::Active).undelete(),
            Err(Error::AlreadyExists { .. })
        ));
    }

    #[test]
    fn only_suspended_and_deleted_tenants_keep_their_role_from_logging_in() {
        use TenantState::*;
        let admitted: Vec<_> = [Provisioning, Active, Suspended, Deleted, Failed]
            .into_iter()
            .filter(|s| s.admits_logins())
            .collect();
        assert_eq!(admitted, [Provisioning, Active, Failed]);
    }

    #[test]
    fn etags_round_trip_and_refuse_garbage() {
        let etag = Etag::from_revision(42);
        assert_eq!(Etag::parse(&etag.to_string()), Some(etag));
        assert_eq!(Etag::parse("42"), None);
        assert_eq!(Etag::parse("rx"), None);
        assert_eq!(Etag::parse("\"r1\""), None);
    }
}
