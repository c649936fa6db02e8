//! The access rules: which callers may make which RPC.
//!
//! Anything not listed is admin-only, so a new RPC is safe until it is placed here. The method
//! table (`grpc::methods`) copies each served method's rule from here once; the authentication
//! layer reads it from the table's entry, and applies [`access`] itself only to paths nobody
//! serves.

/// Who may make an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials: health checks and reflection.
    Public,
    /// Admins, services, and tenant keys for their own tenant (checked by the handler before
    /// any lookup).
    OwnTenant,
    /// Admins and services.
    Service,
    /// Admins only.
    Admin,
}

/// RPCs without credentials, by service prefix.
const PUBLIC: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// RPCs a tenant key may make about its own tenant: read it, its usage and its quotas.
const OWN_TENANT: &[&str] = &[
    "/tenant.v1.TenantService/GetTenant",
    "/tenant.v1.TenantService/ResolveTenant",
    "/tenant.v1.QuotaService/CheckQuota",
    "/tenant.v1.QuotaService/GetUsage",
];

/// RPCs of the service role: resolution, quotas, reading tenants and migration status.
const SERVICE: &[&str] = &[
    "/tenant.v1.TenantService/ListTenants",
    "/tenant.v1.TenantService/WatchTenantChanges",
    "/tenant.v1.QuotaService/ConsumeQuota",
    "/tenant.v1.QuotaService/ReportUsage",
    "/tenant.v1.QuotaService/MeasureStorage",
    "/tenant.v1.PlanService/ListPlans",
    "/tenant.v1.PlanService/GetPlan",
    "/tenant.v1.MembershipService/GetMember",
    "/tenant.v1.MembershipService/ListMembers",
    "/tenant.v1.MembershipService/ListTenantsForUser",
    "/tenant.v1.ProvisioningService/GetProvisioningStatus",
    "/tenant.v1.MigrationService/ListMigrations",
    "/tenant.v1.MigrationService/GetMigrationStatus",
    "/tenant.v1.MigrationService/GetRollout",
    "/tenant.v1.MigrationService/ListRollouts",
    "/tenant.v1.MigrationService/WatchRollout",
    // The Envoy sidecar's checks.
    "/envoy.service.auth.v3.Authorization/Check",
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
];

/// Who may call `path` ("/package.Service/Method").
pub fn access(path: &str) -> Access {
    if PUBLIC.iter().any(|prefix| path.starts_with(prefix)) {
        Access::Public
    } else if OWN_TENANT.contains(&path) {
        Access::OwnTenant
    } else if SERVICE.contains(&path) {
        Access::Service
    } else {
        Access::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_methods_are_admin_only() {
        assert_eq!(
            access("/tenant.v1.TenantService/DeleteTenant"),
            Access::Admin
        );
        assert_eq!(access("/tenant.v1.NewService/Anything"), Access::Admin);
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Public);
        assert_eq!(
            access("/tenant.v1.QuotaService/GetUsage"),
            Access::OwnTenant
        );
        assert_eq!(
            access("/tenant.v1.MigrationService/WatchRollout"),
            Access::Service
        );
    }

    #[test]
    fn every_listed_method_exists() {
        for path in OWN_TENANT.iter().chain(SERVICE) {
            assert!(
                crate::grpc::methods::known(path).is_some(),
                "{path} is not an RPC"
            );
        }
        for prefix in PUBLIC {
            assert!(
                crate::grpc::methods::all().any(|m| m.path().starts_with(prefix)),
                "{prefix} names no served service"
            );
        }
    }
}
