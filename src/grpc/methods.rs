//! The table of served methods, from the descriptors the server registers for reflection (and
//! Envoy's two, whose descriptors envoy-types does not export). Metrics and span names take
//! their service and method from it, so a caller inventing paths cannot add label values.

use std::collections::HashMap;
use std::sync::LazyLock;

use prost::Message;

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

/// `/package.Service/Method` → (`package.Service`, `Method`).
static METHODS: LazyLock<HashMap<String, (String, String)>> = LazyLock::new(|| {
    let sets = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods: Vec<(String, String)> = ENVOY
        .iter()
        .map(|(s, m)| ((*s).to_owned(), (*m).to_owned()))
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
                    methods.push((name.clone(), method.name().to_owned()));
                }
            }
        }
    }
    methods
        .into_iter()
        .map(|(service, method)| (format!("/{service}/{method}"), (service, method)))
        .collect()
});

/// The service and method `path` names, if the server serves it.
pub fn known(path: &str) -> Option<(&'static str, &'static str)> {
    METHODS
        .get(path)
        .map(|(service, method)| (service.as_str(), method.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
