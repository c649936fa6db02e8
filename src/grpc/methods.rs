//! The table of served methods, from the descriptors the server registers for reflection (and
//! Envoy's two, whose descriptors envoy-types does not export). This is the only walk of the
//! descriptors.
//!
//! Each entry carries what the layers need to know about a method: its service and method
//! names for metrics and span names (so a caller inventing paths cannot add label values), and
//! its row of the policy table ([`policy`]): who may call it and how the audit log treats it.
//! The policy table stays the source of those facts; this table joins them to the served
//! methods once, when first used.
//!
//! The context layer, outermost, looks the path up once per RPC and leaves the answer in the
//! request's extensions ([`Lookup`]); the layers inside read it with [`of`].

use std::collections::HashMap;
use std::sync::LazyLock;

use prost::Message;

use super::policy::{self, Access, Policy};

/// The service and method of a path nobody serves.
pub const UNKNOWN: (&str, &str) = ("unknown", "unknown");

/// Envoy's services: their descriptors are not exported by envoy-types.
const ENVOY: [(&str, &str); 2] = [
    ("envoy.service.auth.v3.Authorization", "Check"),
    (
        "envoy.service.ratelimit.v3.RateLimitService",
        "ShouldRateLimit",
    ),
];

/// A served method.
#[derive(Debug)]
pub struct Method {
    /// `/package.Service/Method`.
    path: String,
    /// `package.Service`.
    service: String,
    /// `Method`.
    method: String,
    /// `None` only for a method the policy table leaves out, which a test forbids: such a
    /// method is admin-only and not recorded.
    policy: Option<&'static Policy>,
}

impl Method {
    fn new(service: String, method: String) -> Self {
        let path = format!("/{service}/{method}");
        let policy = policy::of_action(path.trim_start_matches('/'));
        Self {
            path,
            service,
            method,
            policy,
        }
    }

    /// `/package.Service/Method`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `package.Service/Method`: the path without its leading slash, as the audit log names it.
    pub fn action(&self) -> &str {
        self.path.trim_start_matches('/')
    }

    /// `package.Service`.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// `Method`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Who may call the method.
    pub fn access(&self) -> Access {
        self.policy.map_or(Access::Admin, |p| p.access)
    }

    /// The action the method's calls are recorded under; `None` if they are not recorded.
    pub fn audited_action(&self) -> Option<&'static str> {
        self.policy.and_then(Policy::audited_action)
    }
}

/// `/package.Service/Method` → its entry.
static METHODS: LazyLock<HashMap<String, Method>> = LazyLock::new(|| {
    let sets = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods: Vec<Method> = ENVOY
        .iter()
        .map(|(s, m)| Method::new((*s).to_owned(), (*m).to_owned()))
        .collect();
    for set in sets {
        // The sets are compiled in; one that did not decode would only leave its methods out.
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                let name = if package.is_empty() {
                    service.name().to_owned()
                } else {
                    format!("{package}.{}", service.name())
                };
                for method in &service.method {
                    methods.push(Method::new(name.clone(), method.name().to_owned()));
                }
            }
        }
    }
    methods
        .into_iter()
        .map(|method| (method.path.clone(), method))
        .collect()
});

/// The entry of `path`, if the server serves it.
pub fn known(path: &str) -> Option<&'static Method> {
    METHODS.get(path)
}

/// Who may call `path`, whose entry in the method table is `method` (`None`: a path nobody
/// serves, whose rule comes from its text).
pub fn access(method: Option<&'static Method>, path: &str) -> Access {
    method.map_or_else(|| policy::unserved(path).0, Method::access)
}

/// The action a call of `path` (whose entry is `method`) is recorded under, if it is recorded:
/// from the entry, or, for a path nobody serves, from its text with leading slashes trimmed.
pub fn audited_action(method: Option<&'static Method>, path: &str) -> Option<&'static str> {
    match method {
        Some(method) => method.audited_action(),
        None => policy::unserved(path).1,
    }
}

/// Every served method, in no particular order.
#[cfg(test)]
pub fn all() -> impl Iterator<Item = &'static Method> {
    METHODS.values()
}

/// The request extension the context layer leaves: the entry of the request's path, `None`
/// for a path nobody serves.
#[derive(Debug, Clone, Copy)]
pub struct Lookup(pub Option<&'static Method>);

/// The entry of `request`'s path: the one the context layer left, or, for a request that did
/// not pass through it (a layer used on its own), looked up now.
pub fn of<B>(request: &http::Request<B>) -> Option<&'static Method> {
    match request.extensions().get::<Lookup>() {
        Some(Lookup(method)) => *method,
        None => known(request.uri().path()),
    }
}

#[cfg(test)]
mod tests {
    use tonic::server::NamedService;

    use super::*;
    use crate::grpc::envoy::{AuthorizationServer, AuthzApi, RateLimitApi, RateLimitServiceServer};

    /// The service and method names of `path`'s entry.
    fn known(path: &str) -> Option<(&'static str, &'static str)> {
        super::known(path).map(|m| (m.service(), m.method()))
    }

    #[test]
    fn served_methods_are_known_and_invented_ones_are_not() {
        assert_eq!(
            known("/tenant.v1.TenantService/CreateTenant"),
            Some(("tenant.v1.TenantService", "CreateTenant"))
        );
        assert_eq!(
            known("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check"))
        );
        assert_eq!(
            known("/envoy.service.auth.v3.Authorization/Check"),
            Some(("envoy.service.auth.v3.Authorization", "Check"))
        );
        assert_eq!(known("/tenant.v1.TenantService/Nope"), None);
        assert_eq!(known("/x"), None);
    }

    #[test]
    fn entries_carry_their_row_of_the_policy_table() {
        for method in all() {
            let row = policy::of_action(method.action()).expect("a row");
            assert_eq!(method.access(), row.access, "{method:?}");
            assert_eq!(method.audited_action(), row.audited_action());
            assert_eq!(
                method.path(),
                format!("/{}/{}", method.service(), method.method())
            );
        }
        let create = super::known("/tenant.v1.TenantService/CreateTenant").expect("served");
        assert_eq!(create.action(), "tenant.v1.TenantService/CreateTenant");
        assert_eq!(create.access(), Access::Admin);
        assert_eq!(create.audited_action(), Some(create.action()));
        let health = super::known("/grpc.health.v1.Health/Check").expect("served");
        assert_eq!(health.access(), Access::Public);
        assert_eq!(health.audited_action(), None);
    }

    #[test]
    fn unserved_paths_are_recorded_as_before() {
        let create = "/tenant.v1.TenantService/CreateTenant";
        let action = "tenant.v1.TenantService/CreateTenant";
        assert_eq!(audited_action(super::known(create), create), Some(action));
        assert_eq!(audited_action(None, create), Some(action));
        assert_eq!(
            audited_action(None, "//tenant.v1.TenantService/CreateTenant"),
            Some(action)
        );
        let get = "/tenant.v1.TenantService/GetTenant";
        assert_eq!(audited_action(super::known(get), get), None);
        assert_eq!(audited_action(None, "/tenant.v1.TenantService/Nope"), None);
        assert_eq!(access(None, "/grpc.health.v1.Health/Nope"), Access::Public);
        assert_eq!(
            access(None, "/tenant.v1.NewService/Anything"),
            Access::Admin
        );
        assert_eq!(access(super::known(get), get), Access::OwnTenant);
    }

    #[test]
    fn envoy_entries_name_the_served_envoy_services() {
        assert_eq!(
            ENVOY[0].0,
            <AuthorizationServer<AuthzApi> as NamedService>::NAME
        );
        assert_eq!(
            ENVOY[1].0,
            <RateLimitServiceServer<RateLimitApi> as NamedService>::NAME
        );
    }
}
