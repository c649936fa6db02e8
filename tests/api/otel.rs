//! OpenTelemetry export, end to end: the real binary (the tracing subscriber is global per
//! process, so not in-process) sends OTLP/gRPC to a collector this test serves.

use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use tenant_plane::proto::{self, tenant_service_client::TenantServiceClient};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{eventually, try_eventually};

/// The caller's trace, as a W3C traceparent carries it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// What the collector received.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) traces: Vec<ExportTraceServiceRequest>,
    pub(crate) metrics: Vec<ExportMetricsServiceRequest>,
}

pub(crate) enum Export {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

#[derive(Clone)]
struct Collector(mpsc::UnboundedSender<Export>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(Export::Traces(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let _ = self.0.send(Export::Metrics(request.into_inner()));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves the collector's trace and metrics services on 127.0.0.1:0.
pub(crate) async fn collector() -> (String, mpsc::UnboundedReceiver<Export>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let addr = listener.local_addr().expect("collector addr");
    let (tx, rx) = mpsc::unbounded_channel();
    let collector = Collector(tx);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (format!("http://{addr}"), rx)
}

/// The control plane as a process, stopped by SIGTERM (so it flushes) or killed when dropped.
pub(crate) struct Process {
    child: std::process::Child,
    pub(crate) channel: Channel,
}

impl Process {
    pub(crate) async fn start(data_dir: &Path, otel: &[(&str, &str)]) -> Self {
        Self::start_logging_to(data_dir, otel, std::process::Stdio::null()).await
    }

    /// [`Self::start`] with more settings in `env` (they win over the defaults) and its log
    /// lines (stderr) going to `log`.
    pub(crate) async fn start_logging_to(
        data_dir: &Path,
        env: &[(&str, &str)],
        log: impl Into<std::process::Stdio>,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
            .env_clear()
            .env("TENANT_PLANE_DATA_DIR", data_dir)
            .env("TENANT_PLANE_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANT_PLANE_METRICS_LISTEN", "off")
            .env("TENANT_PLANE_INSECURE", "true")
            .env("TENANT_PLANE_LOG", "warn")
            // Spans are sent every 100 ms rather than every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the binary");
        let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("uri");
        let serving = try_eventually("the binary serves", Duration::from_secs(10), async || {
            let channel = endpoint.connect().await.ok()?;
            let answer = HealthClient::new(channel.clone())
                .check(HealthCheckRequest::default())
                .await
                .ok()?;
            (answer.into_inner().status() == ServingStatus::Serving).then_some(channel)
        })
        .await;
        match serving {
            Ok(channel) => Self { child, channel },
            Err(timed_out) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                panic!("{timed_out}");
            }
        }
    }

    /// CreateTenant, as a caller in trace [`TRACE_ID`] calls it.
    async fn create_tenant_in_the_callers_trace(&self, slug: &str) {
        let mut request = tonic::Request::new(proto::CreateTenantRequest {
            tenant: Some(proto::Tenant {
                slug: slug.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().expect("an ASCII header"));
        TenantServiceClient::new(self.channel.clone())
            .create_tenant(request)
            .await
            .expect("create a tenant");
    }

    /// SIGTERM, and the exit within 10 s.
    pub(crate) async fn stop(mut self) {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = eventually(
            "the binary's exit after SIGTERM",
            Duration::from_secs(10),
            async || self.child.try_wait().expect("wait"),
        )
        .await;
        assert!(status.success(), "{status:?}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn drain(rx: &mut mpsc::UnboundedReceiver<Export>) -> Received {
    let mut received = Received::default();
    while let Ok(export) = rx.try_recv() {
        match export {
            Export::Traces(t) => received.traces.push(t),
            Export::Metrics(m) => received.metrics.push(m),
        }
    }
    received
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// Whether `span` descends from the span `ancestor` (by span ids, within `spans`).
fn descends_from(span: &Span, ancestor: &[u8], spans: &[&Span]) -> bool {
    let mut parent = span.parent_span_id.clone();
    for _ in 0..spans.len() {
        if parent == ancestor {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(next) => parent = next.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_continue_the_callers_trace_into_the_database_and_reach_the_collector() {
    // Arrange
    let (endpoint, mut exports) = collector().await;
    let dir = tempfile::tempdir().expect("data dir");
    let process = Process::start(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "tenant-plane-under-test"),
        ],
    )
    .await;

    // Act: a call in the caller's trace, then a stop, which flushes what is left.
    process.create_tenant_in_the_callers_trace("traced").await;
    process.stop().await;

    // Assert
    let received = drain(&mut exports);
    let resources: Vec<_> = received
        .traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .collect();
    assert!(!resources.is_empty(), "no spans reached the collector");
    for resource in &resources {
        let attributes = &resource.resource.as_ref().expect("a resource").attributes;
        assert_eq!(
            attribute(attributes, "service.name"),
            Some(&Value::StringValue("tenant-plane-under-test".into())),
            "OTEL_SERVICE_NAME names the service"
        );
    }
    let spans: Vec<&Span> = resources
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let rpc = spans
        .iter()
        .find(|s| s.name == "tenant.v1.TenantService/CreateTenant")
        .unwrap_or_else(|| panic!("no RPC span in the caller's trace: {spans:#?}"));
    assert_eq!(
        hex(&rpc.parent_span_id),
        CALLER_SPAN_ID,
        "the caller's span is its parent"
    );
    assert_eq!(rpc.kind(), SpanKind::Server);
    assert_eq!(
        attribute(&rpc.attributes, "rpc.grpc.status_code"),
        Some(&Value::IntValue(0))
    );
    let database: Vec<_> = spans
        .iter()
        .filter(|s| attribute(&s.attributes, "db.system").is_some())
        .collect();
    assert!(
        !database.is_empty(),
        "no database spans in the caller's trace: {spans:#?}"
    );
    for span in &database {
        assert!(
            descends_from(span, &rpc.span_id, &spans),
            "{} is not under the RPC span",
            span.name
        );
        assert_eq!(span.kind(), SpanKind::Client);
        assert_eq!(
            attribute(&span.attributes, "db.system"),
            Some(&Value::StringValue("sqlite".into()))
        );
        assert!(attribute(&span.attributes, "db.operation").is_some());
    }
    let metric_names: Vec<&str> = received
        .metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| m.name.as_str())
        .collect();
    assert!(
        metric_names.contains(&"rpc.server.call.duration"),
        "the RPC metrics are exported at the stop: {metric_names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_otel_sdk_disabled_nothing_is_exported() {
    let (endpoint, mut exports) = collector().await;
    let dir = tempfile::tempdir().expect("data dir");
    let process = Process::start(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    )
    .await;

    process.create_tenant_in_the_callers_trace("untraced").await;
    process.stop().await;

    let received = drain(&mut exports);
    assert!(received.traces.is_empty(), "spans were exported");
    assert!(received.metrics.is_empty(), "metrics were exported");
}
