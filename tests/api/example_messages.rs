//! The worked example (`examples/messages`) against a real control plane on real PostgreSQL:
//! the example service runs in-process behind `TenantLayer`, with `TenantDb` on the catalog
//! database, and is called as its callers would, with `x-tenant-id` metadata.

#[path = "../../examples/messages/service.rs"]
mod service;

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectOptions, ConnectionTrait, DbBackend, Statement};
use tenant_plane::proto;
use tenant_plane_client::{
    ClientClock, Quotas, ResolverSettings, TENANT_HEADER, TenantDb, TenantDbSettings,
    TenantResolver,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{Code, transport::Channel};

use crate::components_runs::plan_with;
use crate::support::{Db, SERVICE_TOKEN, TestServer, create};
use service::{
    MESSAGES_PER_DAY, Messages,
    api::{self, messages_service_client::MessagesServiceClient},
};

/// How long the example's resolver trusts an answer (by [`Example::clock`]).
const TTL: Duration = Duration::from_millis(200);

/// The example service, running.
struct Example {
    client: MessagesServiceClient<Channel>,
    /// The clock the example's resolver ages its answers by: it stands still until the test
    /// advances it.
    clock: ClientClock,
    db: Arc<TenantDb>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Example {
    async fn start(server: &TestServer) -> Self {
        let settings = ResolverSettings {
            ttl: TTL,
            negative_ttl: TTL,
            ..ResolverSettings::default()
        };
        let clock = ClientClock::manual();
        let resolver =
            TenantResolver::new(server.control_plane(), settings).with_clock(clock.clone());
        let options = ConnectOptions::new(server.catalog_url.clone());
        let db = TenantDb::connect(options, TenantDbSettings::default())
            .await
            .expect("connect the example's pool");
        let db = Arc::new(db);
        let messages = Messages::new(db.clone(), Quotas::new(server.control_plane()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(service::serve(listener, resolver, messages, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("a url")
            .connect()
            .await
            .expect("connect to the example");
        Self {
            client: MessagesServiceClient::new(channel),
            clock,
            db,
            stop,
            task,
        }
    }

    async fn project(&self, tenant: &str, title: &str) -> Result<api::Project, Code> {
        let request = api::CreateProjectRequest {
            title: title.to_owned(),
            owner_email: "owner@example.test".to_owned(),
        };
        let answer = self
            .client
            .clone()
            .create_project(call(tenant, request))
            .await;
        answer.map(|r| r.into_inner()).map_err(|s| s.code())
    }

    async fn post(&self, tenant: &str, project_id: &str, body: &str) -> Result<api::Message, Code> {
        let request = api::PostMessageRequest {
            project_id: project_id.to_owned(),
            body: body.to_owned(),
            request_id: String::new(),
        };
        let answer = self
            .client
            .clone()
            .post_message(call(tenant, request))
            .await;
        answer.map(|r| r.into_inner()).map_err(|s| s.code())
    }

    /// The bodies of a project's messages, in the order listed.
    async fn bodies(&self, tenant: &str, project_id: &str) -> Result<Vec<String>, Code> {
        let request = api::ListMessagesRequest {
            project_id: project_id.to_owned(),
            ..Default::default()
        };
        let answer = self
            .client
            .clone()
            .list_messages(call(tenant, request))
            .await;
        let messages = answer.map_err(|s| s.code())?.into_inner().messages;
        Ok(messages.into_iter().map(|m| m.body).collect())
    }

    async fn stop(self, server: TestServer) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("example task")
            .expect("example served");
        if let Ok(db) = Arc::try_unwrap(self.db) {
            db.close().await.expect("close");
        }
        server.stop().await;
    }
}

/// `message` as a call of `tenant` (a slug or an id).
fn call<T>(tenant: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = tenant.parse().expect("a metadata value");
    request.metadata_mut().insert(TENANT_HEADER, value);
    request
}

/// The rows of `table` in the tenant's schema, read from the catalog database directly.
async fn rows(server: &TestServer, tenant: &proto::Tenant, table: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) AS n FROM \"{}\".{table}",
        tenant.schema_name
    );
    let catalog = server.catalog().await;
    let row = catalog
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect("count")
        .expect("a row");
    row.try_get("", "n").expect("a count")
}

/// Ships the example's tables the way its CI would: `tenant-plane migrations push` of its
/// directory as the component "messages", then the default plan lists that component (and
/// not the compiled sample), so every tenant created after gets the example's own tables.
async fn ship(server: &TestServer) {
    let pushed = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
        .env_clear()
        .env("TENANT_PLANE_TOKEN", SERVICE_TOKEN)
        .args(["migrations", "push", "--component", "messages", "--dir"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/messages/migrations"
        ))
        .args([
            "--owner",
            "messages",
            "--server",
            &format!("http://{}", server.addr),
        ])
        .output()
        .expect("run tenant-plane migrations push");
    assert!(
        pushed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&pushed.stdout),
        String::from_utf8_lossy(&pushed.stderr)
    );
    plan_with(server, "free", &["messages"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_a_never_sees_tenant_b_projects_or_messages() {
    // Arrange
    let server = TestServer::start(Db::Postgres).await;
    ship(&server).await;
    let alpha = create(&server, "alpha").await;
    let beta = create(&server, "beta").await;
    let tables = server.tenant_tables(&alpha).await;
    assert_eq!(
        tables,
        ["messages", "projects", "seaql_migrations_messages", "users"],
        "the example's own tables, not the compiled sample's"
    );
    let example = Example::start(&server).await;
    let a = example.project("alpha", "Alpha launch").await.expect("a");
    // The same owner in both tenants: two users, one in each schema.
    let b = example.project(&beta.id, "Beta launch").await.expect("b");

    // Act
    example
        .post("alpha", &a.id, "alpha one")
        .await
        .expect("post");
    example
        .post("alpha", &a.id, "alpha two")
        .await
        .expect("post");
    example.post("beta", &b.id, "beta one").await.expect("post");
    let alpha_reads_b = example.bodies("alpha", &b.id).await;
    let alpha_posts_to_b = example.post("alpha", &b.id, "intrusion").await;
    let beta_reads_a = example.bodies("beta", &a.id).await;

    // Assert
    assert_eq!(
        example.bodies("alpha", &a.id).await,
        Ok(vec!["alpha one".to_owned(), "alpha two".to_owned()])
    );
    assert_eq!(
        example.bodies(&beta.id, &b.id).await,
        Ok(vec!["beta one".to_owned()])
    );
    assert_eq!(alpha_reads_b, Err(Code::NotFound));
    assert_eq!(alpha_posts_to_b.map(|m| m.body), Err(Code::NotFound));
    assert_eq!(beta_reads_a, Err(Code::NotFound));
    // Where the rows are: each tenant's in its own schema.
    for (tenant, projects, messages, users) in [(&alpha, 1, 2, 1), (&beta, 1, 1, 1)] {
        assert_eq!(rows(&server, tenant, "projects").await, projects);
        assert_eq!(rows(&server, tenant, "messages").await, messages);
        assert_eq!(rows(&server, tenant, "users").await, users);
    }
    example.stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_is_refused_and_a_call_naming_none_too() {
    // Arrange
    let server = TestServer::start(Db::Postgres).await;
    ship(&server).await;
    create(&server, "alpha").await;
    create(&server, "beta").await;
    let example = Example::start(&server).await;
    let a = example.project("alpha", "Alpha").await.expect("alpha");
    example.post("alpha", &a.id, "before").await.expect("post");

    // Act
    server
        .tenants()
        .suspend_tenant(proto::SuspendTenantRequest {
            name: "tenants/alpha".into(),
            reason: "unpaid".into(),
            ..Default::default()
        })
        .await
        .expect("suspend");
    // The example's resolver trusts its answer for TTL: this is the longest a suspension waits.
    // Until then the cached ACTIVE still admits alpha (a read, which changes nothing).
    assert_eq!(
        example.bodies("alpha", &a.id).await,
        Ok(vec!["before".to_owned()])
    );
    example.clock.advance(TTL);

    // Assert
    let refused = example.post("alpha", &a.id, "after").await;
    assert_eq!(refused.map(|m| m.body), Err(Code::FailedPrecondition));
    assert_eq!(
        example.bodies("alpha", &a.id).await,
        Err(Code::FailedPrecondition)
    );
    assert_eq!(
        example.project("beta", "Beta").await.map(|p| p.title),
        Ok("Beta".to_owned())
    );
    let anonymous = example
        .client
        .clone()
        .create_project(api::CreateProjectRequest {
            title: "Nobody's".into(),
            owner_email: "nobody@example.test".into(),
        })
        .await;
    assert_eq!(
        anonymous.map_err(|s| s.code()).err(),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        example.project("nobody", "x").await.map(|p| p.title),
        Err(Code::NotFound)
    );
    example.stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_quota_stops_posting_at_the_limit_and_stores_nothing_over_it() {
    // Arrange
    let server = TestServer::start(Db::Postgres).await;
    ship(&server).await;
    let alpha = create(&server, "alpha").await;
    create(&server, "beta").await;
    crate::quotas::set_limits(&server, "alpha", &[(MESSAGES_PER_DAY, 3)]).await;
    let example = Example::start(&server).await;
    let a = example.project("alpha", "Alpha").await.expect("alpha");
    let b = example.project("beta", "Beta").await.expect("beta");

    // Act
    let mut posted = Vec::new();
    for n in 1..=4 {
        posted.push(example.post("alpha", &a.id, &format!("m{n}")).await);
    }

    // Assert
    let (within, over) = posted.split_at(3);
    assert!(within.iter().all(Result::is_ok), "{within:?}");
    assert_eq!(
        over[0].clone().map(|m| m.body),
        Err(Code::ResourceExhausted)
    );
    assert_eq!(
        example.bodies("alpha", &a.id).await,
        Ok(vec!["m1".to_owned(), "m2".to_owned(), "m3".to_owned()])
    );
    assert_eq!(rows(&server, &alpha, "messages").await, 3);
    // Another tenant's quota is its own.
    example.post("beta", &b.id, "b1").await.expect("beta posts");
    example.stop(server).await;
}
