//! The per-RPC policy table: for every RPC the server offers, who may call it and how the audit
//! log treats it, in one entry.
//!
//! Who may call a method and whether its calls are recorded used to be two string lists (one
//! beside authentication, one beside the audit layer) that had to agree. Here they are one row
//! per RPC, so adding an RPC is one decision in one place, and a test walks the served methods
//! (`grpc::methods`) so that none is left without a row and no row names a method nobody
//! serves. The method table copies each served method's row once; the authentication layer
//! reads the access rule from it, the audit layer whether and under which action a call is
//! recorded.
//!
//! A path nobody serves has no row: it is refused unless it names a public service (its
//! rule is then public, and tonic answers UNIMPLEMENTED), and it is recorded if its text, with
//! leading slashes trimmed, is an audited RPC ([`unserved`]).

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

/// How the audit log treats an RPC's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// Changes the control plane's configuration: each call is recorded, under the RPC's
    /// action.
    Recorded,
    /// Counts usage on the hot path (quota consumption and usage reports, Envoy's rate limit),
    /// thousands of times a second; changes no configuration: not recorded.
    Metering,
    /// Changes nothing: not recorded.
    ReadOnly,
}

/// One RPC's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `package.Service/Method`: the path without its leading slash, as the audit log names
    /// the action.
    pub action: &'static str,
    pub access: Access,
    pub audit: Audit,
}

impl Policy {
    /// The action a call is recorded under; `None` for an RPC that is not recorded.
    pub fn audited_action(&self) -> Option<&'static str> {
        (self.audit == Audit::Recorded).then_some(self.action)
    }

    /// `package.Service`.
    fn service(&self) -> &'static str {
        self.action.split_once('/').map_or(self.action, |(s, _)| s)
    }
}

const fn rpc(action: &'static str, access: Access, audit: Audit) -> Policy {
    Policy {
        action,
        access,
        audit,
    }
}

use Access::{Admin, OwnTenant, Public, Service};
use Audit::{Metering, ReadOnly, Recorded};

/// Every RPC the server offers, one row each.
pub const POLICIES: &[Policy] = &[
    // TenantService. A tenant key may read its own tenant; changes are the admin's.
    rpc("tenant.v1.TenantService/CreateTenant", Admin, Recorded),
    rpc("tenant.v1.TenantService/GetTenant", OwnTenant, ReadOnly),
    rpc("tenant.v1.TenantService/ListTenants", Service, ReadOnly),
    rpc("tenant.v1.TenantService/UpdateTenant", Admin, Recorded),
    rpc("tenant.v1.TenantService/DeleteTenant", Admin, Recorded),
    rpc("tenant.v1.TenantService/UndeleteTenant", Admin, Recorded),
    rpc("tenant.v1.TenantService/SuspendTenant", Admin, Recorded),
    rpc("tenant.v1.TenantService/ResumeTenant", Admin, Recorded),
    rpc("tenant.v1.TenantService/ResolveTenant", OwnTenant, ReadOnly),
    rpc(
        "tenant.v1.TenantService/WatchTenantChanges",
        Service,
        ReadOnly,
    ),
    rpc("tenant.v1.TenantService/CreateApiKey", Admin, Recorded),
    rpc("tenant.v1.TenantService/ListApiKeys", Admin, ReadOnly),
    rpc("tenant.v1.TenantService/RevokeApiKey", Admin, Recorded),
    rpc(
        "tenant.v1.TenantService/RotateTenantCredentials",
        Admin,
        Recorded,
    ),
    // MembershipService.
    rpc("tenant.v1.MembershipService/AddMember", Admin, Recorded),
    rpc("tenant.v1.MembershipService/GetMember", Service, ReadOnly),
    rpc("tenant.v1.MembershipService/ListMembers", Service, ReadOnly),
    rpc("tenant.v1.MembershipService/UpdateMember", Admin, Recorded),
    rpc("tenant.v1.MembershipService/RemoveMember", Admin, Recorded),
    rpc(
        "tenant.v1.MembershipService/ListTenantsForUser",
        Service,
        ReadOnly,
    ),
    // ProvisioningService.
    rpc(
        "tenant.v1.ProvisioningService/ProvisionTenant",
        Admin,
        Recorded,
    ),
    rpc(
        "tenant.v1.ProvisioningService/GetProvisioningStatus",
        Service,
        ReadOnly,
    ),
    rpc(
        "tenant.v1.ProvisioningService/DeprovisionTenant",
        Admin,
        Recorded,
    ),
    // MigrationService.
    rpc(
        "tenant.v1.MigrationService/ListMigrations",
        Service,
        ReadOnly,
    ),
    rpc(
        "tenant.v1.MigrationService/GetMigrationStatus",
        Service,
        ReadOnly,
    ),
    rpc("tenant.v1.MigrationService/MigrateTenant", Admin, Recorded),
    // A dry run changes nothing, and shows a tenant's storage only as DDL the operator would
    // run: the service role may plan (a pipeline's check), and it is not recorded.
    rpc(
        "tenant.v1.MigrationService/PlanMigration",
        Service,
        ReadOnly,
    ),
    // Recorded with validate_only too: a rehearsal commits nothing, but runs DDL in real
    // tenants' storage and holds their locks while it does.
    rpc("tenant.v1.MigrationService/StartRollout", Admin, Recorded),
    rpc("tenant.v1.MigrationService/GetRollout", Service, ReadOnly),
    rpc("tenant.v1.MigrationService/ListRollouts", Service, ReadOnly),
    rpc("tenant.v1.MigrationService/CancelRollout", Admin, Recorded),
    rpc("tenant.v1.MigrationService/WatchRollout", Service, ReadOnly),
    // Reads tenants' storage; its record of each check is an observation, not a change.
    rpc("tenant.v1.MigrationService/CheckDrift", Service, ReadOnly),
    // QuotaService: the service role meters; a tenant key may read its own quotas and usage.
    rpc("tenant.v1.QuotaService/ConsumeQuota", Service, Metering),
    rpc("tenant.v1.QuotaService/CheckQuota", OwnTenant, ReadOnly),
    rpc("tenant.v1.QuotaService/ReportUsage", Service, Metering),
    rpc("tenant.v1.QuotaService/GetUsage", OwnTenant, ReadOnly),
    rpc("tenant.v1.QuotaService/MeasureStorage", Service, Metering),
    // PlanService.
    rpc("tenant.v1.PlanService/ListPlans", Service, ReadOnly),
    rpc("tenant.v1.PlanService/GetPlan", Service, ReadOnly),
    rpc("tenant.v1.PlanService/UpsertPlan", Admin, Recorded),
    // ComponentService: the services that own tenant tables register and push their
    // migrations (a CI job holds a service token); tenant keys may do none of it. Pushes are
    // checked by the lint, and what only an admin may allow is checked by the handler.
    rpc(
        "tenant.v1.ComponentService/CreateComponent",
        Service,
        Recorded,
    ),
    rpc("tenant.v1.ComponentService/GetComponent", Service, ReadOnly),
    rpc(
        "tenant.v1.ComponentService/ListComponents",
        Service,
        ReadOnly,
    ),
    rpc(
        "tenant.v1.ComponentService/PushMigrations",
        Service,
        Recorded,
    ),
    rpc(
        "tenant.v1.ComponentService/ListComponentMigrations",
        Service,
        ReadOnly,
    ),
    rpc(
        "tenant.v1.ComponentService/GetComponentMigration",
        Service,
        ReadOnly,
    ),
    rpc(
        "tenant.v1.ComponentService/GetFleetStatus",
        Service,
        ReadOnly,
    ),
    // AuditService.
    rpc("tenant.v1.AuditService/ListAuditEvents", Admin, ReadOnly),
    // The Envoy sidecar's checks.
    rpc(
        "envoy.service.auth.v3.Authorization/Check",
        Service,
        ReadOnly,
    ),
    rpc(
        "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        Service,
        Metering,
    ),
    // tonic's health and reflection: without credentials, changing nothing.
    rpc("grpc.health.v1.Health/Check", Public, ReadOnly),
    rpc("grpc.health.v1.Health/Watch", Public, ReadOnly),
    rpc(
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Public,
        ReadOnly,
    ),
    rpc(
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Public,
        ReadOnly,
    ),
];

/// The row of `action` ("package.Service/Method"), if the table has one.
pub fn of_action(action: &str) -> Option<&'static Policy> {
    POLICIES.iter().find(|p| p.action == action)
}

/// What applies to a call of `path`, a path nobody serves: public if it names a public
/// service (tonic then answers UNIMPLEMENTED), else admin-only; and recorded under the action
/// its text names, with leading slashes trimmed, if that is an audited RPC.
pub fn unserved(path: &str) -> (Access, Option<&'static str>) {
    let action = path.trim_start_matches('/');
    let service = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(service, _)| service);
    let public = service.is_some_and(|service| {
        POLICIES
            .iter()
            .any(|p| p.access == Public && p.service() == service)
    });
    let access = if public { Public } else { Admin };
    (access, of_action(action).and_then(Policy::audited_action))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::grpc::methods;

    #[test]
    fn every_served_rpc_has_exactly_one_row() {
        let mut listed = BTreeSet::new();
        for policy in POLICIES {
            assert!(
                listed.insert(policy.action),
                "{} is listed twice",
                policy.action
            );
        }
        for method in methods::all() {
            assert!(
                listed.contains(method.action()),
                "{} is served but has no row in grpc/policy.rs: decide who may call it and \
                 whether it is recorded",
                method.action()
            );
        }
    }

    #[test]
    fn every_row_names_a_served_rpc() {
        for policy in POLICIES {
            assert!(
                methods::known(&format!("/{}", policy.action)).is_some(),
                "{} has a row but is not served",
                policy.action
            );
        }
    }

    #[test]
    fn changes_are_admin_only_and_recorded() {
        let create = of_action("tenant.v1.TenantService/CreateTenant").expect("a row");
        assert_eq!((create.access, create.audit), (Admin, Recorded));
        assert_eq!(create.audited_action(), Some(create.action));
        let get = of_action("tenant.v1.TenantService/GetTenant").expect("a row");
        assert_eq!((get.access, get.audited_action()), (OwnTenant, None));
        let consume = of_action("tenant.v1.QuotaService/ConsumeQuota").expect("a row");
        assert_eq!((consume.access, consume.audit), (Service, Metering));
        // Whatever changes something is recorded, and only admins may change things, but for
        // the registry of components, which the services owning them write from their CI.
        let service_writes = [
            "tenant.v1.ComponentService/CreateComponent",
            "tenant.v1.ComponentService/PushMigrations",
        ];
        for policy in POLICIES.iter().filter(|p| p.audit == Recorded) {
            let expected = if service_writes.contains(&policy.action) {
                Service
            } else {
                Admin
            };
            assert_eq!(policy.access, expected, "{}", policy.action);
        }
    }

    #[test]
    fn unserved_paths_are_admin_only_unless_public_and_recorded_as_before() {
        let create = "tenant.v1.TenantService/CreateTenant";
        assert_eq!(
            unserved("//tenant.v1.TenantService/CreateTenant"),
            (Admin, Some(create))
        );
        assert_eq!(unserved("/tenant.v1.NewService/Anything"), (Admin, None));
        assert_eq!(unserved("/tenant.v1.TenantService/Nope"), (Admin, None));
        assert_eq!(unserved("/grpc.health.v1.Health/Nope"), (Public, None));
        assert_eq!(
            unserved("/grpc.reflection.v1alpha.ServerReflection/Other"),
            (Public, None)
        );
        assert_eq!(unserved("/x"), (Admin, None));
    }
}
