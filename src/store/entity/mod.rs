//! sea-orm entities of the catalog tables (see `migration::catalog` for their history).

pub mod api_key;
pub mod audit_event;
pub mod auth_token;
pub mod component;
pub mod component_migration;
pub mod plan;
pub mod quota_usage;
pub mod request_id;
pub mod rollout;
pub mod rollout_event;
pub mod rollout_target;
pub mod tenant;
pub mod tenant_component;
pub mod tenant_member;
