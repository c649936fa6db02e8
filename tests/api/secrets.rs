//! Secrets never reach the logs or the traces: the real binary on PostgreSQL, logging at debug
//! and exporting every span (each SQL statement is one), makes a tenant's role password twice.

use tenant_plane::proto::{self, tenant_service_client::TenantServiceClient};

use crate::otel::{Process, collector, drain};
use crate::support::postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_appears_in_no_log_line_and_no_exported_span() {
    let (endpoint, mut exports) = collector().await;
    let catalog = postgres::fresh_database_url().await;
    let dir = tempfile::tempdir().expect("data dir");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let process = Process::start_logging_to(
        dir.path(),
        &[
            ("DATABASE_URL", &catalog),
            ("TENANT_PLANE_LOG", "debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
        log,
    )
    .await;
    let mut tenants = TenantServiceClient::new(process.channel.clone());
    tenants
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(proto::Tenant {
                slug: "acme".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create");
    let mut passwords = Vec::new();
    for _ in 0..2 {
        let rotated = tenants
            .rotate_tenant_credentials(proto::RotateTenantCredentialsRequest {
                name: "tenants/acme".into(),
            })
            .await
            .expect("rotate")
            .into_inner();
        assert!(rotated.password.len() >= 40, "{}", rotated.role_name);
        passwords.push(rotated.password);
    }
    process.stop().await;

    let log = std::fs::read_to_string(&log_path).expect("read the log");
    assert!(
        log.contains("RotateTenantCredentials"),
        "the log covers the calls: {} bytes",
        log.len()
    );
    let received = drain(&mut exports);
    let spans = format!("{:?}", received.traces);
    // The statement that hands PostgreSQL the new verifier is among the exported spans.
    assert!(
        spans.contains("RotateTenantCredentials") && spans.contains("set_config"),
        "the RPC and the statement that sets the password were exported"
    );
    for password in &passwords {
        assert!(!log.contains(password.as_str()), "a password in the log");
        assert!(!spans.contains(password.as_str()), "a password in a span");
    }
}
