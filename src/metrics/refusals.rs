//! Calls refused for want of valid credentials, per server. They are counted rather than
//! written to the audit log: anyone who can reach the port can make them, as fast as they like.

use prometheus_client::metrics::{counter::Counter, family::Family};
use prometheus_client::registry::Registry;

type RefusalLabels = [(&'static str, &'static str); 3];

/// `tenant_plane_auth_refusals_total{grpc_service, grpc_method, reason}`; `reason` is the
/// ErrorInfo reason the caller got (`CREDENTIALS_MISSING`, `CREDENTIALS_INVALID`).
#[derive(Debug, Clone, Default)]
pub struct AuthRefusals {
    counts: Family<RefusalLabels, Counter>,
}

impl AuthRefusals {
    /// Counts a refusal of a call of `service`/`method` (from the table of served methods, or
    /// `unknown`), for `reason`.
    pub fn record(&self, service: &'static str, method: &'static str, reason: &'static str) {
        self.counts
            .get_or_create(&[
                ("grpc_service", service),
                ("grpc_method", method),
                ("reason", reason),
            ])
            .inc();
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "tenant_plane_auth_refusals",
            "Calls refused for want of valid credentials (not written to the audit log), by \
             service, method and reason",
            self.counts.clone(),
        );
    }
}
