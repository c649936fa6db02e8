//! Tenant isolation through a transaction-pooling PgBouncer with one server connection: every
//! client connection's transactions share one PostgreSQL session, which is how such poolers serve
//! one tenant's rows to another when the tenant is set per session. `TenantDb` sets it per
//! transaction (`SET LOCAL`), so interleaved tenants never see or write each other's rows.

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use tenant_plane::app::App;
use tenant_plane::config::{Config, IsolationSetting};
use tenant_plane::dataplane::TenantMigrations;
use tenant_plane_client::{
    ResolverSettings, TenantContext, TenantDb, TenantDbSettings, TenantKey, TenantResolver,
};

use crate::support::pgbouncer::PgBouncer;
use crate::support::{Db, TestServer, create, postgres};

async fn context(server: &TestServer, slug: &str) -> TenantContext {
    let resolver = TenantResolver::new(server.control_plane(), ResolverSettings::default());
    let key = TenantKey::parse(slug).expect("a slug");
    resolver.resolve(&key).await.expect("resolve")
}

/// `url` with another user.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

async fn text(db: &impl ConnectionTrait, sql: &str) -> String {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .try_get_by_index::<String>(0)
        .expect("text")
}

/// One request of `tenant`'s: in one transaction, writes a user named `email`, then reads every
/// user it can see and the PostgreSQL session it ran on.
async fn request(db: &TenantDb, tenant: &TenantContext, email: &str) -> (Vec<String>, String) {
    let txn = db.begin(tenant).await.expect("begin");
    txn.execute_unprepared(&format!(
        "INSERT INTO users (id, email) VALUES (gen_random_uuid(), '{email}')"
    ))
    .await
    .expect("insert");
    // Another tenant's request, on another client connection, goes while this one is open:
    // PgBouncer holds it back until this transaction ends, then gives it the same session.
    tokio::task::yield_now().await;
    let seen = txn
        .query_all_raw(Statement::from_string(
            txn.get_database_backend(),
            "SELECT email FROM users ORDER BY email",
        ))
        .await
        .expect("select")
        .iter()
        .map(|row| row.try_get::<String>("", "email").expect("an email"))
        .collect();
    let session = text(&txn, "SELECT pg_backend_pid()::text").await;
    txn.commit().await.expect("commit");
    (seen, session)
}

/// Runs `rounds` requests of each tenant at once through `db`, and checks each saw only its own
/// rows; returns the PostgreSQL sessions they ran on.
async fn interleave(
    db: &TenantDb,
    a: &TenantContext,
    b: &TenantContext,
    rounds: usize,
) -> Vec<String> {
    let one = |tenant: &'static str, ctx: TenantContext| async move {
        let mut sessions = Vec::new();
        for i in 0..rounds {
            let (seen, session) =
                request(db, &ctx, &format!("{tenant}{i:02}@{tenant}.example")).await;
            let own: Vec<String> = (0..=i)
                .map(|j| format!("{tenant}{j:02}@{tenant}.example"))
                .collect();
            assert_eq!(seen, own, "{tenant}'s request {i} saw only {tenant}'s rows");
            sessions.push(session);
        }
        sessions
    };
    let (mut left, right) = tokio::join!(one("alpha", a.clone()), one("beta", b.clone()));
    left.extend(right);
    left
}

/// A TenantDb of several client connections, through `bouncer`, as `url`'s user.
async fn tenant_db(bouncer: &PgBouncer, url: &str) -> TenantDb {
    let mut options = ConnectOptions::new(bouncer.url(url));
    options.max_connections(4).min_connections(2);
    let settings = TenantDbSettings {
        transaction_pooler: true,
        ..TenantDbSettings::default()
    };
    TenantDb::connect(options, settings)
        .await
        .expect("connect through PgBouncer")
}

/// Whether a plain `SET` on one client connection shows on another: it does through a
/// transaction pooler, which is why the tenant must never be set per session.
async fn a_session_setting_leaks_between_clients(bouncer: &PgBouncer, url: &str) {
    let connect = || async {
        let mut options = ConnectOptions::new(bouncer.url(url));
        options.max_connections(1);
        Database::connect(options).await.expect("connect")
    };
    let (first, second): (DatabaseConnection, DatabaseConnection) =
        (connect().await, connect().await);
    first
        .execute_unprepared("SET search_path TO tenant_alpha")
        .await
        .expect("set");
    assert_eq!(
        text(&second, "SELECT current_setting('search_path')").await,
        "tenant_alpha",
        "another client inherits the session's setting: the pooler really shares one session"
    );
    first
        .execute_unprepared("RESET search_path")
        .await
        .expect("reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_tenants_interleaved_on_one_pooled_session_see_only_their_own_rows() {
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "alpha").await;
    create(&server, "beta").await;
    let (a, b) = (
        context(&server, "alpha").await,
        context(&server, "beta").await,
    );
    let bouncer = PgBouncer::start(&server.catalog_url, &["postgres"]);
    a_session_setting_leaks_between_clients(&bouncer, &server.catalog_url).await;
    let db = tenant_db(&bouncer, &server.catalog_url).await;

    let sessions = interleave(&db, &a, &b, 8).await;

    assert!(
        sessions.windows(2).all(|w| w[0] == w[1]),
        "every request ran on the one pooled session: {sessions:?}\n{}",
        bouncer.log()
    );
    db.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tenants_interleaved_on_one_pooled_session_see_only_their_own_rows() {
    let server = TestServer::start_with(Db::Postgres, |c| {
        c.tenant_isolation_strategy = Some(IsolationSetting::Shared);
    })
    .await;
    create(&server, "alpha").await;
    create(&server, "beta").await;
    let (a, b) = (
        context(&server, "alpha").await,
        context(&server, "beta").await,
    );
    let role = crate::support::shared_tables_app_role(&server).await;
    let admin = server.catalog().await;
    let url = as_user(&server.catalog_url, &role);
    let bouncer = PgBouncer::start(&url, &[&role]);
    let db = tenant_db(&bouncer, &url).await;

    let sessions = interleave(&db, &a, &b, 8).await;

    assert!(
        sessions.windows(2).all(|w| w[0] == w[1]),
        "every request ran on the one pooled session: {sessions:?}"
    );
    let rows = text(
        &admin,
        "SELECT string_agg(t.slug || ':' || u.email, ',' ORDER BY u.email) FROM tenant_shared.users u \
         JOIN tenants t ON t.id = u.tenant_id",
    )
    .await;
    assert!(
        rows.split(',')
            .all(|row| row.starts_with("alpha:alpha") || row.starts_with("beta:beta")),
        "each row was written as its own tenant's: {rows}"
    );
    db.close().await.expect("close");
    server.stop().await;
}

/// Whether the catalog database at `url` has been touched: any table in it.
async fn tables_in(url: &str) -> i64 {
    let db = Database::connect(url).await.expect("connect");
    let n = text(
        &db,
        "SELECT count(*)::text FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .await;
    db.close().await.expect("close");
    n.parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_refuses_a_catalog_behind_a_transaction_pooler_and_says_so() {
    // One server connection, and several idle ones: either way two client connections meet on
    // one session.
    for pool_size in [1, 4] {
        let url = postgres::fresh_database_url().await;
        let bouncer = PgBouncer::start_in("transaction", pool_size, &url, &["postgres"]);
        let data_dir = tempfile::tempdir().expect("temp dir");
        let config = Config::for_tests(data_dir.path().to_path_buf(), Some(bouncer.url(&url)));

        let refused = App::build_with(config, TenantMigrations::builtin()).await;

        let message = match refused {
            Ok(_) => panic!("the control plane started on a transaction-pooled catalog"),
            Err(e) => e.to_string(),
        };
        for says in [
            "DATABASE_URL goes through a transaction-pooling connection pooler",
            "pool_mode=session",
            "LISTEN",
        ] {
            assert!(message.contains(says), "{says:?} in: {message}");
        }
        assert_eq!(
            tables_in(&url).await,
            0,
            "refused before touching the catalog"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_refuses_a_session_pooler_that_does_not_pass_its_search_path_on() {
    // PgBouncer refuses the startup parameter `options`, which pins the catalog's schema; told
    // to ignore it, it drops it silently. Either way the start says why and touches nothing.
    let url = postgres::fresh_database_url().await;
    for ignore in [false, true] {
        let bouncer = if ignore {
            PgBouncer::start_ignoring("session", 40, &url, &["postgres"], "options")
        } else {
            PgBouncer::start_in("session", 40, &url, &["postgres"])
        };
        let data_dir = tempfile::tempdir().expect("temp dir");
        let config = Config::for_tests(data_dir.path().to_path_buf(), Some(bouncer.url(&url)));

        let refused = App::build_with(config, TenantMigrations::builtin()).await;

        let message = match refused {
            Ok(_) => panic!("the control plane started without its search_path pinned"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains("options"), "{message}");
        assert!(message.contains("directly"), "{message}");
        assert_eq!(
            tables_in(&url).await,
            0,
            "refused before touching the catalog"
        );
    }
}
