//! Domain values to their wire form.

use chrono::{DateTime, Utc};

use crate::domain::{Etag, Isolation, Tenant, TenantState};
use crate::{proto, service};

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn isolation(i: Isolation) -> proto::Isolation {
    match i {
        Isolation::Schema => proto::Isolation::Schema,
        Isolation::Database => proto::Isolation::Database,
        Isolation::Shared => proto::Isolation::Shared,
    }
}

pub fn state(s: TenantState) -> proto::tenant::State {
    use proto::tenant::State;
    match s {
        TenantState::Provisioning => State::Provisioning,
        TenantState::Active => State::Active,
        TenantState::Suspended => State::Suspended,
        TenantState::Deleted => State::Deleted,
        TenantState::Failed => State::Failed,
    }
}

pub fn state_from_wire(s: proto::tenant::State) -> Option<TenantState> {
    use proto::tenant::State;
    match s {
        State::Unspecified => None,
        State::Provisioning => Some(TenantState::Provisioning),
        State::Active => Some(TenantState::Active),
        State::Suspended => Some(TenantState::Suspended),
        State::Deleted => Some(TenantState::Deleted),
        State::Failed => Some(TenantState::Failed),
    }
}

pub fn tenant(t: Tenant) -> proto::Tenant {
    proto::Tenant {
        name: t.name(),
        id: t.id.to_string(),
        slug: t.slug.to_string(),
        display_name: t.display_name,
        plan: t.plan.to_string(),
        isolation: isolation(t.isolation) as i32,
        state: state(t.state) as i32,
        labels: t.labels.as_map().clone().into_iter().collect(),
        schema_name: t.schema_name.unwrap_or_default(),
        database_name: t.database_name.unwrap_or_default(),
        suspend_reason: t.suspend_reason.unwrap_or_default(),
        migration_version: t.migration_version.unwrap_or_default(),
        limit_overrides: t.limit_overrides.into_iter().collect(),
        create_time: Some(timestamp(t.create_time)),
        update_time: Some(timestamp(t.update_time)),
        delete_time: t.delete_time.map(timestamp),
        purge_time: t.purge_time.map(timestamp),
        suspend_time: t.suspend_time.map(timestamp),
        etag: Etag::from_revision(t.revision).to_string(),
    }
}

pub fn location(l: service::DataLocation) -> proto::DataLocation {
    proto::DataLocation {
        isolation: isolation(l.isolation) as i32,
        schema_name: l.schema_name.unwrap_or_default(),
        database_name: l.database_name.unwrap_or_default(),
        row_filter_tenant_id: l.row_filter_tenant_id.unwrap_or_default(),
        role_name: l.role_name.unwrap_or_default(),
    }
}
