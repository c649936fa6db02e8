//! A real server per test: the control plane started in-process on 127.0.0.1:0, over a fresh
//! catalog (a temp SQLite directory, or a new PostgreSQL database), driven by generated clients.

#![allow(dead_code)]

mod auth;
pub mod pgbouncer;
mod poll;
pub mod postgres;
mod storage;

pub use auth::*;
pub use poll::*;
pub use storage::*;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tenant_plane::clock::Clock;
use tenant_plane::service::{Job, JobPasses};
use tenant_plane::{app::App, config::Config, dataplane::TenantMigrations, proto};
use tokio::sync::oneshot;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

pub use proto::tenant_service_client::TenantServiceClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    /// The Prometheus endpoint, when the configuration has it on (port 0 by default in tests).
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub channel: Channel,
    pub catalog_url: String,
    pub db: Db,
    /// The server's clock (the system clock unless the test set another): advancing it is how
    /// a test lets time pass.
    pub clock: Clock,
    /// When the server's background jobs last passed, by its clock.
    pub passes: JobPasses,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
    _data_dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts a server after `adjust` has changed its configuration.
    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_migrations(db, TenantMigrations::builtin(), adjust).await
    }

    pub fn tenants(&self) -> TenantServiceClient<Conn> {
        TenantServiceClient::new(self.conn())
    }

    /// Every tenant row as (id, slug, state, revision), for "nothing changed" assertions.
    pub async fn catalog_snapshot(&self) -> Vec<(String, String, String, i64)> {
        let db = self.catalog().await;
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT CAST(id AS TEXT) AS id, slug, state, revision FROM tenants ORDER BY slug",
            ))
            .await
            .expect("read the catalog");
        let snapshot = rows
            .iter()
            .map(|r| {
                (
                    r.try_get::<String>("", "id").unwrap_or_default(),
                    r.try_get::<String>("", "slug").expect("slug"),
                    r.try_get::<String>("", "state").expect("state"),
                    r.try_get::<i64>("", "revision").expect("revision"),
                )
            })
            .collect();
        db.close().await.expect("close");
        snapshot
    }

    /// A separate connection to the catalog database, for assertions on what was stored.
    pub async fn catalog(&self) -> DatabaseConnection {
        Database::connect(&self.catalog_url)
            .await
            .expect("connect to the catalog")
    }

    /// Waits for a pass of `job` that began at `since` or later by the server's clock (after
    /// the test moved the clock, say); fails after ten seconds.
    pub async fn job_pass(&self, job: Job, since: DateTime<Utc>) {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.passes.completed_since(job, since),
        )
        .await
        .unwrap_or_else(|_| panic!("no pass of {job:?} since {since} within 10 s"));
    }

    /// Moves the server's clock on by `by`, and waits for a pass of `job` that saw the new
    /// time.
    pub async fn advance_and_pass(&self, by: chrono::TimeDelta, job: Job) {
        // Read before the move: a pass may begin before this test could read the clock again.
        let moved_to = self.clock.now() + by;
        self.clock.advance(by);
        self.job_pass(job, moved_to).await;
    }

    /// Stops the server as a signal would, and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.handle).await.expect("server task");
    }
}

fn sqlite_url(path: PathBuf) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Asserts `status` has `code` and a BadRequest violation naming `field`.
#[track_caller]
pub fn assert_bad_field(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
    assert!(
        bad.field_violations.iter().any(|v| v.field == field),
        "expected a violation of {field}, got {:?}",
        bad.field_violations
    );
}

/// A tenant with only a slug set.
pub fn new_tenant(slug: &str) -> proto::Tenant {
    proto::Tenant {
        slug: slug.to_owned(),
        ..Default::default()
    }
}

pub async fn create(server: &TestServer, slug: &str) -> proto::Tenant {
    server
        .tenants()
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(new_tenant(slug)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("create {slug}: {s:?}"))
        .into_inner()
}

/// For each named `async fn(&TestServer)`, a test module running it once against SQLite and
/// once against PostgreSQL, each on a fresh server and catalog.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::support::{Db, TestServer};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let server = TestServer::start(Db::Sqlite).await;
                    super::$name(&server).await;
                    server.stop().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let server = TestServer::start(Db::Postgres).await;
                    super::$name(&server).await;
                    server.stop().await;
                }
            }
        )*
    };
}
