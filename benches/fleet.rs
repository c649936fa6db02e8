//! Fleet benchmark: provisioning and rollouts, each against a floor measured in the same run on
//! the same PostgreSQL server — the same DDL (tables, version rows, and each tenant's role and
//! its grants) sent raw over one connection, one transaction per tenant, tenant after tenant.
//! Provisioning and its floor take turns in rounds of 20 tenants. Then a drift check of the
//! fleet, against the naive way: `pg_dump --schema-only` of one tenant's schema, timed once,
//! times the fleet's size.
//!
//! Run: `cargo bench --bench fleet` (starts a throwaway PostgreSQL, like the tests; or set
//! TEST_DATABASE_URL). Sizes: BENCH_PROVISION (default 200), BENCH_FLEET (default 1000; from
//! 2000 on, the scale run: a table of the cost per tenant for each thousand tenants, of
//! provisioning and of the rollout, to show it stays flat as the fleet grows); the
//! server's pool: BENCH_POOL (default: the server's default, 10); its rollout pool:
//! BENCH_ROLLOUT_CONNECTIONS (default: the server's default, 2); the rollout's concurrency:
//! BENCH_CONCURRENCY (default: the server's default highest, 16). BENCH_TRACE=1 adds diagnostics:
//! span timings of every RPC, the transport's round trip (health check, GetProvisioningStatus)
//! and per-call latency.

#[path = "../tests/api/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::{sync::Arc, time::Instant};

use migration::sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager, prelude::*};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use tenant_plane::{
    app::App,
    config::Config,
    dataplane::TenantMigrations,
    proto::{
        self, component_service_client::ComponentServiceClient,
        migration_service_client::MigrationServiceClient, plan_service_client::PlanServiceClient,
        tenant_service_client::TenantServiceClient,
    },
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// The tenant's version table, made before its role is granted anything (as provisioning does).
const VERSION_TABLE_DDL: &str = "CREATE TABLE seaql_migrations (version varchar NOT NULL PRIMARY KEY, applied_at bigint NOT NULL)";

/// The sample tenant schema as plain SQL: what the five tenant migrations send, and the version
/// rows.
const TENANT_DDL: &str = r#"
CREATE TABLE users (id uuid NOT NULL PRIMARY KEY, email varchar(320) NOT NULL UNIQUE, name varchar(200) NULL,
  created_at timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE projects (id uuid NOT NULL PRIMARY KEY, owner_id uuid NOT NULL, title varchar(500) NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT projects_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users (id));
CREATE INDEX projects_owner_id_idx ON projects (owner_id);
CREATE TABLE messages (id bigserial NOT NULL PRIMARY KEY, project_id uuid NOT NULL, body text NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT messages_project_id_fkey FOREIGN KEY (project_id) REFERENCES projects (id));
CREATE INDEX messages_project_id_created_at_idx ON messages (project_id, created_at);
CREATE TABLE audit_log (id bigserial NOT NULL PRIMARY KEY, actor varchar(200) NULL, action varchar(200) NOT NULL,
  at timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP);
INSERT INTO seaql_migrations VALUES ('m20261123_100001_create_users', 0), ('m20261123_100002_create_projects', 0),
  ('m20261123_100003_create_messages', 0), ('m20261123_100004_create_audit_log', 0),
  ('m20261207_100005_tenant_scoped_keys', 0);
"#;

const NEW_MIGRATION_DDL: &str = "CREATE INDEX users_created_at_idx ON users (created_at); \
     INSERT INTO seaql_migrations VALUES ('m20261208_000001_index_users_created_at', 0);";

/// The pushed component's migrations (version, up script).
const PUSHED: [(&str, &str); 2] = [
    (
        "0001_users_by_name",
        "CREATE INDEX bench_users_name ON users (name)",
    ),
    (
        "0002_projects_by_title",
        "CREATE INDEX bench_projects_title ON projects (title)",
    ),
];

/// The raw floor of installing the pushed component: its version table, its first migration
/// and its version row.
const PUSHED_INSTALL_DDL: &str = "CREATE TABLE seaql_migrations_bench (version varchar NOT NULL PRIMARY KEY, \
       applied_at bigint NOT NULL); \
     CREATE INDEX bench_users_name ON users (name); \
     INSERT INTO seaql_migrations_bench VALUES ('0001_users_by_name', 0);";

/// The raw floor of the pushed component's next migration.
const PUSHED_NEXT_DDL: &str = "CREATE INDEX bench_projects_title ON projects (title); \
     INSERT INTO seaql_migrations_bench VALUES ('0002_projects_by_title', 0);";

/// Registers the component "bench" (once) and pushes `migrations` to it.
async fn push_component(server: &Server, migrations: &[(&str, &str)]) {
    let mut client = ComponentServiceClient::new(server.channel.clone());
    client
        .create_component(proto::CreateComponentRequest {
            component: Some(proto::Component {
                component_id: "bench".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create the component");
    client
        .push_migrations(proto::PushMigrationsRequest {
            component: "components/bench".into(),
            migrations: migrations
                .iter()
                .map(|(version, up)| proto::ComponentMigration {
                    version: (*version).into(),
                    up_sql: (*up).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .expect("push");
}

/// Makes the default plan list `components`.
async fn plans_list(server: &Server, components: &[&str]) {
    PlanServiceClient::new(server.channel.clone())
        .upsert_plan(proto::UpsertPlanRequest {
            plan: Some(proto::Plan {
                name: "plans/free".into(),
                components: components.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["components".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect("the plan lists the component");
}

/// The migration rolled out: an index on users.created_at.
struct IndexUsersCreatedAt;

impl MigrationName for IndexUsersCreatedAt {
    fn name(&self) -> &str {
        "m20261208_000001_index_users_created_at"
    }
}

#[migration::sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for IndexUsersCreatedAt {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("users_created_at_idx")
                    .table(Alias::new("users"))
                    .col(Alias::new("created_at"))
                    .to_owned(),
            )
            .await
    }
}

/// Tenants provisioned, then as many floor tenants, in each round of the provisioning phase.
const ROUND: usize = 20;

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The rollouts' concurrency: BENCH_CONCURRENCY, or the highest the server allows by default.
fn concurrency() -> usize {
    let defaults = Config::for_tests(std::env::temp_dir(), None);
    env_size(
        "BENCH_CONCURRENCY",
        defaults.rollout_max_concurrency as usize,
    )
}

struct Server {
    channel: Channel,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(catalog: &str, migrations: TenantMigrations, auto_provision: bool) -> Server {
    let dir = std::env::temp_dir();
    let mut config = Config::for_tests(dir, Some(catalog.to_owned()));
    // Provisioning and rollouts are measured, not authentication.
    config.auth.insecure = true;
    config.tenant_auto_provision = auto_provision;
    // The server's own defaults unless asked otherwise: every pooled connection processes
    // every other connection's catalog invalidations, so the pool's size shows in DDL costs.
    config.pool_size = env_size("BENCH_POOL", config.pool_size as usize) as u32;
    config.rollout_connections = env_size(
        "BENCH_ROLLOUT_CONNECTIONS",
        config.rollout_connections as usize,
    ) as u32;
    config.rollout_max_concurrency = concurrency() as u32;
    config.rollout_poll_ms = 50;
    let mut app = App::build_with(config, migrations).await.expect("start");
    let listener = app.bind().await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run(listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Server {
        channel,
        stop,
        task,
    }
}

async fn shutdown(server: Server) {
    let _ = server.stop.send(());
    let _ = server.task.await;
}

/// What provisioning sends for a tenant's own database role, after the version table and
/// before the tables: the role (marked as the tenant's, the control plane a member of it), its
/// membership of the catalog database's connect role (which holds CONNECT there, revoked from
/// PUBLIC by the server at start), its search_path, and its grants: the schema's default
/// privileges, which grant the tables and sequences made next as they are made, and SELECT on
/// the version table. No statement reads a catalog table whole.
fn role_ddl(role: &str, schema: &str) -> String {
    format!(
        "CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT \
           NOREPLICATION NOBYPASSRLS; \
         COMMENT ON ROLE \"{role}\" IS 'tenant-plane tenant {role}'; \
         GRANT \"{role}\" TO CURRENT_USER; \
         DO $connect$ DECLARE \
           connect text := 'tenant-plane-connect-' \
             || (SELECT oid FROM pg_database WHERE datname = current_database()); \
         BEGIN \
           IF to_regrole(quote_ident(connect)) IS NULL THEN \
             PERFORM pg_advisory_xact_lock(hashtextextended('tenant-plane:catalog-connect', 0)); \
             BEGIN \
               EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', connect); \
               EXECUTE format('COMMENT ON ROLE %I IS %L', connect, 'tenant-plane connect'); \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
             END; \
           END IF; \
           IF coalesce(shobj_description(to_regrole(quote_ident(connect)), 'pg_authid'), '') \
                <> 'tenant-plane connect' THEN \
             RAISE EXCEPTION 'role % is not the connect role', connect; \
           END IF; \
           IF NOT has_database_privilege('public', current_database(), 'CONNECT') \
              AND NOT has_database_privilege(connect, current_database(), 'CONNECT') THEN \
             PERFORM pg_advisory_xact_lock(hashtextextended('tenant-plane:catalog-connect', 0)); \
             EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), connect); \
           END IF; \
           IF NOT pg_has_role('{role}', connect, 'MEMBER') THEN \
             EXECUTE format('ALTER ROLE %I INHERIT', '{role}'); \
             EXECUTE format('GRANT %I TO %I', connect, '{role}'); \
           END IF; \
         END $connect$; \
         ALTER ROLE \"{role}\" SET search_path TO \"{schema}\"; \
         GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\"; \
         ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA \"{schema}\" \
           GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \"{role}\"; \
         ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA \"{schema}\" \
           GRANT USAGE ON SEQUENCES TO \"{role}\"; \
         GRANT SELECT ON \"{schema}\".\"seaql_migrations\" TO \"{role}\""
    )
}

/// The floor: `ddl` in each schema, tenant after tenant, one transaction each, over one
/// connection; the seconds each tenant took. `create` makes each schema, its version table and
/// its role first, as provisioning does.
async fn raw_floor(
    db: &DatabaseConnection,
    schemas: &[String],
    ddl: &str,
    create: bool,
) -> Vec<f64> {
    // Roles are global to the server: a suffix keeps this run's apart from earlier runs'.
    let run = uuid::Uuid::now_v7().simple().to_string();
    let run = &run[run.len() - 8..];
    let mut each = Vec::with_capacity(schemas.len());
    for schema in schemas {
        let started = Instant::now();
        let txn = db.begin().await.expect("begin");
        if create {
            txn.execute_unprepared(&format!(
                "CREATE SCHEMA \"{schema}\"; COMMENT ON SCHEMA \"{schema}\" IS 'tenant-plane tenant'; \
                 SET LOCAL search_path TO \"{schema}\"; {VERSION_TABLE_DDL}; {}",
                role_ddl(&format!("{schema}_{run}"), schema)
            ))
            .await
            .expect("schema and role");
        }
        txn.execute_unprepared(&format!("SET LOCAL search_path TO \"{schema}\"; {ddl}"))
            .await
            .expect("ddl");
        txn.commit().await.expect("commit");
        each.push(started.elapsed().as_secs_f64());
    }
    each
}

/// The tenants' costs `each` (in order) per thousand tenants: the mean of each thousand, in
/// milliseconds (the last may be short).
fn per_thousand(each: &[f64]) -> Vec<f64> {
    each.chunks(1000)
        .map(|chunk| chunk.iter().sum::<f64>() * 1000.0 / chunk.len() as f64)
        .collect()
}

/// One line of the scale run's table: a cost per tenant for each thousand, and the last
/// thousand against the first.
fn print_thousands(what: &str, each: &[f64]) {
    let means = per_thousand(each);
    let (Some(first), Some(last)) = (means.first(), means.last()) else {
        return;
    };
    let cells: Vec<String> = means.iter().map(|ms| format!("{ms:.2}")).collect();
    println!("| {what} | {} | {:.2}x |", cells.join(" | "), last / first);
}

/// Brings the database to rest before a timed phase: `VACUUM (ANALYZE)` of the whole database.
/// The phases before it changed the system catalogs by thousands of rows (every tenant's tables,
/// indexes and roles), and autovacuum would otherwise analyze them in the middle of whichever
/// phase came next: seen taking a fifth of the machine's CPU during a timed phase, the rollout's
/// or its floor's, at random.
async fn settle(db: &DatabaseConnection) {
    db.execute_unprepared("VACUUM (ANALYZE)")
        .await
        .expect("vacuum");
}

/// A rollout, timed: its seconds, its end, and for each tenant it migrated (by resource name)
/// how long migrating it took, with the seconds since the start when its event arrived.
async fn roll_out(
    server: &Server,
    component: &str,
) -> (f64, proto::Rollout, Vec<(String, f64, f64)>) {
    let mut client = MigrationServiceClient::new(server.channel.clone());
    let started = Instant::now();
    let mut migrated = Vec::new();
    let rollout = client
        .start_rollout(proto::StartRolloutRequest {
            selector: Some(proto::TenantSelector {
                selector: Some(proto::tenant_selector::Selector::All(true)),
            }),
            // The highest concurrency the server allows by default.
            max_concurrency: concurrency() as i32,
            component: component.to_owned(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    if rollout.state() == proto::rollout::State::Running
        || rollout.state() == proto::rollout::State::Pending
    {
        let mut events = client
            .watch_rollout(proto::WatchRolloutRequest {
                name: rollout.name.clone(),
            })
            .await
            .expect("watch")
            .into_inner();
        while let Some(event) = events.next().await {
            match event.expect("event").kind {
                Some(proto::rollout_event::Kind::Finished(_)) => break,
                Some(proto::rollout_event::Kind::Migrated(target)) => {
                    let took = target.duration.map_or(0.0, |d| {
                        d.seconds as f64 + f64::from(d.nanos) / 1_000_000_000.0
                    });
                    migrated.push((target.tenant, took, started.elapsed().as_secs_f64()));
                }
                _ => {}
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ended = client
        .get_rollout(proto::GetRolloutRequest { name: rollout.name })
        .await
        .expect("get")
        .into_inner();
    (elapsed, ended, migrated)
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_TRACE").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_env_filter("tenant_plane=info")
            .try_init();
    }
    let provision_n = env_size("BENCH_PROVISION", 200);
    let fleet_n = env_size("BENCH_FLEET", 1000);
    let catalog = postgres::fresh_database_url().await;
    // The floors' one connection: no liveness ping before each use, which would be a round
    // trip the floor does not need.
    let mut options = ConnectOptions::new(&catalog);
    options
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .sqlx_logging(false);
    let raw = Database::connect(options).await.expect("raw connection");

    // 1. Provisioning: tenants created first, then ProvisionTenant one after another.
    let server = serve(&catalog, TenantMigrations::builtin(), false).await;
    let mut tenants = TenantServiceClient::new(server.channel.clone());
    let mut names = Vec::new();
    for i in 0..provision_n {
        let tenant = proto::Tenant {
            slug: format!("p{i}"),
            ..Default::default()
        };
        let created = tenants
            .create_tenant(proto::CreateTenantRequest {
                tenant: Some(tenant),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner();
        names.push(created.name);
    }
    let mut provisioning =
        proto::provisioning_service_client::ProvisioningServiceClient::new(server.channel.clone());
    if std::env::var("BENCH_TRACE").is_ok() {
        let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
        let started = Instant::now();
        for _ in 0..200 {
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .expect("health");
        }
        println!(
            "health check round trip: {:.3} ms",
            started.elapsed().as_secs_f64() * 1000.0 / 200.0
        );
        let started = Instant::now();
        for name in &names {
            provisioning
                .get_provisioning_status(proto::GetProvisioningStatusRequest {
                    tenant: name.clone(),
                })
                .await
                .expect("status");
        }
        println!(
            "status round trip: {:.3} ms",
            started.elapsed().as_secs_f64() * 1000.0 / names.len() as f64
        );
    }
    // Provisioning and its floor take turns, a round of each at a time, so that both meet the
    // same state of the database and of the filesystem under it. Run one after the other, the
    // first ran while the filesystem was still slow to hand out files (ext4 passes over the
    // inodes of files deleted in the last minutes, such as the previous run's cluster): its
    // CREATE TABLEs took several times as long as the same statements minutes later.
    let floor_schemas: Vec<String> = (0..provision_n).map(|i| format!("floor_p{i}")).collect();
    settle(&raw).await;
    eprintln!("provisioning");
    let mut provision = 0.0;
    let mut provision_floor = 0.0;
    let mut each = Vec::new();
    // Every tenant's ProvisionTenant call, in seconds, in the order they were provisioned.
    let mut provision_each = Vec::with_capacity(fleet_n);
    for (round, floors) in names.chunks(ROUND).zip(floor_schemas.chunks(ROUND)) {
        let started = Instant::now();
        for name in round {
            let one = Instant::now();
            provisioning
                .provision_tenant(proto::ProvisionTenantRequest {
                    tenant: name.clone(),
                    ..Default::default()
                })
                .await
                .expect("provision");
            provision_each.push(one.elapsed().as_secs_f64());
            each.push(one.elapsed().as_secs_f64() * 1000.0);
        }
        provision += started.elapsed().as_secs_f64();
        provision_floor += raw_floor(&raw, floors, TENANT_DDL, true)
            .await
            .iter()
            .sum::<f64>();
    }
    eprintln!("provisioned");
    if std::env::var("BENCH_TRACE").is_ok() {
        each.sort_by(f64::total_cmp);
        println!(
            "provision call ms: p50 {:.2} p90 {:.2}",
            each[each.len() / 2],
            each[each.len() * 9 / 10]
        );
    }

    // 2. The fleet: up to `fleet_n` tenants at the sample schema, and as many floor schemas
    // (the rollout's floor), made in turns, a round of each at a time, so that each thousand of
    // the fleet is compared with the floor's at the same size of the catalog (the scale run).
    let fleet_floor_schemas: Vec<String> = (0..fleet_n).map(|i| format!("floor_f{i}")).collect();
    let mut fleet_floor_each = raw_floor(
        &raw,
        &fleet_floor_schemas[..provision_n.min(fleet_n)],
        TENANT_DDL,
        true,
    )
    .await;
    for i in provision_n..fleet_n {
        let tenant = proto::Tenant {
            slug: format!("p{i}"),
            ..Default::default()
        };
        let created = tenants
            .create_tenant(proto::CreateTenantRequest {
                tenant: Some(tenant),
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner();
        names.push(created.name.clone());
        let one = Instant::now();
        provisioning
            .provision_tenant(proto::ProvisionTenantRequest {
                tenant: created.name,
                ..Default::default()
            })
            .await
            .expect("provision");
        provision_each.push(one.elapsed().as_secs_f64());
        if (i + 1) % ROUND == 0 || i + 1 == fleet_n {
            let from = fleet_floor_each.len();
            fleet_floor_each
                .extend(raw_floor(&raw, &fleet_floor_schemas[from..=i], TENANT_DDL, true).await);
        }
        if (i + 1) % 1000 == 0 {
            eprintln!("{} tenants provisioned", i + 1);
        }
    }
    shutdown(server).await;

    // 3. One new migration rolled out to the fleet, then a rollout with nothing pending.
    let five = TenantMigrations::new(Arc::new(|| {
        let mut migrations = migration::tenant::migrations();
        migrations.push(Box::new(IndexUsersCreatedAt));
        migrations
    }));
    let server = serve(&catalog, five, false).await;
    settle(&raw).await;
    eprintln!("rolling the migration out");
    let (rollout, ended, migrated) = roll_out(&server, "").await;
    eprintln!("rolled out");
    let counts = ended.counts.unwrap_or_default();
    assert_eq!(
        counts.migrated as usize, fleet_n,
        "every tenant migrated: {ended:?}"
    );
    settle(&raw).await;
    eprintln!("measuring the rollout's floor");
    let rollout_floor_each = raw_floor(&raw, &fleet_floor_schemas, NEW_MIGRATION_DDL, false).await;
    let rollout_floor: f64 = rollout_floor_each.iter().sum();
    eprintln!("measured the rollout's floor");
    settle(&raw).await;
    let (noop, noop_ended, _) = roll_out(&server, "").await;
    assert_eq!(
        noop_ended.counts.unwrap_or_default().skipped as usize,
        fleet_n
    );

    // 3b. A service's own migrations (a component pushed over the API): its first migration
    // installed on the whole fleet by a rollout (the component added to the tenants' plan),
    // then its next one rolled out, each against its serial raw floor.
    push_component(&server, &[PUSHED[0]]).await;
    plans_list(&server, &["sample", "bench"]).await;
    settle(&raw).await;
    eprintln!("installing a pushed component");
    let (install, install_ended, _) = roll_out(&server, "bench").await;
    assert_eq!(
        install_ended.counts.unwrap_or_default().migrated as usize,
        fleet_n,
        "{install_ended:?}"
    );
    settle(&raw).await;
    let install_floor: f64 = raw_floor(&raw, &fleet_floor_schemas, PUSHED_INSTALL_DDL, false)
        .await
        .iter()
        .sum();
    push_component(&server, &PUSHED).await;
    settle(&raw).await;
    eprintln!("rolling a pushed migration out");
    let (pushed, pushed_ended, _) = roll_out(&server, "bench").await;
    assert_eq!(
        pushed_ended.counts.unwrap_or_default().migrated as usize,
        fleet_n,
        "{pushed_ended:?}"
    );
    settle(&raw).await;
    let pushed_floor: f64 = raw_floor(&raw, &fleet_floor_schemas, PUSHED_NEXT_DDL, false)
        .await
        .iter()
        .sum();
    let (pushed_noop, _, _) = roll_out(&server, "bench").await;

    // 4. A drift check of the fleet, against the naive way: `pg_dump --schema-only` of one
    // tenant's schema, timed once and multiplied by the fleet's size.
    settle(&raw).await;
    eprintln!("checking the fleet for drift");
    let (drift, drift_warm) = check_drift(&server, fleet_n).await;
    let schema = TenantServiceClient::new(server.channel.clone())
        .get_tenant(proto::GetTenantRequest {
            name: names[0].clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .schema_name;
    let dump = pg_dump_schema(&catalog, &schema);
    shutdown(server).await;

    println!("tenant-plane fleet benchmark (PostgreSQL, schema per tenant)");
    println!(
        "provision {provision_n} tenants: {provision:.2} s vs raw floor {provision_floor:.2} s = {:.2}x (target <= 1.3x)",
        provision / provision_floor
    );
    println!(
        "roll 1 migration out to {fleet_n} tenants: {rollout:.2} s vs serial raw floor {rollout_floor:.2} s = {:.2}x (target < 1x)",
        rollout / rollout_floor
    );
    println!("no-op rollout of {fleet_n} tenants: {noop:.3} s (target < 0.1 s)");
    println!(
        "install a pushed component on {fleet_n} tenants (its first migration): {install:.2} s vs serial raw floor {install_floor:.2} s = {:.2}x",
        install / install_floor
    );
    println!(
        "roll 1 pushed migration out to {fleet_n} tenants: {pushed:.2} s vs serial raw floor {pushed_floor:.2} s = {:.2}x (target < 1x); no-op: {pushed_noop:.3} s",
        pushed / pushed_floor
    );
    let naive = dump * fleet_n as f64;
    // The target is 10 s for 1,000 tenants: 10 ms a tenant, whatever the fleet's size.
    let drift_target = 10.0 * fleet_n as f64 / 1000.0;
    println!(
        "drift check of {fleet_n} tenants: {drift:.2} s{} (target < {drift_target:.0} s, 10 ms a tenant); again, references built: {drift_warm:.2} s; \
         vs pg_dump --schema-only of one schema x {fleet_n} ({:.1} ms x {fleet_n} = {naive:.1} s) = {:.4}x",
        if drift < drift_target { "" } else { " MISSED" },
        dump * 1000.0,
        drift / naive
    );
    if fleet_n >= 2000 {
        scale_table(
            &names,
            &provision_each,
            &fleet_floor_each,
            &migrated,
            &rollout_floor_each,
        );
    }
}

/// CheckDrift of every tenant, twice: the first builds the expected shape (one reference for
/// the whole fleet, at one version), the second finds it built. Their seconds.
async fn check_drift(server: &Server, fleet_n: usize) -> (f64, f64) {
    let mut client = MigrationServiceClient::new(server.channel.clone());
    let mut took = [0.0; 2];
    for each in &mut took {
        let started = Instant::now();
        let checked = client
            .check_drift(proto::CheckDriftRequest {
                scope: Some(proto::check_drift_request::Scope::Selector(
                    proto::TenantSelector {
                        selector: Some(proto::tenant_selector::Selector::All(true)),
                    },
                )),
                drifted_only: true,
            })
            .await
            .expect("check drift")
            .into_inner();
        *each = started.elapsed().as_secs_f64();
        assert_eq!(checked.checked_count as usize, fleet_n, "{checked:?}");
        assert_eq!(
            (checked.drifted_count, checked.failed_count),
            (0, 0),
            "{checked:?}"
        );
    }
    (took[0], took[1])
}

/// The naive drift check's cost per tenant: `pg_dump --schema-only` of one tenant's schema (the
/// text a check would then compare), in seconds.
fn pg_dump_schema(catalog: &str, schema: &str) -> f64 {
    let started = Instant::now();
    let out = std::process::Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", "--no-privileges"])
        .arg(format!("--schema={schema}"))
        .arg(format!("--dbname={catalog}"))
        .output()
        .expect("run pg_dump (PostgreSQL's client tools on PATH)");
    let took = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// The scale run (BENCH_FLEET of 2,000 or more): the cost per tenant for each thousand tenants,
/// in the order they were provisioned, and the last thousand against the first (target: within
/// 1.2x). A flat line means no per-tenant statement costs more as the fleet grows.
fn scale_table(
    names: &[String],
    provision_each: &[f64],
    floor_each: &[f64],
    migrated: &[(String, f64, f64)],
    rollout_floor_each: &[f64],
) {
    let thousands = provision_each.len().div_ceil(1000);
    let header: Vec<String> = (1..=thousands).map(|k| format!("{k}k")).collect();
    println!();
    println!("scale run: ms per tenant, for each thousand tenants (last vs first; target <= 1.2x)");
    println!("| | {} | last/first |", header.join(" | "));
    println!("|---|{}---|", "---|".repeat(thousands));
    print_thousands("ProvisionTenant", provision_each);
    // Made in turns with the fleet: each thousand at the same size of the catalog.
    print_thousands("its raw floor", floor_each);
    let ratios: Vec<f64> = per_thousand(provision_each)
        .iter()
        .zip(per_thousand(floor_each))
        .map(|(provision, floor)| provision / floor)
        .collect();
    let cells: Vec<String> = ratios.iter().map(|r| format!("{r:.2}x")).collect();
    println!("| ProvisionTenant / floor | {} | |", cells.join(" | "));
    // Each tenant's migration, as the rollout reported it, by the tenant's place in the fleet.
    let place: std::collections::HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    let mut by_tenant = vec![f64::NAN; names.len()];
    for (tenant, took, _) in migrated {
        if let Some(&i) = place.get(tenant.as_str()) {
            by_tenant[i] = *took;
        }
    }
    let reported = by_tenant.iter().filter(|took| !took.is_nan()).count();
    if reported == names.len() {
        print_thousands("rollout: a tenant's migration (16 at once)", &by_tenant);
    } else {
        println!(
            "(the rollout's events named {reported} of {} tenants)",
            names.len()
        );
    }
    // The rollout's wall clock per tenant, by thousands of tenants finished.
    let mut finished: Vec<f64> = migrated.iter().map(|(_, _, at)| *at).collect();
    finished.sort_by(f64::total_cmp);
    let mut wall = Vec::with_capacity(finished.len());
    let mut before = 0.0;
    for at in finished {
        wall.push(at - before);
        before = at;
    }
    print_thousands("rollout: wall clock, by tenants finished", &wall);
    print_thousands("rollout's serial raw floor", rollout_floor_each);
}
