//! The metrics endpoint: plain HTTP/1.1 on its own port, `GET /metrics` and nothing else.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::scrape::CatalogSeries;
use crate::config::Listen;

/// Connections served at once: a few Prometheus servers and a curl or two. Others are closed
/// at once rather than queued.
const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request headers (slow clients hold a connection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one scrape reads: the registry of every series and the catalog gauges to refresh.
struct Exporter {
    registry: Registry,
    catalog: CatalogSeries,
}

impl Exporter {
    async fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != "/metrics" {
            return text(StatusCode::NOT_FOUND, "the metrics are at /metrics\n");
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        self.catalog.refresh().await;
        let mut body = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            );
        }
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(OPENMETRICS),
        );
        response
    }
}

fn text(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response
}

/// The metrics endpoint of one server: bound early (so its port is known), served with it.
pub struct Endpoint {
    listen: Listen,
    refusals: super::AuthRefusals,
    exporter: Arc<Exporter>,
    bound: Mutex<Option<TcpListener>>,
}

impl Endpoint {
    /// The counter of calls refused for want of credentials, which this endpoint exports.
    pub fn auth_refusals(&self) -> super::AuthRefusals {
        self.refusals.clone()
    }

    pub(super) fn new(
        listen: Listen,
        registry: Registry,
        catalog: CatalogSeries,
        refusals: super::AuthRefusals,
    ) -> Self {
        Self {
            listen,
            refusals,
            exporter: Arc::new(Exporter { registry, catalog }),
            bound: Mutex::new(None),
        }
    }

    /// Binds the configured address, once; `None` when the endpoint is off.
    pub async fn bind(&self) -> std::io::Result<Option<SocketAddr>> {
        let Listen::On(addr) = self.listen else {
            return Ok(None);
        };
        if let Some(addr) = self.local_addr() {
            return Ok(Some(addr));
        }
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        *self.lock() = Some(listener);
        Ok(Some(local))
    }

    /// The bound address, once [`Endpoint::bind`] has succeeded.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.lock().as_ref().and_then(|l| l.local_addr().ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<TcpListener>> {
        // Only ever holds an Option that is set or taken whole: a panic cannot leave it torn.
        self.bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves until `stop` completes (binding first if need be); scrapes in progress are cut
    /// off then. Does nothing when the endpoint is off.
    pub async fn serve(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        self.bind().await?;
        let Some(listener) = self.lock().take() else {
            return Ok(());
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving Prometheus metrics on /metrics");
        }
        let mut connections = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) if connections.len() < MAX_CONNECTIONS => {
                        connections.spawn(serve_connection(stream, self.exporter.clone()));
                    }
                    Ok(_) => tracing::warn!("too many metrics connections; closing a new one"),
                    Err(error) => {
                        tracing::warn!(%error, "accepting a metrics connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
        Ok(())
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, exporter: Arc<Exporter>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let exporter = exporter.clone();
        async move { Ok::<_, Infallible>(exporter.answer(&request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "metrics connection ended");
    }
}
