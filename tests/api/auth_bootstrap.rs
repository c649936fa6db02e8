//! The first start without configured tokens: an admin token is made, shown once — on a
//! terminal, else written to a file only its user may read — and kept only as a hash;
//! configuring tokens retires it. Run as the real binary, as an operator would.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use tenant_plane::auth::hash_token;
use tenant_plane::proto::ListTenantsRequest;
use tonic::{Code, transport::Channel};

use crate::support::{TenantServiceClient, with_token};

/// The binary, serving on its own port, with its stderr read line by line.
struct Binary {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Binary {
    fn start(data_dir: &Path, tokens: Option<&str>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenant-plane"));
        command
            .env_clear()
            .env("TENANT_PLANE_DATA_DIR", data_dir)
            .env("TENANT_PLANE_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANT_PLANE_METRICS_LISTEN", "off")
            .env("TENANT_PLANE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(tokens) = tokens {
            command.env("TENANT_PLANE_AUTH_TOKENS", tokens);
        }
        let mut child = command.spawn().expect("start the binary");
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, port, lines }
    }

    /// Every stderr line up to the end of the start banner (the line with `list`).
    fn banner(&self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let done = line.contains(" list");
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no start banner; stderr so far: {seen:#?}"),
            }
        }
    }

    async fn tenants(&self, token: &str) -> TenantServiceClient<crate::support::Conn> {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        TenantServiceClient::new(with_token(channel, token))
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "stops cleanly: {status:?}");
    }
}

/// The token the banner shows, if any.
fn shown_token(banner: &[String]) -> Option<String> {
    banner.iter().find_map(|line| {
        line.trim()
            .strip_prefix("export TENANT_PLANE_TOKEN=")
            .map(str::to_owned)
    })
}

/// The token the first start wrote to the data directory, which only its user may read.
fn saved_token(dir: &Path) -> String {
    let path = dir.join(tenant_plane::auth::ADMIN_TOKEN_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("no token file {}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    std::fs::read_to_string(&path)
        .expect("the token file")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_writes_an_admin_token_to_a_private_file_and_keeps_only_its_hash() {
    let dir = tempfile::tempdir().expect("dir");
    let first = Binary::start(dir.path(), None);
    let banner = first.banner();
    // stderr is a pipe here, as in a container: the token goes to a file, the log says where.
    let token = saved_token(dir.path());
    assert!(token.starts_with("tpa_"), "{token}");
    let path = dir.path().join(tenant_plane::auth::ADMIN_TOKEN_FILE);
    assert_eq!(
        shown_token(&banner),
        Some(format!("$(cat {})", path.display())),
        "{banner:#?}"
    );
    assert!(
        !banner.iter().any(|line| line.contains(&token)),
        "the token is not in the log: {banner:#?}"
    );
    assert!(
        banner
            .iter()
            .any(|line| line.contains(&path.display().to_string())),
        "the log says where the token is: {banner:#?}"
    );
    let listed = first
        .tenants(&token)
        .await
        .list_tenants(ListTenantsRequest::default())
        .await;
    assert!(listed.is_ok(), "the token works: {listed:?}");
    let refused = first
        .tenants("tpa_wrong")
        .await
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    first.stop();

    // Only the hash is stored: the catalog file never holds the token itself.
    let catalog = std::fs::read(dir.path().join("catalog.sqlite3")).expect("catalog file");
    let holds = |needle: &str| {
        catalog
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(!holds(&token), "the token is not stored in clear");
    assert!(holds(&hash_token(&token)), "its SHA-256 is");

    // The next start shows no token, and the stored one still works.
    let second = Binary::start(dir.path(), None);
    let banner = second.banner();
    assert_eq!(shown_token(&banner), None, "{banner:#?}");
    assert!(
        banner.iter().any(|l| l.contains("authorization: Bearer")),
        "it says how to call: {banner:#?}"
    );
    let listed = second
        .tenants(&token)
        .await
        .list_tenants(ListTenantsRequest::default())
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    second.stop();

    // Configured tokens retire the generated one.
    let ops = "tpa_ops-token-0123456789abcdefghijklmnopqrstuvwxyz012";
    let entry = format!("admin:ops:{}", hash_token(ops));
    let third = Binary::start(dir.path(), Some(&entry));
    let banner = third.banner();
    assert_eq!(shown_token(&banner), None, "{banner:#?}");
    let retired = third
        .tenants(&token)
        .await
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(retired.code(), Code::Unauthenticated, "{retired:?}");
    let listed = third
        .tenants(ops)
        .await
        .list_tenants(ListTenantsRequest::default())
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    third.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_entry_stops_the_start_without_quoting_it() {
    let dir = tempfile::tempdir().expect("dir");
    let pasted = "tpa_pasted-the-token-instead-of-its-hash";
    let mut binary = Binary::start(dir.path(), Some(&format!("admin:ops:{pasted}")));
    let status = binary.child.wait().expect("wait");
    assert!(!status.success(), "the start is refused");
    // The process has ended, so its stderr ends too.
    let stderr: Vec<String> = binary.lines.iter().collect();
    let text = stderr.join("\n");
    assert!(text.contains("TENANT_PLANE_AUTH_TOKENS"), "{text}");
    assert!(
        !text.contains(pasted),
        "the secret is never printed: {text}"
    );
}

#[test]
fn the_token_command_prints_a_token_and_its_entry() {
    let output = Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
        .args(["token", "--role", "service", "--name", "billing"])
        .output()
        .expect("run tenant-plane token");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(token.starts_with("tpa_"), "{token}");
    assert!(
        stderr.contains(&format!("service:billing:{}", hash_token(&token))),
        "{stderr}"
    );
}
