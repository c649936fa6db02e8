//! Envoy adapters, served on the same port as the tenant API so a service-mesh sidecar needs
//! no second endpoint: [`authz`] answers the ext_authz filter (which tenant a request is for,
//! and may it pass), [`ratelimit`] the rate-limit filter (is the tenant within its quotas).
//! Both only translate Envoy's messages to the tenant and quota use cases; `docs/envoy.md`
//! shows the Envoy side.

mod authz;
mod path;
mod ratelimit;
mod sources;

pub use authz::AuthzApi;
pub use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
pub use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
pub use ratelimit::RateLimitApi;
pub use sources::Authenticated;

/// Set on allowed requests: the tenant's id (a UUID).
pub const TENANT_ID_HEADER: &str = "x-tenant-id";
/// Set on allowed requests: the tenant's slug.
pub const TENANT_SLUG_HEADER: &str = "x-tenant-slug";
/// Set on allowed requests: the tenant's schema (SCHEMA and SHARED isolation) or database
/// (DATABASE isolation).
pub const TENANT_SCHEMA_HEADER: &str = "x-tenant-schema";
/// Set on allowed requests: how the tenant was established, one of [`Authenticated`]'s
/// values. The rate-limit descriptor carries it too, so anonymous traffic is not billed.
pub const TENANT_AUTHENTICATED_HEADER: &str = "x-tenant-authenticated";
/// A tenant API key; never passed upstream.
pub const API_KEY_HEADER: &str = "x-api-key";
