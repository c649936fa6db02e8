//! What every deployment relies on: health, reflection, clear UNIMPLEMENTED answers, request
//! ids, safe concurrent start-up and an orderly stop on SIGTERM.

use std::time::Duration;

use tenant_plane::{app::App, config::Config, proto};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{Db, TestServer, postgres, try_eventually};

#[tokio::test]
async fn health_reports_serving_for_the_server_and_every_service() {
    let server = TestServer::start(Db::Sqlite).await;
    let mut health = HealthClient::new(server.channel.clone());
    for service in [
        "",
        "tenant.v1.TenantService",
        "tenant.v1.ProvisioningService",
        "tenant.v1.MigrationService",
        "tenant.v1.QuotaService",
        "tenant.v1.PlanService",
        "tenant.v1.ComponentService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("{service}: {s:?}"))
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service_and_describe_error_details() {
    let server = TestServer::start(Db::Sqlite).await;

    let v1 = {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(server.channel.clone());
        let requests = [
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "google.rpc.BadRequest".into(),
                )),
            },
        ];
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect("reflection v1")
            .into_inner();
        let mut services = Vec::new();
        let mut found_bad_request = false;
        while let Some(response) = responses.message().await.expect("reflection response") {
            match response.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    services = list.service.into_iter().map(|s| s.name).collect::<Vec<_>>();
                }
                Some(MessageResponse::FileDescriptorResponse(files)) => {
                    found_bad_request = !files.file_descriptor_proto.is_empty()
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }
        assert!(
            found_bad_request,
            "google.rpc types are registered, so grpcurl can print error details"
        );
        services
    };
    for service in [
        "tenant.v1.TenantService",
        "tenant.v1.ProvisioningService",
        "tenant.v1.MigrationService",
        "tenant.v1.QuotaService",
        "tenant.v1.PlanService",
        "tenant.v1.ComponentService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            v1.iter().any(|s| s == service),
            "{service} missing from {v1:?}"
        );
    }

    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(server.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses
        .message()
        .await
        .expect("v1alpha answer")
        .and_then(|r| r.message_response)
    else {
        panic!("v1alpha did not list services");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "tenant.v1.TenantService")
    );
    server.stop().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_caller_supplied_one_is_kept() {
    let server = TestServer::start(Db::Sqlite).await;
    let mut client = server.tenants();
    let mut request = tonic::Request::new(proto::GetTenantRequest {
        name: "tenants/nobody".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "req-123".parse().expect("ascii"));
    let status = client.get_tenant(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-123")
    );

    let generated = client
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .expect("list");
    let id = generated
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a request id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    server.stop().await;
}

async fn start_two_at_once(database_url: Option<String>, dir: &std::path::Path) {
    let build = |_: u8| App::build(Config::for_tests(dir.to_path_buf(), database_url.clone()));
    let (a, b) = tokio::join!(build(1), build(2));
    let (mut a, mut b) = (
        a.expect("first instance starts"),
        b.expect("second instance starts"),
    );
    // Neither has tokens configured: binding at once, exactly one creates the admin token, and
    // both accept it.
    let (la, lb) = tokio::join!(a.bind(), b.bind());
    let (la, lb) = (la.expect("bind"), lb.expect("bind"));
    let made = [a.take_new_admin_token(), b.take_new_admin_token()];
    let made: Vec<String> = made.into_iter().flatten().collect();
    assert_eq!(
        made.len(),
        1,
        "exactly one instance creates the admin token"
    );
    let token = made[0].clone();
    // Both instances serve the same catalog: a tenant made through one is seen by the other.
    let (addr_a, addr_b) = (
        la.local_addr().expect("addr"),
        lb.local_addr().expect("addr"),
    );
    let (stop_a, stop_b) = (
        tokio::sync::oneshot::channel::<()>(),
        tokio::sync::oneshot::channel::<()>(),
    );
    let ta = tokio::spawn(a.run(la, async move {
        let _ = stop_a.1.await;
    }));
    let tb = tokio::spawn(b.run(lb, async move {
        let _ = stop_b.1.await;
    }));
    let connect = |addr: std::net::SocketAddr| {
        let token = token.clone();
        async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            proto::tenant_service_client::TenantServiceClient::new(crate::support::with_token(
                channel, &token,
            ))
        }
    };
    let (mut client_a, mut client_b) = (connect(addr_a).await, connect(addr_b).await);
    client_a
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(crate::support::new_tenant("common")),
            ..Default::default()
        })
        .await
        .expect("create through a");
    let seen = client_b
        .get_tenant(proto::GetTenantRequest {
            name: "tenants/common".into(),
        })
        .await
        .expect("read through b");
    assert_eq!(seen.into_inner().slug, "common");
    let _ = (stop_a.0.send(()), stop_b.0.send(()));
    ta.await.expect("a task").expect("a stops cleanly");
    tb.await.expect("b task").expect("b stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_starting_at_once_on_one_postgres_catalog_both_come_up() {
    let url = postgres::fresh_database_url().await;
    let dir = tempfile::tempdir().expect("dir");
    start_two_at_once(Some(url), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_starting_at_once_on_one_sqlite_catalog_both_come_up() {
    let dir = tempfile::tempdir().expect("dir");
    start_two_at_once(None, dir.path()).await;
}

#[tokio::test]
async fn restarting_on_an_existing_catalog_keeps_its_tenants() {
    let dir = tempfile::tempdir().expect("dir");
    let config = || {
        let mut config = Config::for_tests(dir.path().to_path_buf(), None);
        config.auth.auth_tokens = crate::support::token_entries();
        config
    };
    let mut first = App::build(config()).await.expect("first start");
    let listener = first.bind().await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(first.run(listener, async move {
        let _ = stopped.await;
    }));
    let mut client = admin_client(addr).await;
    client
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(crate::support::new_tenant("kept")),
            ..Default::default()
        })
        .await
        .expect("create");
    let _ = stop.send(());
    task.await.expect("task").expect("clean stop");

    let mut second = App::build(config())
        .await
        .expect("restart migrates idempotently");
    let listener = second.bind().await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(second.run(listener, async move {
        let _ = stopped.await;
    }));
    let mut client = admin_client(addr).await;
    let kept = client
        .get_tenant(proto::GetTenantRequest {
            name: "tenants/kept".into(),
        })
        .await
        .expect("still there");
    assert_eq!(kept.into_inner().slug, "kept");
    let _ = stop.send(());
    task.await.expect("task").expect("clean stop");
}

#[tokio::test]
async fn the_binary_starts_with_no_configuration_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
        .env_clear()
        .env("TENANT_PLANE_DATA_DIR", dir.path())
        .env("TENANT_PLANE_LISTEN", format!("127.0.0.1:{port}"))
        // Any free port: tests run side by side, and the default one may be taken.
        .env("TENANT_PLANE_METRICS_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the binary");

    let endpoint =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("uri");
    let status = try_eventually("the binary answers", Duration::from_secs(10), async || {
        let channel = endpoint.connect().await.ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .ok()?;
        Some(answer.into_inner().status())
    })
    .await;
    let serving = status.as_ref().is_ok_and(|s| *s == ServingStatus::Serving);
    if !serving {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(serving, "the binary did not come up: {status:?}");
    let probe = |port: u16| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tenant-plane"))
            .args(["health", "--addr", &format!("127.0.0.1:{port}")])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the health probe")
    };
    assert!(
        probe(port).success(),
        "the container health probe sees SERVING"
    );
    assert!(
        dir.path().join("catalog.sqlite3").exists(),
        "the embedded catalog is created under the data dir"
    );

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exited = try_eventually(
        "the binary's exit after SIGTERM",
        Duration::from_secs(10),
        async || child.try_wait().expect("wait"),
    )
    .await;
    let exit = exited.unwrap_or_else(|timed_out| {
        let _ = child.kill();
        panic!("{timed_out}");
    });
    assert!(exit.success(), "{exit:?}");
    assert!(
        !probe(port).success(),
        "the probe fails once the server is gone"
    );
}

/// A tenant client of the server at `addr`, with the test admin token.
async fn admin_client(
    addr: std::net::SocketAddr,
) -> proto::tenant_service_client::TenantServiceClient<crate::support::Conn> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    proto::tenant_service_client::TenantServiceClient::new(crate::support::with_token(
        channel,
        crate::support::ADMIN_TOKEN,
    ))
}
