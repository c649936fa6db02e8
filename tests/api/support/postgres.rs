//! Disposable PostgreSQL for the integration tests.
//!
//! Owns the one PostgreSQL server a test process uses, and gives each test its own
//! new, empty, uuid-named database on it ([`fresh_database_url`]). That way tests run
//! in parallel without sharing state.
//!
//! * If `TEST_DATABASE_URL` is set, that server is used and nothing is started.
//! * Otherwise a cluster is `initdb`-ed into a temp dir and started with `pg_ctl`. The
//!   binaries come from `PATH`, `/usr/lib/postgresql/<newest>/bin` or `pg_config --bindir`.
//!   If none are found, the test panics. It never passes silently.
//! * Root: `initdb`, `pg_ctl` and `postgres` refuse to run as root, and CI containers run
//!   tests as root. So as root they run as the `postgres` user (`runuser`, falling back to `su`).
//!   That user is created if it is missing, and the data dir is chowned to it.
//! * Speed: `--no-sync`, `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`. The
//!   data is thrown away, and disk syncs are slow on the test machines.
//! * Ports: the server listens only on 127.0.0.1, on a port the kernel picked as free. Its
//!   unix socket is in the data dir, so `/var/run/postgresql` is not needed and parallel
//!   runs never collide.
//! * Cleanup: a detached watchdog shell polls the test process. Once the process is gone,
//!   the watchdog stops the server (`-m immediate`) and deletes the temp dir. Its stdio is
//!   `/dev/null`, so `cargo test` never waits on it.
//!
//! The blocking process work runs synchronously, once, under a `OnceLock`. Each database
//! is created over a short-lived connection that is closed before returning, because
//! sea-orm pools are bound to the tokio runtime that opened them and every
//! `#[tokio::test]` has its own runtime.

use std::net::TcpListener;
use std::os::unix::{fs::PermissionsExt, process::CommandExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sea_orm::{ConnectOptions, ConnectionTrait, Database};

const NO_SERVER: &str = "PostgreSQL tests need a server: install it (Debian: apt-get install -y postgresql) \
                         or set TEST_DATABASE_URL=postgres://user@host:port/db";

/// URL of the maintenance database (`postgres`) on the shared server. The server is
/// started on first use. With `TEST_DATABASE_URL` set, that URL is returned unchanged.
pub fn server_admin_url() -> String {
    static ADMIN_URL: OnceLock<String> = OnceLock::new();
    ADMIN_URL
        .get_or_init(|| match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => start_cluster(),
        })
        .clone()
}

/// Creates a new, empty database named `t_<uuid>` on the shared server and returns its URL.
pub async fn fresh_database_url() -> String {
    let admin_url = server_admin_url();
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut options = ConnectOptions::new(admin_url.clone());
    options.max_connections(1).sqlx_logging(false);
    let db = Database::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connecting to test PostgreSQL at {admin_url}: {e}"));
    db.execute_unprepared(&format!(r#"CREATE DATABASE "{name}""#))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url}: {e}"));
    db.close()
        .await
        .expect("closing the admin connection to test PostgreSQL");
    with_database(&admin_url, &name)
}

/// `url` with its database path replaced by `database`. Any `?query` is kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{database}{query}", &base[..path])
}

/// Runs initdb and `pg_ctl start` for a throwaway cluster and returns its admin URL.
fn start_cluster() -> String {
    let bin = find_bindir().expect(NO_SERVER);
    let root = is_root();
    if root
        && !Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        run(vec![
            tool("useradd"),
            "--system".into(),
            "--no-create-home".into(),
            "postgres".into(),
        ]);
    }
    let tmp = tempfile::Builder::new()
        .prefix("tenant-plane-pg-")
        .tempdir()
        .expect("creating a temp dir for the test PostgreSQL cluster")
        .keep(); // the watchdog deletes it once the test process has exited
    let data = tmp.join("data");
    let pg_ctl = path_str(&bin.join("pg_ctl")).to_owned();
    let data_s = path_str(&data).to_owned();
    spawn_watchdog(root, &pg_ctl, &data_s, path_str(&tmp));
    std::fs::create_dir(&data).expect("creating the PostgreSQL data dir");
    if root {
        // The `postgres` user must be able to traverse the root-owned 0700 temp dir, and must own the data dir.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o711))
            .expect("making the PostgreSQL temp dir traversable");
        run(vec![
            "chown".into(),
            "-R".into(),
            "postgres:".into(),
            data_s.clone(),
        ]);
    }
    let initdb = path_str(&bin.join("initdb")).to_owned();
    let args = [
        "-D",
        &data_s,
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C",
    ];
    run(as_server_user(root, argv(&initdb, &args)));

    let log = format!("{data_s}/server.log");
    let mut failure = String::new();
    for _ in 0..3 {
        // The port may be taken again before postgres binds it. If so, retry with a new one.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("picking a free TCP port for PostgreSQL")
            .port();
        let opts = format!(
            "-F -k {} -c listen_addresses=127.0.0.1 -p {port} -c max_connections=300 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            sh_quote(&data_s)
        );
        let args = [
            "-D", &data_s, "-l", &log, "-w", "-t", "60", "-o", &opts, "start",
        ];
        match try_run(as_server_user(root, argv(&pg_ctl, &args))) {
            Ok(()) => return format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            Err(e) => failure = e,
        }
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    panic!("starting test PostgreSQL failed: {failure}\n--- {log} ---\n{log_text}");
}

/// Stops the server and removes `tmp` once this process has exited, even if it was killed.
/// The watchdog runs as the current user: a `postgres`-owned `kill -0` could not see a root test process.
#[allow(
    clippy::zombie_processes,
    reason = "the watchdog must outlive this process; init reaps it"
)]
fn spawn_watchdog(root: bool, pg_ctl: &str, data: &str, tmp: &str) {
    let stop = shell_join(&as_server_user(
        root,
        argv(pg_ctl, &["-D", data, "stop", "-m", "immediate"]),
    ));
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {tmp}",
        pid = std::process::id(),
        tmp = sh_quote(tmp),
    );
    Command::new("sh")
        .args(["-c", &script])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0) // so a Ctrl-C sent to the test run does not kill it before it cleans up
        .spawn()
        .expect("spawning the PostgreSQL cleanup watchdog");
}

/// The first directory holding `initdb`, `pg_ctl` and `postgres`: `PATH`, then the newest
/// `/usr/lib/postgresql/*/bin`, then `pg_config --bindir`.
fn find_bindir() -> Option<PathBuf> {
    let complete = |dir: &PathBuf| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| dir.join(t).is_file())
    };
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let version = e
                .file_name()
                .to_string_lossy()
                .split('.')
                .filter_map(|p| p.parse().ok())
                .collect();
            (version, e.path().join("bin"))
        })
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    let pg_config = || {
        let out = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    path_dirs()
        .into_iter()
        .chain(versioned.into_iter().map(|(_, dir)| dir))
        .chain(std::iter::once_with(pg_config).flatten())
        .find(complete)
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// Absolute path of a system tool, searching the sbin dirs too: they may be missing from `PATH`.
fn tool(name: &str) -> String {
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    path_dirs()
        .into_iter()
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map_or_else(|| name.to_owned(), |p| path_str(&p).to_owned())
}

/// Whether the effective uid is 0, read from `/proc/self/status` (or `id -u`). No libc needed.
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    match euid {
        Some(euid) => euid == "0",
        None => Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0"),
    }
}

/// Wraps `argv` so that it runs as `postgres` when we are root.
fn as_server_user(root: bool, argv: Vec<String>) -> Vec<String> {
    if !root {
        return argv;
    }
    let runuser = tool("runuser");
    if Path::new(&runuser).is_absolute() {
        [runuser, "-u".into(), "postgres".into(), "--".into()]
            .into_iter()
            .chain(argv)
            .collect()
    } else {
        ["su", "postgres", "-s", "/bin/sh", "-c"]
            .iter()
            .map(|s| s.to_string())
            .chain([shell_join(&argv)])
            .collect()
    }
}

fn argv(program: &str, args: &[&str]) -> Vec<String> {
    std::iter::once(program)
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect()
}

fn run(argv: Vec<String>) {
    if let Err(e) = try_run(argv) {
        panic!("setting up test PostgreSQL failed: {e}");
    }
}

fn try_run(argv: Vec<String>) -> Result<(), String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir("/") // the postgres user may not be able to read the test's cwd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}` could not be run: {e}", argv.join(" ")))?;
    if out.status.success() {
        return Ok(());
    }
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    Err(format!(
        "`{}` exited with {}\n{stdout}{stderr}",
        argv.join(" "),
        out.status
    ))
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("PostgreSQL paths must be valid UTF-8")
}
