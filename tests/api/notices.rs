//! The catalog's change notices against a tenant's own database role, tried by logging in as
//! it: the role cannot read the notice channel's name, hears nothing on the channel the notices
//! used to go on, and what it sends — even on the real channel, which the test reads as the
//! superuser and hands it — tells no watcher anything and changes no answer; what the server
//! cannot read is counted. The catalog database's CONNECT is no longer PUBLIC's, and the
//! tenant's role still logs in.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tenant_plane::proto;
use tokio_stream::StreamExt;
use tonic::Streaming;

use crate::metrics::{get, samples};
use crate::support::{Db, TestServer, create};
use crate::tenant_roles::{catalog_database, denied, location, log_in, url_as};

/// The channel notices went on before they had a secret one.
const OLD_CHANNEL: &str = "tenant_plane_catalog";

/// Junk payloads the tenant's role sends on the real channel.
const JUNK: usize = 1000;

/// How long a watcher may take to report a change it must report.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

async fn text(db: &DatabaseConnection, sql: &str) -> String {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .try_get::<String>("", "v")
        .expect("text")
}

/// Changes `slug`'s display name in plain SQL as the superuser, past the server, so that only
/// the change notice can tell the server of it.
async fn touch(server: &TestServer, slug: &str, name: &str) {
    let db = server.catalog().await;
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE tenants SET display_name = $1 WHERE slug = $2",
            [name.into(), slug.into()],
        ))
        .await
        .expect("update");
    assert_eq!(done.rows_affected(), 1);
    db.close().await.expect("close");
}

/// The watcher's next event (not a reset).
async fn next_change(watch: &mut Streaming<proto::TenantChange>) -> proto::TenantChange {
    loop {
        let change = tokio::time::timeout(EVENT_DEADLINE, watch.next())
            .await
            .expect("a change within the deadline")
            .expect("the watch goes on")
            .expect("a change");
        if !change.reset {
            return change;
        }
    }
}

/// Skips the watcher's events up to and including the first about `id`.
async fn skip_through(watch: &mut Streaming<proto::TenantChange>, id: &str) {
    while next_change(watch).await.id != id {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_role_can_neither_hear_nor_forge_the_catalogs_change_notices() {
    let server = TestServer::start(Db::Postgres).await;
    let alpha = create(&server, "alpha").await;
    let marker = create(&server, "marker").await;
    let database = catalog_database(&server);
    let (credentials, role) = log_in(&server, &alpha, &database).await;
    let admin = server.catalog().await;
    let channel = text(&admin, "SELECT channel AS v FROM notice_channel").await;
    let before = location(&server, &alpha).await;

    // CONNECT is no longer PUBLIC's: the tenant's role logged in on a grant of its own.
    let public_may = text(
        &admin,
        "SELECT has_database_privilege('public', current_database(), 'CONNECT')::text AS v",
    )
    .await;
    assert_eq!(public_may, "false");

    // The role cannot read the channel's name, nor find it in a function or a session.
    assert_ne!(channel, OLD_CHANNEL);
    denied(&role, "SELECT channel FROM public.notice_channel").await;
    let found = text(
        &role,
        &format!(
            "SELECT ((SELECT count(*) FROM pg_proc WHERE prosrc LIKE '%{channel}%') \
                   + (SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{channel}%' \
                      AND pid <> pg_backend_pid()))::text AS v"
        ),
    )
    .await;
    assert_eq!(
        found, "0",
        "the channel's name is visible to the tenant's role"
    );

    // Listening on the old channel, the role hears nothing of a real change: the probe, sent
    // after the change committed, is the first thing it hears.
    let mut listener = PgListener::connect(&url_as(
        &server,
        &database,
        &credentials.role_name,
        &credentials.password,
    ))
    .await
    .expect("the tenant's role listens");
    listener
        .listen_all([OLD_CHANNEL, "probe"])
        .await
        .expect("LISTEN");
    let mut watch = server
        .tenants()
        .watch_tenant_changes(proto::WatchTenantChangesRequest::default())
        .await
        .expect("watch")
        .into_inner();
    touch(&server, "alpha", "Alpha, renamed").await;
    admin
        .execute_unprepared("NOTIFY probe, 'after'")
        .await
        .expect("probe");
    let heard = listener.recv().await.expect("a notification");
    assert_eq!(
        (heard.channel(), heard.payload()),
        ("probe", "after"),
        "the tenant's role heard a catalog change"
    );
    // The watcher is told of the real change, and of everything before the marker's.
    skip_through(&mut watch, &alpha.id).await;
    touch(&server, "marker", "Marker 1").await;
    skip_through(&mut watch, &marker.id).await;
    let (_, _, body) = get(server.metrics_addr.expect("on in tests"), "/metrics").await;
    let counted = samples(&body);
    let unchanged_before = counted["tenant_plane_catalog_notices_total{outcome=\"unchanged\"}"];

    // Forgeries, on the old channel and on the real one.
    let forged = format!(
        "SELECT pg_notify('{OLD_CHANNEL}', 'tenant:{id}:forged'), \
                pg_notify('{channel}', 'tenant:{id}'), \
                pg_notify('{channel}', 'tenants:{id},{id}'), \
                pg_notify('{channel}', 'tenant:{id}:forged'), \
                pg_notify('{channel}', 'api_key:{hash}'); \
         SELECT pg_notify('{channel}', 'junk:' || g) FROM generate_series(1, {junk}) AS g",
        id = alpha.id,
        hash = "ab".repeat(32),
        junk = JUNK - 2,
    );
    role.execute_unprepared(&forged)
        .await
        .expect("PostgreSQL lets any role NOTIFY");
    touch(&server, "marker", "Marker 2").await;

    // The next change the watcher hears of is the marker's: the forgeries told it nothing.
    assert_eq!(next_change(&mut watch).await.id, marker.id);
    assert_eq!(location(&server, &alpha).await, before);
    let (_, _, body) = get(server.metrics_addr.expect("on in tests"), "/metrics").await;
    let counted = samples(&body);
    assert_eq!(
        counted["tenant_plane_catalog_notices_total{outcome=\"unrecognised\"}"],
        JUNK as f64
    );
    assert_eq!(
        counted["tenant_plane_catalog_notices_total{outcome=\"unchanged\"}"] - unchanged_before,
        3.0,
        "the three well-formed forgeries were found to change nothing"
    );
    assert!(counted["tenant_plane_catalog_notices_total{outcome=\"applied\"}"] >= 3.0);

    listener.unlisten_all().await.expect("UNLISTEN");
    role.close().await.expect("close");
    admin.close().await.expect("close");
    server.stop().await;
}
