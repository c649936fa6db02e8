//! envoy.service.ratelimit.v3.RateLimitService: Envoy's rate-limit filter asks, per request,
//! whether its descriptors are within the tenants' quotas; the quotas are the same ones
//! tenant.v1.QuotaService consumes, so both count against one limit.
//!
//! ## Descriptors
//! A descriptor is ours when it has an entry `tenant_id` (a tenant id or slug); an optional
//! entry `resource` names the quota (default `api_calls_per_minute`), an optional entry
//! `authenticated` says how ext_authz established the tenant (its `x-tenant-authenticated`
//! header). Other entries are ignored. A descriptor with `authenticated: none` (a request
//! without credentials) counts nothing unless TENANT_ANONYMOUS_QUOTA is set: an anonymous
//! client must not spend a tenant's quota.
//! Each descriptor consumes `hits_addend` (its own if set, else the request's; 0 means 1) of its
//! resource, on its own: one over its limit does not undo the others. A GAUGE resource is only
//! checked, never raised: gauges are set by measurement, not by traffic.
//!
//! ## Answers, per descriptor, in request order
//! * admitted: OK with `current_limit`, `limit_remaining` and `duration_until_reset`;
//! * over the limit: OVER_LIMIT, `limit_remaining` 0, nothing counted;
//! * unlimited: OK without `current_limit`;
//! * not ours — no `tenant_id`, an unknown tenant, a suspended or deleted one (ext_authz turns
//!   those away before this filter), negative hits, or a resource the tenant has no quota on:
//!   OK without `current_limit`. A misspelt resource in Envoy's configuration is logged as a
//!   warning instead of breaking every request it matches.
//!
//! `overall_code` is OVER_LIMIT if any descriptor is over. The catalog being unreachable is an
//! `Err(UNAVAILABLE)`, so Envoy's `failure_mode_deny` decides.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration;
use tonic::{Request, Response, Status};

use super::Authenticated;
use crate::domain::{Error, Slug, TenantId};
use crate::service::{QuotaState, Quotas, TenantRef};

/// The descriptor entry naming the tenant.
pub const TENANT_ENTRY: &str = "tenant_id";
/// The descriptor entry saying how the tenant was established (`x-tenant-authenticated`).
pub const AUTHENTICATED_ENTRY: &str = "authenticated";
/// The descriptor entry naming the quota resource.
pub const RESOURCE_ENTRY: &str = "resource";
/// The resource of a descriptor without a `resource` entry.
pub const DEFAULT_RESOURCE: &str = "api_calls_per_minute";

/// Envoy's units with their length in seconds. Weeks are exact; months and years are not
/// fixed lengths, and no quota window is one of them, so they are left out.
const UNITS: [(Unit, i64); 5] = [
    (Unit::Second, 1),
    (Unit::Minute, 60),
    (Unit::Hour, 3_600),
    (Unit::Day, 86_400),
    (Unit::Week, 604_800),
];

pub struct RateLimitApi {
    quotas: Quotas,
    /// Whether requests without credentials count against the tenant they name
    /// (TENANT_ANONYMOUS_QUOTA).
    anonymous_quota: bool,
}

impl RateLimitApi {
    pub fn new(quotas: Quotas, anonymous_quota: bool) -> Self {
        Self {
            quotas,
            anonymous_quota,
        }
    }
}

/// The unit a window is reported in: its own length when it is one of Envoy's units, else the
/// nearest (by ratio), UNKNOWN for a gauge. `current_limit` is informational for Envoy.
fn unit_of(window_secs: Option<i64>) -> Unit {
    let Some(window) = window_secs.filter(|w| *w > 0) else {
        return Unit::Unknown;
    };
    let distance = |len: i64| {
        let (w, len) = (window as f64, len as f64);
        (w / len).max(len / w)
    };
    UNITS
        .iter()
        .min_by(|a, b| distance(a.1).total_cmp(&distance(b.1)))
        .map_or(Unit::Unknown, |(unit, _)| *unit)
}

fn saturating_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Time left until `state`'s window ends, `now` being Unix seconds by the server's clock.
fn until_reset(state: &QuotaState, now: i64) -> Option<Duration> {
    let reset = state.reset_time()?;
    Some(Duration {
        seconds: (reset - now).max(0),
        nanos: 0,
    })
}

/// Not ours to limit: OK, nothing reported.
fn pass() -> DescriptorStatus {
    DescriptorStatus {
        code: Code::Ok as i32,
        ..Default::default()
    }
}

fn status(
    code: Code,
    state: &QuotaState,
    remaining: i64,
    reset: Option<Duration>,
) -> DescriptorStatus {
    if state.limit < 0 {
        return pass();
    }
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            name: state.resource.clone(),
            requests_per_unit: saturating_u32(state.limit),
            unit: unit_of(state.window_secs) as i32,
        }),
        limit_remaining: saturating_u32(remaining),
        duration_until_reset: reset,
        quota: None,
    }
}

/// The tenant named by a descriptor entry: an id or a slug.
fn tenant_ref(value: &str) -> Option<TenantRef> {
    TenantId::parse(value)
        .map(TenantRef::Id)
        .or_else(|| Slug::parse(value).ok().map(TenantRef::Slug))
}

impl RateLimitApi {
    async fn decide(
        &self,
        descriptor: &RateLimitDescriptor,
        request_hits: u32,
    ) -> Result<DescriptorStatus, Error> {
        let entry = |key: &str| {
            descriptor
                .entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        let Some(tenant) = entry(TENANT_ENTRY) else {
            return Ok(pass());
        };
        let resource = entry(RESOURCE_ENTRY).unwrap_or(DEFAULT_RESOURCE);
        if entry(AUTHENTICATED_ENTRY) == Some(Authenticated::None.as_str()) && !self.anonymous_quota
        {
            tracing::debug!(
                tenant,
                resource,
                "requests without credentials are not counted"
            );
            return Ok(pass());
        }
        if descriptor.is_negative_hits {
            tracing::debug!(tenant, resource, "negative hits are not refunded");
            return Ok(pass());
        }
        let Some(target) = tenant_ref(tenant) else {
            tracing::debug!(tenant, "descriptor names no tenant");
            return Ok(pass());
        };
        let hits = descriptor
            .hits_addend
            .as_ref()
            .map_or(u64::from(request_hits), |h| h.value)
            .max(1);
        let hits = i64::try_from(hits).unwrap_or(i64::MAX);

        // The check is cheap (memory) and a refusal is certain: usage only grows within a
        // window, so a stale view can only undercount it. It also tells counters from gauges.
        let (allowed, state) = match self.quotas.check(&target, resource, hits).await {
            Ok(checked) => checked,
            Err(error) => return not_limited(error, tenant, resource),
        };
        if state.limit < 0 && state.window_secs.is_none() {
            return Ok(pass());
        }
        if !allowed {
            return Ok(status(
                Code::OverLimit,
                &state,
                0,
                until_reset(&state, self.quotas.now_secs()),
            ));
        }
        if state.window_secs.is_none() {
            return Ok(status(Code::Ok, &state, state.remaining(), None));
        }
        match self
            .quotas
            .consume(&target, &[(resource.to_owned(), hits)], None)
            .await
        {
            Ok(states) => {
                let counted = states.first().unwrap_or(&state);
                Ok(status(
                    Code::Ok,
                    counted,
                    counted.remaining(),
                    until_reset(counted, self.quotas.now_secs()),
                ))
            }
            Err(Error::QuotaExhausted { retry_after, .. }) => {
                let reset = retry_after
                    .map(|d| Duration {
                        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                        nanos: 0,
                    })
                    .or_else(|| until_reset(&state, self.quotas.now_secs()));
                Ok(status(Code::OverLimit, &state, 0, reset))
            }
            Err(error) => not_limited(error, tenant, resource),
        }
    }
}

/// The answer when the quota use case refuses: OK for what is not ours to limit, the error
/// itself for an outage or a bug.
fn not_limited(error: Error, tenant: &str, resource: &str) -> Result<DescriptorStatus, Error> {
    match error {
        Error::NotFound { .. } => {
            tracing::debug!(tenant, "rate limit for an unknown tenant");
            Ok(pass())
        }
        Error::FailedPrecondition { message, .. } => {
            tracing::debug!(tenant, %message, "rate limit for a tenant without quotas");
            Ok(pass())
        }
        Error::InvalidArgument(violations) => {
            let why: Vec<_> = violations.into_iter().map(|v| v.description).collect();
            tracing::warn!(tenant, resource, why = ?why, "rate limit descriptor names no quota; check the Envoy configuration");
            Ok(pass())
        }
        other => Err(other),
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimitApi {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.into_inner();
        let mut statuses = Vec::with_capacity(request.descriptors.len());
        for descriptor in &request.descriptors {
            statuses.push(self.decide(descriptor, request.hits_addend).await?);
        }
        let over = statuses.iter().any(|s| s.code == Code::OverLimit as i32);
        Ok(Response::new(RateLimitResponse {
            overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
            statuses,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_map_to_their_unit_or_the_nearest() {
        assert_eq!(unit_of(Some(1)), Unit::Second);
        assert_eq!(unit_of(Some(60)), Unit::Minute);
        assert_eq!(unit_of(Some(3_600)), Unit::Hour);
        assert_eq!(unit_of(Some(86_400)), Unit::Day);
        assert_eq!(unit_of(Some(604_800)), Unit::Week);
        assert_eq!(unit_of(Some(90)), Unit::Minute);
        assert_eq!(unit_of(Some(30 * 86_400)), Unit::Week);
        assert_eq!(unit_of(None), Unit::Unknown);
        assert_eq!(unit_of(Some(0)), Unit::Unknown);
    }

    #[test]
    fn descriptor_tenants_are_ids_or_slugs() {
        let id = TenantId::new();
        assert_eq!(tenant_ref(&id.to_string()), Some(TenantRef::Id(id)));
        assert!(matches!(tenant_ref("acme"), Some(TenantRef::Slug(_))));
        assert_eq!(tenant_ref("Not A Slug"), None);
    }

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        assert_eq!(saturating_u32(-1), 0);
        assert_eq!(saturating_u32(5), 5);
        assert_eq!(saturating_u32(i64::MAX), u32::MAX);
    }
}
