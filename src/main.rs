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
        Some(Command::Token(args)) => return token(&args),
        Some(Command::Migrations(args)) => return tenant_plane::cli::migrations(*args).await,
        Some(Command::Migrate(args)) => {
            let telemetry = telemetry::init(args.config.log_format, "warn")
                .map_err(|e| eprintln!("tenant-plane: {e}"))
                .ok();
            let code = match tenant_plane::cli::migrate(*args).await {
                Ok(true) => std::process::ExitCode::SUCCESS,
                Ok(false) => std::process::ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("tenant-plane migrate: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
            if let Some(telemetry) = telemetry {
                telemetry.shutdown().await;
            }
            return code;
        }
        None => Config::from_env(),
    };
    let telemetry = match telemetry::init(config.log_format, &config.log_level) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("tenant-plane: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if telemetry.exports() {
        tracing::info!("exporting traces and metrics over OTLP");
    }
    let code = match serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tenant-plane failed");
            std::process::ExitCode::FAILURE
        }
    };
    // Last: the spans of the drain and of the stop are flushed too.
    telemetry.shutdown().await;
    code
}

async fn serve(config: Config) -> Result<(), tenant_plane::app::StartError> {
    use std::io::IsTerminal;
    let data_dir = config.data_dir.clone();
    let mut app = App::build(config).await?;
    let listener = app.bind().await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = app.uses_tls(), "tenant-plane listening");
    let (scheme, grpcurl) = if app.uses_tls() {
        ("gRPC over TLS", "grpcurl")
    } else {
        ("gRPC", "grpcurl -plaintext")
    };
    let create = format!(
        "-d '{{\"tenant\":{{\"slug\":\"acme\"}}}}' {addr} tenant.v1.TenantService/CreateTenant"
    );
    if app.is_insecure() {
        eprintln!(
            "tenant-plane is serving {scheme} on {addr} WITHOUT authentication (--insecure). Try:\n  {grpcurl} {addr} list\n  {grpcurl} {create}"
        );
    } else if let Some(token) = app.take_new_admin_token() {
        let shown = if std::io::stderr().is_terminal() {
            format!(
                "It is shown\nthis once; only its SHA-256 is kept:\n\n  export TENANT_PLANE_TOKEN={token}"
            )
        } else {
            // A log collector would keep the token for as long as the log.
            match tenant_plane::auth::save_admin_token(&data_dir, &token) {
                Ok(path) => format!(
                    "It was written\nto {path} (readable by this user only), not to this log; only its SHA-256 is kept.\nMove it to your secret store, then delete the file:\n\n  export TENANT_PLANE_TOKEN=$(cat {path})",
                    path = path.display()
                ),
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        dir = %data_dir.display(),
                        "cannot write the new admin token to the data directory; configure \
                         tokens (`tenant-plane token --role admin --name ops`, then \
                         TENANT_PLANE_AUTH_TOKENS) and restart"
                    );
                    "It could not be\nsaved (see the error above) and is not shown here.".to_owned()
                }
            }
        };
        eprintln!(
            "tenant-plane is serving {scheme} on {addr}.\n\nNo bearer tokens were configured, so an admin token was created. {shown}\n\nTry:\n  {grpcurl} {addr} list\n  {grpcurl} -H \"authorization: Bearer $TENANT_PLANE_TOKEN\" {create}"
        );
    } else {
        eprintln!(
            "tenant-plane is serving {scheme} on {addr}; RPCs need `authorization: Bearer <token>`. Try:\n  {grpcurl} {addr} list\n  {grpcurl} -H \"authorization: Bearer $TENANT_PLANE_TOKEN\" {create}"
        );
    }
    app.run(listener, shutdown_signal()).await
}

/// `tenant-plane token`: a new token on stdout, its configuration entry on stderr.
fn token(args: &tenant_plane::auth::TokenArgs) -> std::process::ExitCode {
    use tenant_plane::auth::{TokenSet, hash_token, new_token};
    let token = match new_token() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("tenant-plane token: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let hash = hash_token(&token);
    // The checks the server applies to a configured entry; here only the name can fail them.
    if let Err(why) = TokenSet::default().insert(args.role, &args.name, &hash) {
        eprintln!("tenant-plane token: --name: {why}");
        return std::process::ExitCode::FAILURE;
    }
    let entry = format!("{}:{}:{hash}", args.role.as_str(), args.name);
    println!("{token}");
    eprintln!(
        "Give the token above to its caller; it is not stored anywhere. Configure it with:\n  TENANT_PLANE_AUTH_TOKENS={entry}\n(or one such line in TENANT_PLANE_AUTH_TOKENS_FILE)"
    );
    std::process::ExitCode::SUCCESS
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
