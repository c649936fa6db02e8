//! The process-wide series: what RPCs, quota decisions and rollout workers record as they go.
//!
//! They are statics, like the counters of most Prometheus-instrumented servers: recording is a
//! hash lookup and an atomic add, and every label value is a `&'static str` or an existing
//! `&str`, so nothing is allocated on the hot path once a series exists.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::{
    MetricType, counter::ConstCounter, counter::Counter, family::Family, histogram::Histogram,
};
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the RPC latency buckets: from a quota check answered from memory
/// (well under a millisecond) to a provisioning or a migration (seconds).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type RpcLabels = [(&'static str, &'static str); 3];
type MethodLabels = [(&'static str, &'static str); 2];

/// What a quota decision was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOperation {
    /// CheckQuota and Envoy rate-limit checks: nothing is consumed.
    Check,
    /// ConsumeQuota.
    Consume,
}

/// How a rollout target ended on this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOutcome {
    Migrated,
    Skipped,
    Failed,
    /// A transient error: the target is tried again.
    Retried,
}

impl TargetOutcome {
    const ALL: [Self; 4] = [Self::Migrated, Self::Skipped, Self::Failed, Self::Retried];

    fn as_str(self) -> &'static str {
        match self {
            Self::Migrated => "migrated",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Retried => "retried",
        }
    }
}

struct Series {
    rpc_handled: Family<RpcLabels, Counter>,
    rpc_seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
    quota: QuotaDecisions,
    rollout_targets: [Counter; TargetOutcome::ALL.len()],
    /// The RPC latency histogram for OTLP; a no-op unless an OTLP meter provider was installed
    /// before the first RPC (telemetry is set up before the server starts).
    otel_rpc_seconds: opentelemetry::metrics::Histogram<f64>,
}

static SERIES: LazyLock<Series> = LazyLock::new(|| Series {
    rpc_handled: Family::default(),
    rpc_seconds: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
    quota: QuotaDecisions::default(),
    rollout_targets: Default::default(),
    otel_rpc_seconds: opentelemetry::global::meter(crate::telemetry::SERVICE_NAME)
        .f64_histogram("rpc.server.call.duration")
        .with_description("Duration of gRPC calls handled, until the response headers")
        .with_unit("s")
        .with_boundaries(LATENCY_BUCKETS.to_vec())
        .build(),
});

/// Records a finished RPC: `service` and `method` must come from the table of served methods
/// (bounded), `code` is the gRPC status code and `code_name` its name
/// ([`crate::grpc::status::code_name`]).
pub fn rpc_finished(
    service: &'static str,
    method: &'static str,
    code: tonic::Code,
    code_name: &'static str,
    elapsed: Duration,
) {
    let series = &*SERIES;
    let seconds = elapsed.as_secs_f64();
    series
        .rpc_handled
        .get_or_create(&[
            ("grpc_service", service),
            ("grpc_method", method),
            ("grpc_code", code_name),
        ])
        .inc();
    series
        .rpc_seconds
        .get_or_create(&[("grpc_service", service), ("grpc_method", method)])
        .observe(seconds);
    series.otel_rpc_seconds.record(
        seconds,
        &[
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service),
            KeyValue::new("rpc.method", method),
            KeyValue::new("rpc.grpc.status_code", code as i64),
        ],
    );
}

/// Records a quota decision on `resource` (a resource the tenant's plan or overrides name, so
/// their number is bounded by configuration).
pub fn quota_decision(operation: QuotaOperation, resource: &str, admitted: bool) {
    SERIES.quota.record(operation, resource, admitted);
}

/// Records how a rollout target ended.
pub fn rollout_target_finished(outcome: TargetOutcome) {
    SERIES.rollout_targets[outcome as usize].inc();
}

/// Adds the process-wide series to `registry`.
pub(super) fn register(registry: &mut Registry) {
    let series = &*SERIES;
    registry.register(
        "grpc_server_handled",
        "gRPC calls finished, by service, method and status code",
        series.rpc_handled.clone(),
    );
    registry.register(
        "grpc_server_handling_seconds",
        "Time from a call's arrival to its response headers (the whole call, for unary RPCs)",
        series.rpc_seconds.clone(),
    );
    registry.register_collector(Box::new(RolloutOutcomes));
    registry.register_collector(Box::new(QuotaCollector));
}

/// Makes the process-wide counters observable over OTLP as well.
pub(crate) fn observe_in_otel(meter: &opentelemetry::metrics::Meter) {
    meter
        .u64_observable_counter("tenant_plane.quota.decisions")
        .with_description("Quota decisions, by operation, resource and decision")
        .with_callback(|observer| {
            SERIES.quota.each(|operation, resource, decision, value| {
                observer.observe(
                    value,
                    &[
                        KeyValue::new("operation", operation),
                        KeyValue::new("resource", resource.to_owned()),
                        KeyValue::new("decision", decision),
                    ],
                );
            });
        })
        .build();
    meter
        .u64_observable_counter("tenant_plane.rollout.targets.finished")
        .with_description("Rollout targets this replica finished, by outcome")
        .with_callback(|observer| {
            for outcome in TargetOutcome::ALL {
                let value = SERIES.rollout_targets[outcome as usize].get();
                observer.observe(value, &[KeyValue::new("outcome", outcome.as_str())]);
            }
        })
        .build();
}

const OPERATIONS: [&str; 2] = ["check", "consume"];
const DECISIONS: [&str; 2] = ["admitted", "denied"];

/// Quota decisions by resource: a map from resource name to its four counters
/// (check/consume × admitted/denied), read-locked on the hot path and written only the first
/// time a resource is seen. A `Family` would need an owned label set for every lookup.
#[derive(Debug, Default)]
struct QuotaDecisions {
    by_resource: RwLock<HashMap<Box<str>, [Counter; 4]>>,
}

impl QuotaDecisions {
    fn record(&self, operation: QuotaOperation, resource: &str, admitted: bool) {
        let slot = (operation as usize) * 2 + usize::from(!admitted);
        {
            let map = self.by_resource.read().unwrap_or_else(|p| p.into_inner());
            if let Some(counters) = map.get(resource) {
                counters[slot].inc();
                return;
            }
        }
        let mut map = self.by_resource.write().unwrap_or_else(|p| p.into_inner());
        map.entry(resource.into()).or_default()[slot].inc();
    }

    /// Calls `each(operation, resource, decision, value)` for every counter.
    fn each(&self, mut each: impl FnMut(&'static str, &str, &'static str, u64)) {
        let map = self.by_resource.read().unwrap_or_else(|p| p.into_inner());
        for (resource, counters) in map.iter() {
            for (slot, counter) in counters.iter().enumerate() {
                each(
                    OPERATIONS[slot / 2],
                    resource,
                    DECISIONS[slot % 2],
                    counter.get(),
                );
            }
        }
    }
}

#[derive(Debug)]
struct QuotaCollector;

impl Collector for QuotaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "tenant_plane_quota_decisions",
            "Quota decisions, by operation (check or consume), resource and decision (admitted or denied).",
            None,
            MetricType::Counter,
        )?;
        let mut result = Ok(());
        SERIES.quota.each(|operation, resource, decision, value| {
            if result.is_ok() {
                let labels = [
                    ("operation", operation),
                    ("resource", resource),
                    ("decision", decision),
                ];
                result = metric
                    .encode_family(&labels)
                    .and_then(|m| ConstCounter::new(value).encode(m));
            }
        });
        result
    }
}

#[derive(Debug)]
struct RolloutOutcomes;

impl Collector for RolloutOutcomes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "tenant_plane_rollout_targets_finished",
            "Rollout targets this replica finished, by outcome.",
            None,
            MetricType::Counter,
        )?;
        for outcome in TargetOutcome::ALL {
            let counter = &SERIES.rollout_targets[outcome as usize];
            counter.encode(metric.encode_family(&[("outcome", outcome.as_str())])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_name(code: i32) -> &'static str {
        crate::grpc::status::code_name(tonic::Code::from_i32(code))
    }

    #[test]
    fn status_codes_have_their_canonical_names() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(8), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(17), "UNKNOWN");
        assert_eq!(code_name(-1), "UNKNOWN");
    }

    #[test]
    fn quota_decisions_count_per_resource_operation_and_decision() {
        let decisions = QuotaDecisions::default();
        decisions.record(QuotaOperation::Consume, "seats", true);
        decisions.record(QuotaOperation::Consume, "seats", true);
        decisions.record(QuotaOperation::Check, "seats", false);
        let mut seen = Vec::new();
        decisions.each(|op, resource, decision, value| {
            if value > 0 {
                seen.push(format!("{op} {resource} {decision} {value}"));
            }
        });
        seen.sort();
        assert_eq!(seen, ["check seats denied 1", "consume seats admitted 2"]);
    }
}
