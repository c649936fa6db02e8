//! [`TenantContext`]: the tenant a request belongs to and where its data lives, parsed once
//! from the control plane's `ResolveTenant` answer, and the task-local that carries it through
//! a request's handler.

use std::future::Future;

use crate::Error;
use crate::names::{Isolation, MAX_NAME_BYTES, Slug, TenantId, TenantState};
use crate::proto;

tokio::task_local! {
    static CURRENT: TenantContext;
}

/// The longest storage name the control plane derives (PostgreSQL's identifier limit), plus
/// the `.sqlite3` suffix of an SQLite file.
const MAX_STORAGE_NAME: usize = MAX_NAME_BYTES + ".sqlite3".len();

/// Who the tenant is and where its data lives.
///
/// Storage names are checked on the way in to be what the control plane derives (lowercase
/// letters, digits, `_`, and `.` in SQLite file names), so they are safe as file names, and a
/// name the control plane never made is refused before it reaches a database, whatever the
/// catalog holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantContext {
    pub id: TenantId,
    pub slug: Slug,
    pub state: TenantState,
    pub isolation: Isolation,
    pub plan: String,
    /// The PostgreSQL schema holding the tenant's data: its own (SCHEMA) or the one every
    /// SHARED tenant shares.
    pub schema: Option<String>,
    /// The PostgreSQL database or SQLite file holding the tenant's data (DATABASE isolation).
    pub database: Option<String>,
    /// The least-privilege role reaching only this tenant's data, when the control plane
    /// manages them.
    pub role: Option<String>,
}

impl TenantContext {
    /// The tenant of the running request, if a [`TenantLayer`](crate::TenantLayer) or
    /// [`scope`](Self::scope) put one there.
    pub fn current() -> Option<TenantContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` with this tenant as [`current`](Self::current).
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }

    /// Runs `f` with this tenant as [`current`](Self::current), for synchronous code.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// `tenants/{id}`, the name the control plane's APIs take.
    pub fn name(&self) -> String {
        format!("tenants/{}", self.id)
    }

    /// Whether requests for this tenant are served.
    pub fn is_active(&self) -> bool {
        self.state == TenantState::Active
    }
}

impl TryFrom<proto::ResolveTenantResponse> for TenantContext {
    type Error = Error;

    fn try_from(response: proto::ResolveTenantResponse) -> Result<Self, Error> {
        let tenant = response
            .tenant
            .ok_or_else(|| Error::Malformed("no tenant in the answer".into()))?;
        let location = response.location.unwrap_or_default();
        let id = TenantId::parse(&tenant.id)
            .ok_or_else(|| Error::Malformed(format!("tenant id '{}'", tenant.id)))?;
        let slug = Slug::parse(&tenant.slug)
            .map_err(|e| Error::Malformed(format!("tenant slug '{}' {e}", tenant.slug)))?;
        let state = match tenant.state() {
            proto::tenant::State::Provisioning => TenantState::Provisioning,
            proto::tenant::State::Active => TenantState::Active,
            proto::tenant::State::Suspended => TenantState::Suspended,
            proto::tenant::State::Deleted => TenantState::Deleted,
            proto::tenant::State::Failed => TenantState::Failed,
            proto::tenant::State::Unspecified => {
                return Err(Error::Malformed("tenant state unspecified".into()));
            }
        };
        // The location says what is in force; the tenant's own field is the fallback.
        let isolation = match (location.isolation(), tenant.isolation()) {
            (proto::Isolation::Schema, _)
            | (proto::Isolation::Unspecified, proto::Isolation::Schema) => Isolation::Schema,
            (proto::Isolation::Database, _)
            | (proto::Isolation::Unspecified, proto::Isolation::Database) => Isolation::Database,
            (proto::Isolation::Shared, _)
            | (proto::Isolation::Unspecified, proto::Isolation::Shared) => Isolation::Shared,
            (proto::Isolation::Unspecified, proto::Isolation::Unspecified) => {
                return Err(Error::Malformed("tenant isolation unspecified".into()));
            }
        };
        let schema = first_set(&location.schema_name, &tenant.schema_name);
        let database = first_set(&location.database_name, &tenant.database_name);
        Ok(Self {
            id,
            slug,
            state,
            isolation,
            plan: tenant.plan,
            schema: schema.map(|s| storage_name(s, false)).transpose()?,
            database: database.map(|d| storage_name(d, true)).transpose()?,
            role: non_empty(location.role_name),
        })
    }
}

fn first_set<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    [a, b].into_iter().find(|s| !s.is_empty())
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A schema, database or file name as the control plane derives it, or an error.
fn storage_name(name: &str, file: bool) -> Result<String, Error> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let valid = !name.is_empty()
        && name.len() <= MAX_STORAGE_NAME
        && !name.starts_with('.')
        && name.chars().all(|c| allowed(c) || (file && c == '.'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(Error::Malformed(format!("storage name '{name}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(schema: &str) -> proto::ResolveTenantResponse {
        proto::ResolveTenantResponse {
            tenant: Some(proto::Tenant {
                id: uuid::Uuid::now_v7().to_string(),
                slug: "acme".into(),
                state: proto::tenant::State::Active as i32,
                isolation: proto::Isolation::Schema as i32,
                ..Default::default()
            }),
            location: Some(proto::DataLocation {
                isolation: proto::Isolation::Schema as i32,
                schema_name: schema.into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_resolved_tenant_becomes_a_context_with_its_schema() {
        let context = TenantContext::try_from(answer("tenant_acme")).unwrap();
        assert_eq!(context.slug.as_str(), "acme");
        assert_eq!(context.isolation, Isolation::Schema);
        assert_eq!(context.schema.as_deref(), Some("tenant_acme"));
        assert!(context.is_active());
    }

    #[test]
    fn a_schema_name_that_could_escape_its_quotes_is_refused() {
        for bad in ["a\"; DROP SCHEMA x; --", "Tenant", "../etc", ".hidden"] {
            assert!(TenantContext::try_from(answer(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_current_tenant_is_the_scoped_one_and_none_outside() {
        let context = TenantContext::try_from(answer("tenant_acme")).unwrap();
        assert_eq!(TenantContext::current(), None);
        let seen = context
            .clone()
            .scope(async { TenantContext::current() })
            .await;
        assert_eq!(seen, Some(context));
    }
}
