//! `tenant-plane`: configuration -> telemetry -> app -> run until SIGTERM/SIGINT.

use clap::Parser;
use tenant_plane::{
    app::App,
    config::{Cli, Command, Config, HealthArgs},
    telemetry,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match cli.command {
        Some(Command::Serve(config)) => *config,
        Some(Command::Health(args)) => return health(args).await,
        Some(Command::Migrate(args)) => {
            if let Err(e) = telemetry::init(args.config.log_format, "warn") {
                eprintln!("tenant-plane: {e}");
            }
            return match tenant_plane::cli::migrate(*args).await {
                Ok(true) => std::process::ExitCode::SUCCESS,
                Ok(false) => std::process::ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("tenant-plane migrate: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        None => Config::from_env(),
    };
    if let Err(e) = telemetry::init(config.log_format, &config.log_level) {
        eprintln!("tenant-plane: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tenant-plane failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), tenant_plane::app::StartError> {
    let app = App::build(config).await?;
    let listener = app.bind().await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "tenant-plane listening");
    eprintln!(
        "tenant-plane is serving gRPC on {addr}. Try:\n  grpcurl -plaintext {addr} list\n  grpcurl -plaintext -d '{{\"tenant\":{{\"slug\":\"acme\"}}}}' {addr} tenant.v1.TenantService/CreateTenant"
    );
    app.run(listener, shutdown_signal()).await
}

/// `tenant-plane health`: exit 0 when the server answers SERVING.
async fn health(args: HealthArgs) -> std::process::ExitCode {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let timeout = std::time::Duration::from_secs(args.timeout_secs);
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.addr))?
            .connect_timeout(timeout)
            .connect()
            .await?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(answer.into_inner().status())
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(ServingStatus::Serving)) => std::process::ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("tenant-plane at {} is {}", args.addr, status.as_str_name());
            std::process::ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("tenant-plane at {} did not answer: {e}", args.addr);
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "tenant-plane at {} did not answer within {timeout:?}",
                args.addr
            );
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (container stop).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
