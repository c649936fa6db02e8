//! A real PgBouncer in front of the test PostgreSQL server, by default in transaction-pooling
//! mode with one server connection per database and user: every client connection's
//! transactions run, one after another, on the same PostgreSQL session.
//!
//! * The binary is Debian's `pgbouncer` (`.ci/run` installs it); a test that needs it panics when
//!   it is missing, never passes silently.
//! * PgBouncer refuses to run as root: as root it runs as `postgres` (the user the test cluster
//!   runs as), through `setpriv`, which execs it (so killing the child kills PgBouncer).
//! * `auth_type = trust` (the test cluster trusts local connections too); the users it admits are
//!   the ones given, listed in its auth file.
//! * It listens on 127.0.0.1 on a port the kernel picked as free, and is killed when the value is
//!   dropped, or by a watchdog once the test process is gone.

use std::net::TcpListener;
use std::os::unix::{fs::PermissionsExt, process::CommandExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MISSING: &str = "the pooler tests need PgBouncer: apt-get install -y pgbouncer";

/// A running PgBouncer; killed on drop.
pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction-pooling mode in front of the PostgreSQL server of
    /// `postgres_url` (any database on it), admitting `users`.
    pub fn start(postgres_url: &str, users: &[&str]) -> Self {
        Self::start_in("transaction", 1, postgres_url, users)
    }

    /// [`Self::start`] with another `pool_mode` and `pool_size` server connections.
    pub fn start_in(mode: &str, pool_size: u32, postgres_url: &str, users: &[&str]) -> Self {
        Self::start_ignoring(mode, pool_size, postgres_url, users, "")
    }

    /// [`Self::start_in`], also ignoring the startup parameters `ignore` (comma-separated).
    pub fn start_ignoring(
        mode: &str,
        pool_size: u32,
        postgres_url: &str,
        users: &[&str],
        ignore: &str,
    ) -> Self {
        let binary = [
            "/usr/sbin/pgbouncer",
            "/usr/bin/pgbouncer",
            "/usr/local/bin/pgbouncer",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect(MISSING);
        let (host, port) = host_and_port(postgres_url);
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("tenant-plane-pgbouncer-")
            .tempdir()
            .expect("a temp dir for PgBouncer")
            .keep();
        let mut failure = String::new();
        for _ in 0..3 {
            let listen = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port for PgBouncer")
                .port();
            write_config(
                &dir,
                (mode, pool_size),
                (&host, port),
                listen,
                users,
                ignore,
            );
            if root {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .expect("PgBouncer's dir writable by postgres");
            }
            let mut command = if root {
                let mut command = Command::new("setpriv");
                command.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ]);
                command.arg(&binary);
                command
            } else {
                Command::new(&binary)
            };
            command
                .arg(dir.join("pgbouncer.ini"))
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            let child = command.spawn().expect("spawning PgBouncer");
            let mut bouncer = Self {
                child,
                port: listen,
                dir: dir.clone(),
            };
            spawn_watchdog(bouncer.child.id(), &dir);
            if bouncer.wait_listening() {
                return bouncer;
            }
            failure = bouncer.log();
        }
        panic!("PgBouncer did not start:\n{failure}");
    }

    /// `url` (a URL of the test server) with PgBouncer's address instead of the server's.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (user, rest) = rest.split_once('@').map_or(("", rest), |(u, r)| (u, r));
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        let user = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        format!("{scheme}://{user}127.0.0.1:{}{path}", self.port)
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Whether PgBouncer listens within five seconds; false as soon as it has exited.
    fn wait_listening(&mut self) -> bool {
        let port = self.port;
        let child = &mut self.child;
        super::try_eventually_blocking("PgBouncer listens", Duration::from_secs(5), || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_ok()
                .then_some(true)
        })
        .unwrap_or(false)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_config(
    dir: &Path,
    (mode, pool_size): (&str, u32),
    (host, port): (&str, u16),
    listen: u16,
    users: &[&str],
    ignore: &str,
) {
    let auth: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
    std::fs::write(dir.join("userlist.txt"), auth).expect("PgBouncer's auth file");
    let ini = format!(
        "[databases]\n\
         * = host={host} port={port}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {listen}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {auth}\n\
         pool_mode = {mode}\n\
         default_pool_size = {pool_size}\n\
         min_pool_size = 0\n\
         reserve_pool_size = 0\n\
         max_client_conn = 200\n\
         ignore_startup_parameters = extra_float_digits{ignore}\n\
         logfile = {log}\n\
         pidfile = {pid}\n",
        ignore = if ignore.is_empty() {
            String::new()
        } else {
            format!(",{ignore}")
        },
        auth = dir.join("userlist.txt").display(),
        log = dir.join("pgbouncer.log").display(),
        pid = dir.join("pgbouncer.pid").display(),
    );
    std::fs::write(dir.join("pgbouncer.ini"), ini).expect("PgBouncer's configuration");
    for file in ["userlist.txt", "pgbouncer.ini"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644))
            .expect("PgBouncer's files readable");
    }
}

/// The host and port of a `postgres://` URL.
fn host_and_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "5432"));
    (host.to_owned(), port.parse().expect("a port"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// Kills PgBouncer and removes its dir once this process is gone, even if it was killed.
#[allow(
    clippy::zombie_processes,
    reason = "the watchdog must outlive this process; init reaps it"
)]
fn spawn_watchdog(pid: u32, dir: &Path) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {pid} 2>/dev/null; rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawning PgBouncer's watchdog");
}
