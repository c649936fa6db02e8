//! Rollouts across replicas and crashes: every tenant is migrated exactly once, and a killed
//! server's claims are taken over once their lease has run out by the clock of the server that
//! takes them.

use std::time::Duration;

use chrono::TimeDelta;
use sea_orm::{ConnectionTrait, Database, Statement};
use tenant_plane::clock::Clock;
use tenant_plane::proto::{
    self, migration_service_client::MigrationServiceClient,
    provisioning_service_client::ProvisioningServiceClient,
};
use tonic::transport::Channel;

use crate::rollout_fleet::{SIXTH, all, finish, fleet, six_migrations, start, version_of};
use crate::support::{
    ADMIN_TOKEN, Conn, Db, TestServer, create, eventually, token_entries, try_eventually,
    with_token,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rollouts_started_at_once_on_two_replicas_migrate_every_tenant_exactly_once() {
    let (a, tenants) = fleet(Db::Postgres, 12).await;
    let catalog = a.catalog_url.clone();
    let b = TestServer::start_with_migrations(Db::Postgres, six_migrations(), |c| {
        c.database_url = Some(catalog)
    })
    .await;
    let request = proto::StartRolloutRequest {
        selector: all(),
        max_concurrency: 3,
        ..Default::default()
    };

    let (first, second) = tokio::join!(start(&a, request.clone()), start(&b, request));
    let (first, second) = tokio::join!(finish(&a, &first), finish(&b, &second));

    for ended in [&first, &second] {
        assert_eq!(ended.state(), proto::rollout::State::Succeeded, "{ended:?}");
    }
    let migrated = |r: &proto::Rollout| r.counts.as_ref().map_or(0, |c| c.migrated);
    assert_eq!(
        migrated(&first) + migrated(&second),
        12,
        "each tenant migrated by exactly one of the rollouts"
    );
    let db = a.catalog().await;
    let per_tenant = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT tenant_id, count(*) AS n FROM rollout_targets WHERE state = 'MIGRATED' GROUP BY tenant_id",
        ))
        .await
        .expect("count migrations per tenant");
    assert_eq!(per_tenant.len(), 12);
    assert!(
        per_tenant
            .iter()
            .all(|row| row.try_get::<i64>("", "n").ok() == Some(1))
    );
    for tenant in &tenants {
        assert_eq!(version_of(&a, tenant).await, SIXTH);
        assert_eq!(a.tenant_versions(tenant).await.len(), 6);
    }
    db.close().await.expect("close");
    b.stop().await;
    a.stop().await;
}

/// The control plane as a process of its own, on the given catalog.
pub(crate) struct Process {
    child: std::process::Child,
    channel: Channel,
    _data_dir: tempfile::TempDir,
}

impl Process {
    pub(crate) async fn start(catalog_url: &str) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
            .env_clear()
            .env("DATABASE_URL", catalog_url)
            .env("TENANT_PLANE_DATA_DIR", data_dir.path())
            .env("TENANT_PLANE_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANT_PLANE_METRICS_LISTEN", "off")
            .env("TENANT_PLANE_ROLLOUT_LEASE_SECS", "2")
            .env("TENANT_PLANE_LOG", "warn")
            .env("TENANT_PLANE_AUTH_TOKENS", token_entries().join(","))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the binary");
        let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("uri");
        let listening = try_eventually("the binary listens", Duration::from_secs(10), async || {
            endpoint.connect().await.ok()
        })
        .await;
        match listening {
            Ok(channel) => Self {
                child,
                channel,
                _data_dir: data_dir,
            },
            Err(timed_out) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                panic!("{timed_out}");
            }
        }
    }

    pub(crate) fn migrations(&self) -> MigrationServiceClient<Conn> {
        MigrationServiceClient::new(with_token(self.channel.clone(), ADMIN_TOKEN))
    }

    pub(crate) fn provisioning(&self) -> ProvisioningServiceClient<Conn> {
        ProvisioningServiceClient::new(with_token(self.channel.clone(), ADMIN_TOKEN))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_a_killed_server_and_a_restart_finishes_it() {
    const TENANTS: usize = 40;
    let setup = TestServer::start(Db::Postgres).await;
    let mut schemas = Vec::new();
    for i in 0..TENANTS {
        let tenant = create(&setup, &format!("crash-{i}")).await;
        setup
            .migrations()
            .migrate_tenant(proto::MigrateTenantRequest {
                tenant: tenant.name.clone(),
                target_version: "m20261123_100001_create_users".into(),
                direction: proto::MigrationDirection::Down as i32,
                ..Default::default()
            })
            .await
            .expect("back to the first migration");
        schemas.push(tenant.schema_name);
    }
    let catalog = setup.catalog_url.clone();
    setup.stop().await;

    let (second, rollout) = killed_midway(
        &catalog,
        proto::StartRolloutRequest {
            selector: all(),
            max_concurrency: 1,
            ..Default::default()
        },
    )
    .await;
    let get = proto::GetRolloutRequest {
        name: rollout.name.clone(),
    };
    let mut events = second
        .migrations()
        .watch_rollout(proto::WatchRolloutRequest {
            name: rollout.name.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(event) =
        tokio::time::timeout_at(deadline, tokio_stream::StreamExt::next(&mut events))
            .await
            .expect("the restarted server finishes the rollout within 60 s")
    {
        if matches!(
            event.expect("event").kind,
            Some(proto::rollout_event::Kind::Finished(_))
        ) {
            break;
        }
    }

    let ended = second
        .migrations()
        .get_rollout(get)
        .await
        .expect("get")
        .into_inner();
    assert_eq!(ended.state(), proto::rollout::State::Succeeded, "{ended:?}");
    let counts = ended.counts.expect("counts");
    assert_eq!(
        (counts.migrated + counts.skipped, counts.failed),
        (TENANTS as i32, 0)
    );
    let db = Database::connect(&catalog).await.expect("catalog");
    for schema in schemas {
        let versions = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT version FROM \"{schema}\".seaql_migrations ORDER BY version"),
            ))
            .await
            .expect("versions");
        assert_eq!(
            versions.len(),
            5,
            "{schema} is at the target, each migration applied once"
        );
    }
    db.close().await.expect("close");
    second.stop().await;
}

/// Starts `request` on a server process of `catalog`, kills it (SIGKILL) once three tenants are
/// migrated, and starts the server that takes over; checks the kill left the rollout RUNNING.
/// That server reads its clock a lease later: the killed server's leases have run out for it
/// at once, as they would for any server after a lease's wait.
pub(crate) async fn killed_midway(
    catalog: &str,
    request: proto::StartRolloutRequest,
) -> (TestServer, proto::Rollout) {
    let first = Process::start(catalog).await;
    let rollout = first
        .migrations()
        .start_rollout(request)
        .await
        .expect("start")
        .into_inner();
    let get = proto::GetRolloutRequest {
        name: rollout.name.clone(),
    };
    eventually(
        "three tenants migrated",
        Duration::from_secs(30),
        async || {
            let now = first
                .migrations()
                .get_rollout(get.clone())
                .await
                .expect("get")
                .into_inner();
            now.counts
                .as_ref()
                .is_some_and(|c| c.migrated >= 3)
                .then_some(())
        },
    )
    .await;
    drop(first); // SIGKILL, mid-rollout
    let catalog = catalog.to_owned();
    let second = TestServer::start_with(Db::Postgres, |c| {
        c.database_url = Some(catalog);
        c.rollout_lease_secs = 2;
        c.clock = Clock::system().offset_by(TimeDelta::seconds(3));
    })
    .await;
    let midway = second
        .migrations()
        .get_rollout(get)
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        midway.state(),
        proto::rollout::State::Running,
        "the kill left work to do: {midway:?}"
    );
    (second, rollout)
}
