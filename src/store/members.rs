//! Queries on `tenant_members`, and the `users` quota they make up.
//!
//! Every change to a tenant's members runs in one transaction that first locks the tenant's
//! `users` usage row (the upsert that keeps the row, as `consume_batch` does), then counts and
//! changes the members and writes the count back as the gauge's level. Writers of one tenant's
//! members therefore serialise, on PostgreSQL on the row lock (also across replicas) and on
//! SQLite on the write lock the first statement takes: no interleaving admits more members than
//! the limit or leaves a tenant without an owner, and the gauge always equals the row count.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait, sea_query::Query,
};

use super::entity::{request_id, tenant, tenant_member};
use super::role_login::{RowLock, tenant_state};
use super::{Catalog, RequestRecord, audit, db_error, tenants};
use crate::domain::{
    CallContext, Error, Member, Role, Tenant, TenantId, TenantState, USERS, UserId,
};

/// What AddMember's transaction did.
#[derive(Debug)]
pub enum Added {
    Member(Member),
    /// The user is a member already.
    Exists,
    /// The tenant has `members` members, and one more would pass its limit.
    OverLimit {
        members: i64,
    },
    /// A call with the same request id got there first; this is its record.
    Replayed(RequestRecord),
    /// The tenant was deleted before the member could be added.
    TenantDeleted,
}

/// What a change to an existing member did.
#[derive(Debug)]
pub enum Changed<T> {
    Done(T),
    NotFound,
    /// The caller's etag is not the member's current one.
    Stale,
    /// The change would leave the tenant without an owner.
    LastOwner,
}

fn to_domain(m: tenant_member::Model) -> Result<Member, Error> {
    let corrupt = |field: &str| {
        Error::Internal(format!(
            "catalog row of member {} of tenant {} has an invalid {field}",
            m.user_id, m.tenant_id
        ))
    };
    Ok(Member {
        tenant: TenantId::from(m.tenant_id),
        user_id: UserId::parse(&m.user_id).map_err(|_| corrupt("user_id"))?,
        role: Role::parse(&m.role).ok_or_else(|| corrupt("role"))?,
        revision: m.revision,
        join_time: m.join_time,
        update_time: m.update_time,
    })
}

fn row(member: &Member) -> tenant_member::ActiveModel {
    tenant_member::ActiveModel {
        tenant_id: Set(member.tenant.as_uuid()),
        user_id: Set(member.user_id.as_str().to_owned()),
        role: Set(member.role.as_str().to_owned()),
        revision: Set(member.revision),
        join_time: Set(member.join_time),
        update_time: Set(member.update_time),
    }
}

/// Locks the tenant's `users` usage row, creating it if missing, without changing it.
async fn lock_members(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    tenant: TenantId,
) -> Result<(), DbErr> {
    super::quota_batch::lock_usage(txn, now, &[(tenant, USERS.to_owned())]).await?;
    Ok(())
}

/// Sets the `users` gauge of a tenant whose row is locked (or new) to its member count, at
/// `now`.
async fn write_count(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    tenant: TenantId,
    count: i64,
) -> Result<(), DbErr> {
    super::quota::upsert_gauge(txn, now, tenant, USERS, count).await
}

async fn count(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    role: Option<Role>,
) -> Result<i64, DbErr> {
    let mut query =
        tenant_member::Entity::find().filter(tenant_member::Column::TenantId.eq(tenant.as_uuid()));
    if let Some(role) = role {
        query = query.filter(tenant_member::Column::Role.eq(role.as_str()));
    }
    let n = query.count(txn).await?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

async fn find(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    user: &UserId,
) -> Result<Option<tenant_member::Model>, DbErr> {
    tenant_member::Entity::find_by_id((tenant.as_uuid(), user.as_str().to_owned()))
        .one(txn)
        .await
}

/// Inserts a new tenant's first member, its owner, and its `users` gauge of 1, in the
/// transaction that inserts the tenant.
pub(super) async fn insert_owner(txn: &DatabaseTransaction, owner: &Member) -> Result<(), DbErr> {
    tenant_member::Entity::insert(row(owner))
        .exec_without_returning(txn)
        .await?;
    write_count(txn, owner.join_time, owner.tenant, 1).await
}

impl Catalog {
    pub async fn member(&self, tenant: TenantId, user: &UserId) -> Result<Option<Member>, Error> {
        let found = tenant_member::Entity::find_by_id((tenant.as_uuid(), user.as_str().to_owned()))
            .one(self.conn())
            .await
            .map_err(db_error)?;
        found.map(to_domain).transpose()
    }

    /// One page of a tenant's members in user id order, optionally of one role.
    pub async fn list_members(
        &self,
        tenant: TenantId,
        role: Option<Role>,
        after: Option<&UserId>,
        limit: u64,
    ) -> Result<Vec<Member>, Error> {
        let mut query = tenant_member::Entity::find()
            .filter(tenant_member::Column::TenantId.eq(tenant.as_uuid()))
            .order_by_asc(tenant_member::Column::UserId)
            .limit(limit);
        if let Some(role) = role {
            query = query.filter(tenant_member::Column::Role.eq(role.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(tenant_member::Column::UserId.gt(after.as_str()));
        }
        let rows = query.all(self.conn()).await.map_err(db_error)?;
        rows.into_iter().map(to_domain).collect()
    }

    /// One page of the tenants a user belongs to, in tenant id (creation) order, with the
    /// membership of each; DELETED tenants only with `show_deleted`.
    pub async fn tenants_of_user(
        &self,
        user: &UserId,
        show_deleted: bool,
        after: Option<TenantId>,
        limit: u64,
    ) -> Result<Vec<(Tenant, Member)>, Error> {
        let mut query = tenant_member::Entity::find()
            .filter(tenant_member::Column::UserId.eq(user.as_str()))
            .order_by_asc(tenant_member::Column::TenantId)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(tenant_member::Column::TenantId.gt(after.as_uuid()));
        }
        if !show_deleted {
            query = query.filter(
                tenant_member::Column::TenantId.in_subquery(
                    Query::select()
                        .column(tenant::Column::Id)
                        .from(tenant::Entity)
                        .and_where(tenant::Column::State.ne(TenantState::Deleted.as_str()))
                        .to_owned(),
                ),
            );
        }
        let members = query.all(self.conn()).await.map_err(db_error)?;
        let ids: Vec<_> = members.iter().map(|m| m.tenant_id).collect();
        let mut tenants: HashMap<_, _> = tenant::Entity::find()
            .filter(tenant::Column::Id.is_in(ids))
            .all(self.conn())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let mut found = Vec::with_capacity(members.len());
        for m in members {
            // A tenant purged between the two reads has no row left: leave it out.
            if let Some(t) = tenants.remove(&m.tenant_id) {
                found.push((tenants::to_domain(t)?, to_domain(m)?));
            }
        }
        Ok(found)
    }

    /// Adds a member if the tenant stays within `limit` members (-1: unlimited), all in one
    /// transaction under the tenant's `users` row lock; with `record`, also claims its request
    /// id there, so a retry racing its first attempt waits for it and then replays it.
    pub async fn add_member(
        &self,
        ctx: &CallContext,
        member: &Member,
        limit: i64,
        record: Option<&RequestRecord>,
    ) -> Result<Added, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        lock_members(&txn, self.now(), member.tenant)
            .await
            .map_err(db_error)?;
        if let Some(record) = record
            && let Some(first) = request_id::Entity::find_by_id(record.request_id)
                .one(&txn)
                .await
                .map_err(db_error)?
        {
            return Ok(Added::Replayed(RequestRecord {
                request_id: first.request_id,
                method: first.method,
                request_hash: first.request_hash,
                resource_id: first.resource_id,
                result: first.result,
            }));
        }
        // Checked again under the lock, and held: a deletion either committed before (and is
        // seen here) or waits until this member is in.
        // On PostgreSQL with a share lock on the tenant's row: a deletion waits for this.
        if tenant_state(&txn, member.tenant, RowLock::Share).await? == Some(TenantState::Deleted) {
            return Ok(Added::TenantDeleted);
        }
        if find(&txn, member.tenant, &member.user_id)
            .await
            .map_err(db_error)?
            .is_some()
        {
            return Ok(Added::Exists);
        }
        let members = count(&txn, member.tenant, None).await.map_err(db_error)?;
        if limit >= 0 && members + 1 > limit {
            return Ok(Added::OverLimit { members });
        }
        tenant_member::Entity::insert(row(member))
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        if let Some(r) = record.cloned() {
            let claim = request_id::ActiveModel {
                request_id: Set(r.request_id),
                method: Set(r.method),
                request_hash: Set(r.request_hash),
                resource_id: Set(r.resource_id),
                result: Set(r.result),
                create_time: Set(self.now()),
            };
            request_id::Entity::insert(claim)
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        write_count(&txn, self.now(), member.tenant, members + 1)
            .await
            .map_err(db_error)?;
        audit::record(&txn, ctx, Some(member.tenant))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(Added::Member(member.clone()))
    }

    /// Gives a member another role, at `expected_revision` if given; an owner is demoted only
    /// while the tenant has another.
    pub async fn set_member_role(
        &self,
        ctx: &CallContext,
        tenant: TenantId,
        user: &UserId,
        role: Role,
        expected_revision: Option<i64>,
    ) -> Result<Changed<Member>, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        lock_members(&txn, self.now(), tenant)
            .await
            .map_err(db_error)?;
        let Some(found) = find(&txn, tenant, user).await.map_err(db_error)? else {
            return Ok(Changed::NotFound);
        };
        let mut member = to_domain(found)?;
        if expected_revision.is_some_and(|r| r != member.revision) {
            return Ok(Changed::Stale);
        }
        if member.role == Role::Owner
            && role != Role::Owner
            && count(&txn, tenant, Some(Role::Owner))
                .await
                .map_err(db_error)?
                <= 1
        {
            return Ok(Changed::LastOwner);
        }
        member.role = role;
        member.revision += 1;
        member.update_time = self.now();
        tenant_member::Entity::update(row(&member))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        audit::record(&txn, ctx, Some(tenant))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(Changed::Done(member))
    }

    /// Removes a member, at `expected_revision` if given, unless it is the tenant's last
    /// owner, and lowers the `users` gauge to the new count.
    pub async fn remove_member(
        &self,
        ctx: &CallContext,
        tenant: TenantId,
        user: &UserId,
        expected_revision: Option<i64>,
    ) -> Result<Changed<()>, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        lock_members(&txn, self.now(), tenant)
            .await
            .map_err(db_error)?;
        let Some(found) = find(&txn, tenant, user).await.map_err(db_error)? else {
            return Ok(Changed::NotFound);
        };
        let member = to_domain(found)?;
        if expected_revision.is_some_and(|r| r != member.revision) {
            return Ok(Changed::Stale);
        }
        if member.role == Role::Owner
            && count(&txn, tenant, Some(Role::Owner))
                .await
                .map_err(db_error)?
                <= 1
        {
            return Ok(Changed::LastOwner);
        }
        let members = count(&txn, tenant, None).await.map_err(db_error)?;
        tenant_member::Entity::delete_by_id((tenant.as_uuid(), user.as_str().to_owned()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        write_count(&txn, self.now(), tenant, members - 1)
            .await
            .map_err(db_error)?;
        audit::record(&txn, ctx, Some(tenant))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(Changed::Done(()))
    }
}
