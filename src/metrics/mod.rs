//! Prometheus metrics, served in the OpenMetrics text format on a port of their own
//! (`--metrics-listen`, `GET /metrics`).
//!
//! ## The series
//! | series | type | labels |
//! |---|---|---|
//! | `grpc_server_handled_total` | counter | `grpc_service`, `grpc_method`, `grpc_code` |
//! | `grpc_server_handling_seconds` | histogram | `grpc_service`, `grpc_method` |
//! | `tenant_plane_db_pool_connections` | gauge | `pool` (`catalog`, `tenant_databases`), `state` (`in_use`, `idle`) |
//! | `tenant_plane_db_pool_max_connections` | gauge | `pool` |
//! | `tenant_plane_quota_decisions_total` | counter | `operation` (`check`, `consume`), `resource`, `decision` (`admitted`, `denied`) |
//! | `tenant_plane_rollout_targets` | gauge | `rollout` (active rollouts only), `state` |
//! | `tenant_plane_rollouts_active` | gauge | — |
//! | `tenant_plane_rollout_targets_finished_total` | counter | `outcome` (`migrated`, `skipped`, `failed`, `retried`) |
//! | `tenant_plane_tenants` | gauge | `state` |
//! | `tenant_plane_drifted_tenants` | gauge | — |
//! | `tenant_plane_auth_refusals_total` | counter | `grpc_service`, `grpc_method`, `reason` (`CREDENTIALS_MISSING`, `CREDENTIALS_INVALID`) |
//! | `tenant_plane_catalog_notices_total` | counter | `outcome` (`applied`, `unchanged`, `unrecognised`) |
//!
//! ## Cardinality
//! No series is labelled by tenant: tenants are unbounded. Methods come from the table of served
//! methods (a path the server does not serve counts as `unknown`), resources from the plans'
//! and overrides' limits, rollouts only while they are active.
//!
//! Counters recorded as work happens are process-wide ([`series`]); the gauges of one server's
//! pools and catalog are read when scraped ([`scrape`]).

mod http;
mod refusals;
mod scrape;
mod series;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use http::Endpoint;
pub use refusals::AuthRefusals;
pub use scrape::CATALOG_REFRESH;
pub(crate) use series::observe_in_otel;
pub use series::{
    QuotaOperation, TargetOutcome, quota_decision, rollout_target_finished, rpc_finished,
};

use crate::config::Listen;
use crate::dataplane::DataPlane;
use crate::store::Catalog;

/// The metrics endpoint of a server on `catalog` and `dataplane`, not yet bound.
pub fn endpoint(listen: Listen, catalog: Catalog, dataplane: Arc<DataPlane>) -> Endpoint {
    let mut registry = Registry::default();
    series::register(&mut registry);
    let refusals = AuthRefusals::default();
    refusals.register(&mut registry);
    let catalog = scrape::CatalogSeries::new(catalog, dataplane, &mut registry);
    Endpoint::new(listen, registry, catalog, refusals)
}
