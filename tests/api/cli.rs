//! `tenant-plane migrate`, the operators' command line, run as a process on a real catalog.

use crate::support::{Db, TestServer, create};

pub fn migrate(catalog: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
        .env_clear()
        .env("DATABASE_URL", catalog)
        .env("TENANT_PLANE_DATA_DIR", std::env::temp_dir())
        .arg("migrate")
        .args(args)
        .output()
        .expect("run tenant-plane migrate")
}

pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_shows_status_moves_one_tenant_and_rolls_out_to_all() {
    let server = TestServer::start(Db::Postgres).await;
    create(&server, "acme").await;
    create(&server, "globex").await;
    let catalog = server.catalog_url.clone();
    server.stop().await;

    let down = migrate(&catalog, &["--tenant", "acme", "down"]);
    assert!(down.status.success(), "{down:?}");
    assert!(
        stdout(&down).contains("reverted m20261207_100005_tenant_scoped_keys"),
        "{}",
        stdout(&down)
    );

    let status = migrate(&catalog, &["--tenant", "acme", "status"]);
    assert!(status.status.success(), "{status:?}");
    assert!(
        stdout(&status).contains("at m20261123_100004_create_audit_log"),
        "{}",
        stdout(&status)
    );
    assert!(stdout(&status).contains("pending  m20261207_100005_tenant_scoped_keys"));

    let all = migrate(&catalog, &["--all", "--concurrency", "2"]);
    assert!(all.status.success(), "{all:?}");
    assert!(stdout(&all).contains("SUCCEEDED"), "{}", stdout(&all));

    let history = migrate(&catalog, &["--tenant", "acme", "history"]);
    assert_eq!(stdout(&history).lines().count(), 5, "{}", stdout(&history));

    let unknown = migrate(&catalog, &["--tenant", "nobody", "status"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("not found"),
        "{unknown:?}"
    );
    let to_unknown = migrate(&catalog, &["--tenant", "acme", "up", "--to", "m1_nope"]);
    assert!(!to_unknown.status.success());
}
