//! Tenant memberships: add, read, list, change and remove a tenant's members, and list the
//! tenants a user belongs to.
//!
//! A tenant's members are its `users` quota, enforced exactly: the store decides each change in
//! one transaction under the tenant's `users` row lock (see `store::members`). The limit is read
//! before that transaction, from the tenant and the catalog's memory of its plan, as QuotaService
//! reads it. Members of a DELETED tenant are kept but not changed; that check is made on the
//! tenant as read before the transaction.

use serde_json::json;

use super::paging::Page;
use super::tenants::{RequestKey, TenantRef, load};
use crate::domain::{
    CallContext, Error, Etag, FieldViolation, Member, QuotaViolation, Role, Tenant, TenantId,
    TenantState, USERS, UserId, effective_quotas,
};
use crate::store::{Added, Catalog, Changed, RequestRecord};

const ADD_METHOD: &str = "tenant.v1.MembershipService/AddMember";

/// What AddMember takes, as the caller sent it.
#[derive(Debug, Clone, Default)]
pub struct AddMemberInput {
    pub parent: String,
    pub user_id: String,
    /// `None` when the caller sent no role or an unknown one (the transport reports which).
    pub role: Option<Role>,
    pub request: Option<RequestKey>,
    /// Problems the transport already found, reported with the ones found here.
    pub violations: Vec<FieldViolation>,
}

#[derive(Clone)]
pub struct Members {
    catalog: Catalog,
}

/// A member name, "tenants/{tenant}/members/{user_id}".
fn parse_member_name(name: &str, field: &str) -> Result<(TenantRef, UserId), Error> {
    let bad = |why: String| Error::invalid(field, why);
    let (parent, user) = name
        .split_once("/members/")
        .ok_or_else(|| bad("must be \"tenants/{tenant}/members/{user_id}\"".into()))?;
    let user = UserId::parse(user).map_err(|why| bad(format!("its user id {why}")))?;
    Ok((TenantRef::parse(parent, field)?, user))
}

/// An etag sent by a caller: empty for none.
pub fn parse_etag(text: &str, field: &str) -> Result<Option<Etag>, Error> {
    if text.is_empty() {
        return Ok(None);
    }
    Etag::parse(text)
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is not an etag issued by this service"))
}

fn refuse_deleted(tenant: &Tenant) -> Result<(), Error> {
    if tenant.state == TenantState::Deleted {
        return Err(deleted(tenant));
    }
    Ok(())
}

/// The refusal of a change to the members of `tenant`, which is DELETED.
fn deleted(tenant: &Tenant) -> Error {
    Error::FailedPrecondition {
        subject: tenant.name(),
        message: format!(
            "tenant {} is DELETED: its members are kept but cannot change until it is undeleted",
            tenant.slug
        ),
    }
}

fn member_not_found(name: &str) -> Error {
    Error::NotFound {
        kind: "member",
        name: name.to_owned(),
    }
}

fn stale(name: &str) -> Error {
    Error::Aborted {
        reason: "ETAG_MISMATCH",
        message: format!("etag mismatch: member {name} has changed; read it again"),
    }
}

fn last_owner(tenant: &Tenant, action: &str) -> Error {
    Error::FailedPrecondition {
        subject: tenant.name(),
        message: format!(
            "cannot {action} the last owner of tenant {}: make another member OWNER first",
            tenant.slug
        ),
    }
}

impl Members {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }

    /// The tenant's `users` limit (-1: unlimited), from its plan and its overrides.
    async fn users_limit(&self, tenant: &Tenant) -> Result<i64, Error> {
        let plan = self.catalog.cached_plan(tenant.plan.as_str()).await?;
        let quotas = effective_quotas(
            plan.as_deref().map_or(&[], |p| p.limits.as_slice()),
            &tenant.limit_overrides,
        );
        Ok(quotas.get(USERS).map_or(-1, |q| q.limit))
    }

    /// Adds a member within the tenant's `users` limit; a retry with the same request id
    /// returns the member the first call added.
    #[tracing::instrument(skip_all, fields(tenant = %input.parent))]
    pub async fn add(&self, ctx: &CallContext, input: AddMemberInput) -> Result<Member, Error> {
        let mut violations = input.violations;
        let parent = TenantRef::parse(&input.parent, "parent")
            .map_err(|e| violations.extend(e.into_violations()))
            .ok();
        let user = UserId::parse(&input.user_id)
            .map_err(|why| violations.push(FieldViolation::new("member.user_id", why)))
            .ok();
        Error::check(violations)?;
        let (Some(parent), Some(user), Some(role)) = (parent, user, input.role) else {
            return Err(Error::Internal(
                "validated member input is incomplete".into(),
            ));
        };
        let tenant = load(&self.catalog, &parent).await?;
        ctx.note_tenant(tenant.id);
        refuse_deleted(&tenant)?;
        let limit = self.users_limit(&tenant).await?;
        let member = Member::new(tenant.id, user, role, self.catalog.now());
        let record = input.request.as_ref().map(|key| RequestRecord {
            request_id: key.id,
            method: ADD_METHOD.into(),
            request_hash: key.request_hash.clone(),
            resource_id: tenant.id.as_uuid(),
            result: Some(json!({ "member": member.name() })),
        });
        match self
            .catalog
            .add_member(ctx, &member, limit, record.as_ref())
            .await?
        {
            Added::Member(added) => {
                tracing::info!(member = %added.name(), role = added.role.as_str(), "member added");
                Ok(added)
            }
            Added::Exists => Err(Error::AlreadyExists {
                kind: "member",
                name: member.name(),
            }),
            // Seen DELETED under the row's lock, after the check above.
            Added::TenantDeleted => Err(deleted(&tenant)),
            Added::OverLimit { members } => Err(Error::QuotaExhausted {
                subject: tenant.name(),
                violations: vec![QuotaViolation {
                    resource: USERS.into(),
                    description: format!(
                        "users: limit {limit}, {members} members; adding 1 would pass it"
                    ),
                }],
                retry_after: None,
            }),
            Added::Replayed(first) => {
                ctx.replayed();
                let same = input.request.as_ref().is_some_and(|key| {
                    first.method == ADD_METHOD && first.request_hash == key.request_hash
                });
                if !same {
                    return Err(Error::invalid(
                        "request_id",
                        "was already used for a different request",
                    ));
                }
                // Same request, so same tenant and user: the member as it is now.
                let tenant = TenantId::from(first.resource_id);
                self.catalog
                    .member(tenant, &member.user_id)
                    .await?
                    .ok_or_else(|| member_not_found(&member.name()))
            }
        }
    }

    pub async fn get(&self, name: &str) -> Result<Member, Error> {
        let (parent, user) = parse_member_name(name, "name")?;
        let tenant = load(&self.catalog, &parent).await?;
        self.catalog
            .member(tenant.id, &user)
            .await?
            .ok_or_else(|| member_not_found(name))
    }

    /// One page of a tenant's members in user id order, optionally of one role, and the next
    /// page's token. `violations` are the transport's findings (e.g. an unknown role).
    pub async fn list(
        &self,
        parent: &str,
        role: Option<Role>,
        page_size: i32,
        page_token: &str,
        mut violations: Vec<FieldViolation>,
    ) -> Result<(Vec<Member>, String), Error> {
        let target = TenantRef::parse(parent, "parent")
            .map_err(|e| violations.extend(e.into_violations()))
            .ok();
        let query = format!("{parent}|{:?}", role.map(Role::as_str));
        let page = Page::parse(
            page_size,
            page_token,
            &query,
            |after| UserId::parse(after).ok(),
            &mut violations,
        );
        Error::check(violations)?;
        let Some(target) = target else {
            return Err(Error::Internal("validated parent is missing".into()));
        };
        let tenant = load(&self.catalog, &target).await?;
        let mut members = self
            .catalog
            .list_members(tenant.id, role, page.after.as_ref(), page.fetch())
            .await?;
        let next = page.finish(&mut members, |m| m.user_id.to_string());
        Ok((members, next))
    }

    /// Gives a member another role; the last owner cannot be demoted.
    #[tracing::instrument(skip_all, fields(member = %name))]
    pub async fn set_role(
        &self,
        ctx: &CallContext,
        name: &str,
        role: Role,
        etag: Option<Etag>,
    ) -> Result<Member, Error> {
        let (parent, user) = parse_member_name(name, "member.name")?;
        let tenant = load(&self.catalog, &parent).await?;
        ctx.note_tenant(tenant.id);
        refuse_deleted(&tenant)?;
        let expected = etag.map(Etag::revision);
        match self
            .catalog
            .set_member_role(ctx, tenant.id, &user, role, expected)
            .await?
        {
            Changed::Done(member) => {
                tracing::info!(role = role.as_str(), "member's role changed");
                Ok(member)
            }
            Changed::NotFound => Err(member_not_found(name)),
            Changed::Stale => Err(stale(name)),
            Changed::LastOwner => Err(last_owner(&tenant, "demote")),
        }
    }

    /// Removes a member; the last owner cannot be removed.
    #[tracing::instrument(skip_all, fields(member = %name))]
    pub async fn remove(
        &self,
        ctx: &CallContext,
        name: &str,
        etag: Option<Etag>,
    ) -> Result<(), Error> {
        let (parent, user) = parse_member_name(name, "name")?;
        let tenant = load(&self.catalog, &parent).await?;
        ctx.note_tenant(tenant.id);
        refuse_deleted(&tenant)?;
        let expected = etag.map(Etag::revision);
        match self
            .catalog
            .remove_member(ctx, tenant.id, &user, expected)
            .await?
        {
            Changed::Done(()) => {
                tracing::info!("member removed");
                Ok(())
            }
            Changed::NotFound => Err(member_not_found(name)),
            Changed::Stale => Err(stale(name)),
            Changed::LastOwner => Err(last_owner(&tenant, "remove")),
        }
    }

    /// One page of the tenants a user belongs to, with the user's membership of each, in tenant
    /// creation order, and the next page's token.
    pub async fn tenants_of_user(
        &self,
        user_id: &str,
        show_deleted: bool,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<(Tenant, Member)>, String), Error> {
        let mut violations = Vec::new();
        let user = UserId::parse(user_id)
            .map_err(|why| violations.push(FieldViolation::new("user_id", why)))
            .ok();
        let page = Page::parse(
            page_size,
            page_token,
            &format!("{user_id}|{show_deleted}"),
            TenantId::parse,
            &mut violations,
        );
        Error::check(violations)?;
        let Some(user) = user else {
            return Err(Error::Internal("validated user id is missing".into()));
        };
        let mut found = self
            .catalog
            .tenants_of_user(&user, show_deleted, page.after, page.fetch())
            .await?;
        let next = page.finish(&mut found, |(t, _)| t.id.to_string());
        Ok((found, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_parse() {
        let (parent, user) =
            parse_member_name("tenants/acme/members/ann@example.com", "name").unwrap();
        assert_eq!(parent.to_string(), "tenants/acme");
        assert_eq!(user.as_str(), "ann@example.com");
        for bad in [
            "tenants/acme",
            "tenants/acme/members/",
            "tenants/acme/members/a/b",
            "acme/members/ann",
            "tenants/Acme/members/ann",
        ] {
            assert!(parse_member_name(bad, "name").is_err(), "{bad}");
        }
    }

    #[test]
    fn etags_are_optional_but_must_be_ours() {
        assert_eq!(parse_etag("", "etag").unwrap(), None);
        assert_eq!(
            parse_etag("r3", "etag").unwrap(),
            Some(Etag::from_revision(3))
        );
        assert!(parse_etag("3", "etag").is_err());
    }
}
