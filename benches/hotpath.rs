//! Hot-path benchmark: ResolveTenant, CheckQuota and ConsumeQuota, each as a ratio to
//! grpc.health.v1.Health/Check measured on the same server, with the same client and the same
//! concurrency, in the same run; then, with a large catalog, the server's resident memory and
//! the fleet view (ComponentService.GetFleetStatus, every tenant's versions counted from the
//! catalog).
//!
//! The server is the release binary, run as its own process (so its memory is its own), on a
//! throwaway PostgreSQL like the tests' (or TEST_DATABASE_URL); BENCH_DB=sqlite runs the
//! throughput part on the embedded SQLite catalog instead.
//!
//! Run: `cargo bench --bench hotpath`. Knobs: BENCH_SECS (seconds per RPC and round, default
//! 2), BENCH_ROUNDS (rounds of all four RPCs, default 3; figures are the medians),
//! BENCH_CONCURRENCY (callers in flight, default 32), BENCH_TENANTS (tenants the calls are
//! spread over, default 100), BENCH_CATALOG_TENANTS (catalog size for the memory and fleet-view
//! figures, default 100000; 0 skips them).

#[path = "../tests/api/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use tenant_plane::auth::hash_token;
use tenant_plane::proto::{
    self, component_service_client::ComponentServiceClient,
    quota_service_client::QuotaServiceClient, tenant_service_client::TenantServiceClient,
};
use tenant_plane_client::BearerToken;
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server process, stopped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Server {
    process: Process,
    channel: Channel,
    _dir: tempfile::TempDir,
}

/// The bench's tokens: the admin makes the tenants, the service calls the hot path, as a real
/// deployment's callers would (authentication stays on).
const ADMIN_TOKEN: &str = "tpa_bench-admin-0123456789abcdefghijklmnopqrstuvwxyz";
const SERVICE_TOKEN: &str = "tpa_bench-service-0123456789abcdefghijklmnopqrstuvwxyz";

type Conn = InterceptedService<Channel, BearerToken>;

impl Server {
    fn admin(&self) -> Conn {
        InterceptedService::new(
            self.channel.clone(),
            BearerToken::new(ADMIN_TOKEN).expect("ascii"),
        )
    }

    fn service(&self) -> Conn {
        InterceptedService::new(
            self.channel.clone(),
            BearerToken::new(SERVICE_TOKEN).expect("ascii"),
        )
    }
}

impl Server {
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Starts the release binary on a free port and waits until it answers.
async fn start(database_url: Option<&str>) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenant-plane"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("TENANT_PLANE_DATA_DIR", dir.path())
        .env("TENANT_PLANE_LOG", "warn")
        .env("TENANT_PLANE_STORAGE_MEASURE_INTERVAL_SECS", "0")
        .env("TENANT_PLANE_METRICS_LISTEN", "off")
        .env(
            "TENANT_PLANE_AUTH_TOKENS",
            format!(
                "admin:bench-admin:{},service:bench-service:{}",
                hash_token(ADMIN_TOKEN),
                hash_token(SERVICE_TOKEN)
            ),
        )
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null());
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let process = Process(command.spawn().expect("start the server binary"));
    let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("uri");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel.clone());
            if health.check(HealthCheckRequest::default()).await.is_ok() {
                return Server {
                    process,
                    channel,
                    _dir: dir,
                };
            }
        }
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Clone, Copy)]
struct Figures {
    calls_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs `call` from `concurrency` tasks for `secs` seconds; every call must succeed.
async fn measure<F, Fut>(secs: u64, concurrency: u64, call: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let call = Arc::new(call);
    let warm_until = Instant::now() + Duration::from_millis(500);
    let until = warm_until + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = worker;
            loop {
                let started = Instant::now();
                if started >= until {
                    break;
                }
                call(n).await.expect("a benchmarked call fails");
                if started >= warm_until {
                    latencies.push(started.elapsed().as_micros() as u32);
                }
                n += concurrency;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
    };
    Figures {
        calls_per_sec: all.len() as f64 / secs as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

async fn throughput(
    server: &Server,
    secs: u64,
    rounds_wanted: usize,
    concurrency: u64,
    tenants: u64,
) {
    let mut admin = TenantServiceClient::new(server.admin());
    let mut slugs = Vec::new();
    for i in 0..tenants {
        let slug = format!("bench-{i}");
        admin
            .create_tenant(proto::CreateTenantRequest {
                tenant: Some(proto::Tenant {
                    slug: slug.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create a tenant");
        // A limit no run reaches: every consumption is admitted, and counted.
        admin
            .update_tenant(proto::UpdateTenantRequest {
                tenant: Some(proto::Tenant {
                    name: format!("tenants/{slug}"),
                    limit_overrides: [("messages_per_day".to_owned(), 1_000_000_000_000)].into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["limit_overrides".into()],
                }),
            })
            .await
            .expect("raise the limit");
        slugs.push(slug);
    }
    let slugs = Arc::new(slugs);
    let pick =
        move |slugs: &Arc<Vec<String>>, n: u64| slugs[(n % slugs.len() as u64) as usize].clone();

    let channel = server.channel.clone();
    let health = move || {
        let channel = channel.clone();
        move |_n: u64| {
            let mut client = HealthClient::new(channel.clone());
            async move {
                client
                    .check(HealthCheckRequest::default())
                    .await
                    .map(|_| ())
            }
        }
    };
    let (c, s) = (server.service(), slugs.clone());
    let resolve = move |n: u64| {
        let mut client = TenantServiceClient::new(c.clone());
        let slug = pick(&s, n);
        async move {
            client
                .resolve_tenant(proto::ResolveTenantRequest {
                    key: Some(proto::resolve_tenant_request::Key::Slug(slug)),
                })
                .await
                .map(|_| ())
        }
    };
    let (c, s) = (server.service(), slugs.clone());
    let check = move |n: u64| {
        let mut client = QuotaServiceClient::new(c.clone());
        let tenant = format!("tenants/{}", pick(&s, n));
        async move {
            client
                .check_quota(proto::CheckQuotaRequest {
                    tenant,
                    resource: "messages_per_day".into(),
                    amount: 1,
                })
                .await
                .map(|_| ())
        }
    };
    let (c, s) = (server.service(), slugs.clone());
    let consume = move |n: u64| {
        let mut client = QuotaServiceClient::new(c.clone());
        let tenant = format!("tenants/{}", pick(&s, n));
        async move {
            client
                .consume_quota(proto::ConsumeQuotaRequest {
                    tenant,
                    items: vec![proto::QuotaItem {
                        resource: "messages_per_day".into(),
                        amount: 1,
                    }],
                    request_id: String::new(),
                })
                .await
                .map(|_| ())
        }
    };

    // Rounds of all four, in turn, so drift (caches warming, the machine's other work) falls on
    // every RPC alike; each figure is the median over the rounds.
    let mut rounds: [Vec<Figures>; 4] = Default::default();
    // For profiling the server under one RPC alone (health, resolve, check or consume); prints
    // only its figures.
    let only = std::env::var("BENCH_ONLY").ok();
    for _ in 0..rounds_wanted {
        match only.as_deref() {
            Some("health") => rounds[0].push(measure(secs, concurrency, health()).await),
            Some("resolve") => rounds[1].push(measure(secs, concurrency, resolve.clone()).await),
            Some("check") => rounds[2].push(measure(secs, concurrency, check.clone()).await),
            Some("consume") => rounds[3].push(measure(secs, concurrency, consume.clone()).await),
            _ => {}
        }
        if only.is_some() {
            continue;
        }
        rounds[0].push(measure(secs, concurrency, health()).await);
        rounds[1].push(measure(secs, concurrency, resolve.clone()).await);
        rounds[2].push(measure(secs, concurrency, check.clone()).await);
        rounds[3].push(measure(secs, concurrency, consume.clone()).await);
    }
    let median = |figures: &mut Vec<Figures>| {
        figures.sort_by(|a, b| a.calls_per_sec.total_cmp(&b.calls_per_sec));
        let mid = &figures[figures.len() / 2];
        *mid
    };
    if let Some(only) = only {
        for f in rounds.iter().flatten() {
            println!(
                "{only} alone: {:.0}/s, p50 {:.0} µs, p99 {:.0} µs",
                f.calls_per_sec, f.p50_us, f.p99_us
            );
        }
        return;
    }
    let [mut h, mut r, mut c, mut q] = rounds;
    let (base, resolve, check, consume) = (
        median(&mut h),
        median(&mut r),
        median(&mut c),
        median(&mut q),
    );
    println!(
        "{concurrency} callers, {tenants} tenants, median of {rounds_wanted} rounds of {secs}s per RPC"
    );
    println!(
        "{:<24} {:>10} {:>8} {:>9} {:>9} {:>8}",
        "rpc", "calls/s", "ratio", "p50 µs", "p99 µs", "target"
    );
    for (name, f, target) in [
        ("Health/Check", &base, 1.0),
        ("ResolveTenant", &resolve, 0.8),
        ("CheckQuota", &check, 0.8),
        ("ConsumeQuota", &consume, 0.5),
    ] {
        let ratio = f.calls_per_sec / base.calls_per_sec;
        println!(
            "{name:<24} {:>10.0} {:>7.2}x {:>9.0} {:>9.0} {:>7}{}",
            f.calls_per_sec,
            ratio,
            f.p50_us,
            f.p99_us,
            format!("≥{target}x"),
            if ratio >= target { "" } else { "  MISSED" }
        );
    }
}

/// Fills the catalog with `count` ACTIVE tenants in one statement.
async fn fill_catalog(url: &str, count: u64) {
    let db = Database::connect(url).await.expect("catalog");
    db.execute_unprepared(&format!(
        "INSERT INTO tenants (id, slug, display_name, plan, isolation, state, labels, limit_overrides, \
           schema_name, revision, create_time, update_time) \
         SELECT gen_random_uuid(), 'many-' || g, 'Tenant ' || g, 'free', 'schema', 'ACTIVE', \
           '{{\"tier\": \"bulk\"}}'::jsonb, '{{}}'::jsonb, 'tenant_many_' || g, 1, now(), now() \
         FROM generate_series(1, {count}) AS g"
    ))
    .await
    .expect("fill the catalog");
    db.close().await.expect("close");
}

async fn memory(url: &str, count: u64, concurrency: u64) {
    // A first start migrates the catalog; then it is filled and the server started afresh.
    drop(start(Some(url)).await);
    fill_catalog(url, count).await;
    let server = start(Some(url)).await;
    let idle = server.rss_kib();
    let channel = server.service();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut client = TenantServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = worker + 1;
            while i <= count {
                client
                    .resolve_tenant(proto::ResolveTenantRequest {
                        key: Some(proto::resolve_tenant_request::Key::Slug(format!(
                            "many-{i}"
                        ))),
                    })
                    .await
                    .expect("resolve");
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        t.await.expect("resolver");
    }
    let busy = server.rss_kib();
    println!(
        "{count} tenants in the catalog: server RSS {:.1} MiB idle, {:.1} MiB after resolving every one ({:.1}s) — target < 150 MiB{}",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0,
        started.elapsed().as_secs_f64(),
        if busy < 150 * 1024 { "" } else { "  MISSED" }
    );
    fleet_view(&server, url, count).await;
}

/// GetFleetStatus over a catalog of `count` provisioned tenants, each with its compiled
/// component mirrored at one of five versions: the median of 11 calls after one warm-up.
async fn fleet_view(server: &Server, url: &str, count: u64) {
    let db = Database::connect(url).await.expect("catalog");
    db.execute_unprepared(
        "UPDATE tenants SET provision_time = now() WHERE provision_time IS NULL; \
         INSERT INTO tenant_components (tenant_id, component, version, update_time) \
         SELECT id, 'sample', (ARRAY['m20261123_100001_create_users', 'm20261123_100002_create_projects', \
           'm20261123_100003_create_messages', 'm20261123_100004_create_audit_log', \
           'm20261207_100005_tenant_scoped_keys'])[1 + abs(hashtext(slug)) % 5], now() FROM tenants \
         ON CONFLICT DO NOTHING",
    )
    .await
    .expect("mirror the tenants' versions");
    // What autovacuum leaves a catalog in between bursts of writes: statistics, and the
    // visibility map an index-only scan relies on.
    for table in ["tenants", "tenant_components"] {
        db.execute_unprepared(&format!("VACUUM ANALYZE {table}"))
            .await
            .expect("vacuum");
    }
    db.close().await.expect("close");
    let mut client = ComponentServiceClient::new(server.admin());
    let mut times = Vec::new();
    for _ in 0..12 {
        let started = Instant::now();
        let status = client
            .get_fleet_status(proto::GetFleetStatusRequest {})
            .await
            .expect("fleet status")
            .into_inner();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            status.tenant_count as u64 >= count,
            "{}",
            status.tenant_count
        );
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "fleet view over {count} tenants: GetFleetStatus median {median:.1} ms (min {:.1}) — target < 50 ms{}",
        times[0],
        if median < 50.0 { "" } else { "  MISSED" }
    );
}

#[tokio::main]
async fn main() {
    let secs = env_num("BENCH_SECS", 2);
    let rounds = env_num("BENCH_ROUNDS", 3).max(1) as usize;
    let concurrency = env_num("BENCH_CONCURRENCY", 32);
    let tenants = env_num("BENCH_TENANTS", 100).max(1);
    let catalog_tenants = env_num("BENCH_CATALOG_TENANTS", 100_000);
    let sqlite = std::env::var("BENCH_DB").is_ok_and(|v| v == "sqlite");

    let url = if sqlite {
        None
    } else {
        Some(postgres::fresh_database_url().await)
    };
    println!("catalog: {}", if sqlite { "SQLite" } else { "PostgreSQL" });
    let server = start(url.as_deref()).await;
    throughput(&server, secs, rounds, concurrency, tenants).await;
    drop(server);

    if catalog_tenants > 0 {
        let url = postgres::fresh_database_url().await;
        memory(&url, catalog_tenants, concurrency).await;
    }
}
