//! OpenTelemetry: OTLP/gRPC exporters for spans and metrics, the W3C TraceContext propagator,
//! and what the RPC layer needs to continue a caller's trace.
//!
//! Configured by the standard environment variables: OTEL_EXPORTER_OTLP_ENDPOINT (required to
//! turn it on; OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _METRICS_ENDPOINT, _HEADERS, _TIMEOUT are
//! read by the exporter), OTEL_SDK_DISABLED, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
//! OTEL_TRACES_SAMPLER, OTEL_BSP_* and OTEL_METRIC_EXPORT_INTERVAL.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::global;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{MetricExporter, SpanExporter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, Registry, filter, layer::Context};

use super::{BoxedLayer, SERVICE_NAME, is_db_span};

/// Whether spans go to an OTLP exporter; when not, the RPC layer skips the propagation work.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// What the environment asks for.
pub struct Settings {
    resource: Resource,
}

impl Settings {
    /// `None` unless OTEL_EXPORTER_OTLP_ENDPOINT is set and OTEL_SDK_DISABLED is not `true`.
    pub fn from_env() -> Option<Self> {
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        set("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the resource builder; only
        // when neither names the service does it fall back to ours.
        let detected = Resource::builder().build();
        let named = detected
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
        let resource = if named {
            detected
        } else {
            Resource::builder().with_service_name(SERVICE_NAME).build()
        };
        Some(Self { resource })
    }
}

/// The installed tracer and meter providers.
pub struct Providers {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl Providers {
    /// Builds the OTLP exporters and installs the providers and the propagator globally.
    pub fn install(settings: &Settings) -> Result<Self, String> {
        let spans = SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| format!("OTLP span exporter: {e}"))?;
        let metrics = MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| format!("OTLP metric exporter: {e}"))?;
        let tracer = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(settings.resource.clone())
            .build();
        let meter = SdkMeterProvider::builder()
            .with_periodic_exporter(metrics)
            .with_resource(settings.resource.clone())
            .build();
        global::set_text_map_propagator(TraceContextPropagator::new());
        global::set_tracer_provider(tracer.clone());
        global::set_meter_provider(meter.clone());
        crate::metrics::observe_in_otel(&global::meter(SERVICE_NAME));
        EXPORTING.store(true, Ordering::Relaxed);
        Ok(Self { tracer, meter })
    }

    /// The tracing layer that turns spans into OpenTelemetry spans.
    pub(super) fn layer(&self) -> BoxedLayer {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.tracer(SERVICE_NAME))
            .with_filter(filter::dynamic_filter_fn(exported))
            .boxed()
    }

    /// Flushes what is buffered and stops the exporters. Blocks.
    pub fn shutdown(self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(e) = self.tracer.shutdown() {
            eprintln!("tenant-plane: flushing spans: {e}");
        }
        if let Err(e) = self.meter.shutdown() {
            eprintln!("tenant-plane: flushing metrics: {e}");
        }
    }
}

/// What is exported: INFO and above (whatever the log filter says), except the SDK's own logs
/// (they would feed back into the exporter), and database spans only inside another span: the
/// background jobs' polling queries would otherwise each start a trace of their own.
fn exported(meta: &Metadata<'_>, cx: &Context<'_, Registry>) -> bool {
    if *meta.level() > Level::INFO || meta.target().starts_with("opentelemetry") {
        return false;
    }
    !is_db_span(meta) || cx.lookup_current().is_some()
}

/// Makes `span`, an RPC's, continue the trace of the caller's `traceparent` header, and names it
/// `service/method` as OpenTelemetry's RPC conventions ask. Does nothing unless exporting.
/// The span must declare `otel.name` and `otel.kind` (empty) and not have been entered yet.
pub fn continue_trace(
    span: &tracing::Span,
    headers: &http::HeaderMap,
    service: &str,
    method: &str,
) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if let Err(e) = span.set_parent(parent) {
        tracing::debug!(error = %e, "cannot continue the caller's trace");
    }
    span.record("otel.name", format!("{service}/{method}"));
    span.record("otel.kind", "server");
    span.set_attribute("rpc.system", "grpc");
    span.set_attribute("rpc.service", service.to_owned());
}

/// Records an RPC's gRPC status on its span; server-side failures mark the span as an error.
pub fn finish_rpc(span: &tracing::Span, code: tonic::Code) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    span.set_attribute("rpc.grpc.status_code", code as i64);
    // The OpenTelemetry gRPC conventions: only these codes are the server's fault.
    if matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    ) {
        span.set_status(Status::error(code.description()));
    }
}
