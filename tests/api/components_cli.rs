//! `tenant-plane migrations push|list`, run as a process against a real server: a directory
//! pushed, pushed again, grown, changed and misnamed, with the exit code a pipeline reads.

use std::path::Path;
use std::process::Output;

use crate::components::list_migrations;
use crate::support::{ADMIN_TOKEN, Db, SERVICE_TOKEN, TestServer};

fn migrations(server: &TestServer, args: &[&str]) -> Output {
    migrations_as(server, SERVICE_TOKEN, args)
}

/// `tenant-plane migrations ...` with `token` (the service role's in a pipeline; a rehearsal
/// runs DDL in real tenants, and needs the admin role).
fn migrations_as(server: &TestServer, token: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
        .env_clear()
        // The token from the environment, as a CI secret would be given.
        .env("TENANT_PLANE_TOKEN", token)
        .arg("migrations")
        .args(args)
        .args(["--server", &format!("http://{}", server.addr)])
        .output()
        .expect("run tenant-plane migrations")
}

fn push(server: &TestServer, dir: &Path) -> Output {
    let dir = dir.to_str().expect("a UTF-8 temp path");
    migrations(
        server,
        &[
            "push",
            "--component",
            "billing",
            "--dir",
            dir,
            "--owner",
            "payments",
        ],
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write a migration file");
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_push_registers_a_directory_and_exits_by_what_went_wrong() {
    let server = TestServer::start(Db::Postgres).await;
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "0001_create_invoices.up.sql",
        "-- description: Invoices, one row each\nCREATE TABLE invoices (id bigint PRIMARY KEY);",
    );
    write(
        dir.path(),
        "0001_create_invoices.down.sql",
        "DROP TABLE invoices;",
    );
    write(
        dir.path(),
        "0001_create_invoices.up.sqlite.sql",
        "CREATE TABLE invoices (id integer PRIMARY KEY);",
    );

    // The first push creates the component and registers the migration.
    let first = push(&server, dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(
        text(&first).contains("created         components/billing"),
        "{}",
        text(&first)
    );
    assert!(
        text(&first).contains("registered      0001_create_invoices"),
        "{}",
        text(&first)
    );
    let registered = list_migrations(&server, "billing").await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].description, "Invoices, one row each");
    assert_eq!(registered[0].down_sql, "DROP TABLE invoices;");

    // Again, and then grown by one: unchanged, then the new one registered.
    let again = push(&server, dir.path());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("unchanged       0001_create_invoices"),
        "{}",
        text(&again)
    );
    write(
        dir.path(),
        "0002_invoice_number.up.sql",
        "ALTER TABLE invoices ADD COLUMN number text;",
    );
    let grown = push(&server, dir.path());
    assert_eq!(grown.status.code(), Some(0), "{}", text(&grown));
    assert!(
        text(&grown).contains("registered      0002_invoice_number"),
        "{}",
        text(&grown)
    );
    assert_eq!(list_migrations(&server, "billing").await.len(), 2);

    let listed = migrations(&server, &["list", "--component", "billing"]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    assert!(
        text(&listed).contains("0002_invoice_number"),
        "{}",
        text(&listed)
    );

    // A registered file edited: refused, exit 1, both checksums shown; nothing registered.
    write(
        dir.path(),
        "0001_create_invoices.up.sql",
        "CREATE TABLE invoices (id bigint PRIMARY KEY, total numeric);",
    );
    write(
        dir.path(),
        "0003_more.up.sql",
        "CREATE TABLE more (id int);",
    );
    let changed = push(&server, dir.path());
    assert_eq!(changed.status.code(), Some(1), "{}", text(&changed));
    assert!(
        text(&changed).contains("registered_checksum"),
        "{}",
        text(&changed)
    );
    assert!(
        text(&changed).contains("pushed_checksum"),
        "{}",
        text(&changed)
    );
    assert_eq!(list_migrations(&server, "billing").await.len(), 2);

    // A statement that does not parse: refused, exit 1, naming its file.
    std::fs::remove_file(dir.path().join("0001_create_invoices.up.sql")).expect("rm");
    write(
        dir.path(),
        "0001_create_invoices.up.sql",
        "-- description: Invoices, one row each\nCREATE TABLE invoices (id bigint PRIMARY KEY);",
    );
    write(dir.path(), "0003_more.up.sql", "CREATE TABLE (;");
    let unparsable = push(&server, dir.path());
    assert_eq!(unparsable.status.code(), Some(1), "{}", text(&unparsable));
    assert!(
        text(&unparsable).contains("0003_more.up.sql"),
        "{}",
        text(&unparsable)
    );

    // A misnamed file: exit 2 before anything is sent, naming it.
    write(
        dir.path(),
        "0003_more.up.sql",
        "CREATE TABLE more (id int);",
    );
    write(dir.path(), "0004_typo.sql", "SELECT 1;");
    let misnamed = push(&server, dir.path());
    assert_eq!(misnamed.status.code(), Some(2), "{}", text(&misnamed));
    assert!(
        text(&misnamed).contains("0004_typo.sql"),
        "{}",
        text(&misnamed)
    );
    assert_eq!(list_migrations(&server, "billing").await.len(), 2);

    // No server there: exit 2.
    let addr = server.addr;
    server.stop().await;
    let unreachable = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
        .env_clear()
        .args(["migrations", "list", "--timeout-secs", "2"])
        .args(["--server", &format!("http://{addr}")])
        .output()
        .expect("run tenant-plane migrations");
    assert_eq!(unreachable.status.code(), Some(2), "{}", text(&unreachable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_plan_and_drift_answer_a_pipeline_with_their_exit_code() {
    let server = TestServer::start(Db::Postgres).await;
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "0001_create_invoices.up.sql",
        "CREATE TABLE invoices (id bigint PRIMARY KEY);\nCREATE INDEX invoices_id ON invoices (id);",
    );
    assert!(push(&server, dir.path()).status.success());
    crate::components_runs::plan_with(&server, "free", &["sample"]).await;
    let acme = crate::support::create(&server, "acme").await;
    crate::components_runs::plan_with(&server, "free", &["sample", "billing"]).await;

    let plan = migrations(
        &server,
        &["plan", "--tenant", "acme", "--component", "billing"],
    );
    let clean = migrations(&server, &["drift", "--tenant", "acme"]);
    let conn = server.tenant_conn(&acme).await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &conn,
        "CREATE INDEX users_by_hand ON users (name)",
    )
    .await
    .expect("an index by hand");
    conn.close().await.expect("close");
    let drifted = migrations(&server, &["drift"]);
    let rehearsed = migrations_as(
        &server,
        ADMIN_TOKEN,
        &["rehearse", "--component", "billing"],
    );
    write(
        dir.path(),
        "0002_fails.up.sql",
        "ALTER TABLE no_such_table ADD COLUMN x integer;",
    );
    assert!(push(&server, dir.path()).status.success());
    let failing = migrations_as(
        &server,
        ADMIN_TOKEN,
        &["rehearse", "--component", "billing"],
    );

    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let planned = text(&plan);
    assert!(planned.contains("0001_create_invoices"), "{planned}");
    assert!(
        planned.contains("[1] CREATE INDEX invoices_id ON invoices (id)"),
        "{planned}"
    );
    assert!(
        !server
            .tenant_tables(&acme)
            .await
            .contains(&"invoices".to_owned()),
        "a plan runs nothing"
    );
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert_eq!(drifted.status.code(), Some(1), "{}", text(&drifted));
    assert!(
        text(&drifted).contains("acme: extra index users_by_hand"),
        "{}",
        text(&drifted)
    );
    assert_eq!(rehearsed.status.code(), Some(0), "{}", text(&rehearsed));
    assert!(text(&rehearsed).contains("ok "), "{}", text(&rehearsed));
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing));
    assert!(
        text(&failing).contains("no_such_table"),
        "{}",
        text(&failing)
    );
    assert!(
        !server
            .tenant_tables(&acme)
            .await
            .contains(&"invoices".to_owned()),
        "a rehearsal keeps nothing"
    );
    server.stop().await;
}
