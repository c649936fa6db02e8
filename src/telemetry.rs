//! Logging, and OpenTelemetry when it is asked for.
//!
//! Logs are human-readable or JSON lines on stderr, filtered by TENANT_PLANE_LOG (or RUST_LOG).
//! With OTEL_EXPORTER_OTLP_ENDPOINT set (and OTEL_SDK_DISABLED not `true`), spans and metrics
//! are also exported over OTLP/gRPC ([`otel`]): each RPC's span continues the caller's W3C
//! `traceparent`, and the database statements run for it are its children.
//!
//! Database spans (those with a `db.system` field: sea-orm's statement spans and ours) are for
//! traces only: the log layer never sees them, so log lines read the same with OpenTelemetry on
//! or off.

mod otel;
pub mod throttle;

use tracing::Metadata;
use tracing_subscriber::{EnvFilter, Layer, Registry, filter, filter::FilterExt, fmt, prelude::*};

use crate::config::LogFormat;

pub use otel::{continue_trace, finish_rpc};

/// The `service.name` of exported telemetry when OTEL_SERVICE_NAME does not set one.
pub const SERVICE_NAME: &str = "tenant-plane";

/// What [`init`] installed; shut it down before exiting so the last spans are sent.
#[must_use = "shut telemetry down on exit, or the last spans are lost"]
pub struct Telemetry {
    otel: Option<otel::Providers>,
}

impl Telemetry {
    /// Whether spans and metrics are exported over OTLP.
    pub fn exports(&self) -> bool {
        self.otel.is_some()
    }

    /// Flushes and stops the OpenTelemetry exporters, if any.
    pub async fn shutdown(self) {
        if let Some(providers) = self.otel {
            // The SDK blocks while it flushes; the exporter's connection lives on the runtime.
            if let Err(e) = tokio::task::spawn_blocking(move || providers.shutdown()).await {
                eprintln!("tenant-plane: stopping OpenTelemetry: {e}");
            }
        }
    }
}

/// Installs the global subscriber, and the OpenTelemetry providers if the environment asks for
/// them (see [`otel::Settings::from_env`]). Returns an error if a subscriber is already
/// installed (as in tests that start several servers in one process), which callers may ignore.
/// Call it inside the Tokio runtime: the OTLP exporter's connection is spawned on it.
pub fn init(format: LogFormat, level: &str) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .map_err(|e| format!("invalid log filter '{level}': {e}"))?;
    let logs = match format {
        LogFormat::Human => fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let logs = logs
        .with_filter(filter.and(filter::filter_fn(|meta| !is_db_span(meta))))
        .boxed();
    let mut layers = vec![logs];
    let providers = match otel::Settings::from_env() {
        Some(settings) => {
            let providers = otel::Providers::install(&settings)?;
            layers.push(providers.layer());
            Some(providers)
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Telemetry { otel: providers })
}

/// A span that stands for database work (it carries `db.system`).
fn is_db_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.fields().field("db.system").is_some()
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;
