//! `tenant-plane migrations push|list`: a component's migrations pushed to a running server
//! over gRPC, the command an application's CI runs on every merge. Unlike `migrate`, it needs
//! no access to the catalog: only the server's address and a token (admin or service role).
//!
//! Exit codes, so a pipeline can tell a bad migration from a bad pipeline:
//! * 0: pushed (or, with `--validate-only`, would be);
//! * 1: the server refused the migrations: a lint error, a changed or reordered history, a
//!   malformed file's content;
//! * 2: anything else: usage, an unreadable or misnamed file, no connection, bad credentials.

use std::process::ExitCode;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use super::dir::{self, LocalMigration};
use crate::config::{MigrationsAction, MigrationsArgs, PushArgs, ServerArgs};
use crate::proto::{self, component_service_client::ComponentServiceClient};

/// The server refused what was pushed.
pub(super) const REFUSED: u8 = 1;
/// Usage, files, connection or credentials.
pub(super) const BROKEN: u8 = 2;

type Client = ComponentServiceClient<InterceptedService<Channel, Bearer>>;

/// Sends `authorization: Bearer <token>` with every call, when a token was given.
#[derive(Clone)]
pub(super) struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Runs `tenant-plane migrations ...`; the result is the process's exit code.
pub async fn migrations(args: MigrationsArgs) -> ExitCode {
    let code = match args.action {
        MigrationsAction::Push(args) => push(args).await,
        MigrationsAction::List { component, server } => list(component, server).await,
        MigrationsAction::Plan(args) => super::check::plan(args).await,
        MigrationsAction::Drift(args) => super::check::drift(args).await,
        MigrationsAction::Rehearse(args) => super::check::rehearse(args).await,
    };
    match code {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

async fn push(args: PushArgs) -> Result<(), u8> {
    let local = dir::read(&args.dir).map_err(|e| {
        eprintln!("tenant-plane migrations push: {e}");
        BROKEN
    })?;
    let mut client = connect(&args.server).await?;
    let component = format!("components/{}", args.component);
    ensure_component(&mut client, &args).await?;

    let request = proto::PushMigrationsRequest {
        component: component.clone(),
        migrations: local.iter().map(to_wire).collect(),
        allow: Some(proto::LintAllowances {
            destructive: args.allow_destructive,
            ..Default::default()
        }),
        validate_only: args.validate_only,
    };
    let answer = match client.push_migrations(request).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => return Err(report_refusal(&status, &local)),
    };
    let verb = if args.validate_only {
        "would register"
    } else {
        "registered"
    };
    for version in &answer.unchanged {
        println!("unchanged       {version}");
    }
    for m in &answer.registered {
        println!(
            "{verb:<15} {}{}",
            m.version,
            if m.destructive { "  (destructive)" } else { "" }
        );
        for f in &m.findings {
            println!(
                "    note: {} statement {}: {}: {}",
                f.script, f.statement_index, f.rule, f.message
            );
        }
    }
    let latest = answer
        .component
        .as_ref()
        .map(|c| c.latest_version.as_str())
        .filter(|v| !v.is_empty())
        .unwrap_or("(none)");
    println!(
        "{}: {} {verb}, {} unchanged; latest {latest}",
        args.component,
        answer.registered.len(),
        answer.unchanged.len()
    );
    Ok(())
}

/// Creates the component unless it exists. An existing one is left as it is: its description
/// and owner are the registry's, not each pipeline's.
async fn ensure_component(client: &mut Client, args: &PushArgs) -> Result<(), u8> {
    let name = format!("components/{}", args.component);
    match client
        .get_component(proto::GetComponentRequest { name: name.clone() })
        .await
    {
        Ok(found) => {
            let found = found.into_inner();
            let differs = |flag: &Option<String>, value: &str| {
                flag.as_deref().is_some_and(|flag| flag != value)
            };
            if differs(&args.description, &found.description) || differs(&args.owner, &found.owner)
            {
                eprintln!(
                    "note: {name} exists with description {:?} and owner {:?}; left as it is",
                    found.description, found.owner
                );
            }
            return Ok(());
        }
        Err(status) if status.code() == Code::NotFound => {}
        Err(status) => return Err(report_refusal(&status, &[])),
    }
    let component = proto::Component {
        component_id: args.component.clone(),
        description: args.description.clone().unwrap_or_default(),
        owner: args.owner.clone().unwrap_or_default(),
        ..Default::default()
    };
    match client
        .create_component(proto::CreateComponentRequest {
            component: Some(component),
        })
        .await
    {
        Ok(_) => {
            println!("created         {name}");
            Ok(())
        }
        // Another pipeline created it in between.
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(report_refusal(&status, &[])),
    }
}

async fn list(component: Option<String>, server: ServerArgs) -> Result<(), u8> {
    let mut client = connect(&server).await?;
    let Some(component) = component else {
        let mut token = String::new();
        loop {
            let page = client
                .list_components(proto::ListComponentsRequest {
                    page_size: 1000,
                    page_token: token,
                })
                .await
                .map_err(|s| report_refusal(&s, &[]))?
                .into_inner();
            for c in &page.components {
                println!(
                    "{:<24} {:>5} migrations  latest {:<32} {}{}",
                    c.component_id,
                    c.migration_count,
                    if c.latest_version.is_empty() {
                        "(none)"
                    } else {
                        &c.latest_version
                    },
                    c.owner,
                    if c.compiled { " (compiled)" } else { "" }
                );
            }
            if page.next_page_token.is_empty() {
                return Ok(());
            }
            token = page.next_page_token;
        }
    };
    let mut token = String::new();
    loop {
        let page = client
            .list_component_migrations(proto::ListComponentMigrationsRequest {
                parent: format!("components/{component}"),
                page_size: 1000,
                page_token: token,
            })
            .await
            .map_err(|s| report_refusal(&s, &[]))?
            .into_inner();
        for m in &page.migrations {
            let checksum = m.checksum.get(..12).unwrap_or("(compiled)");
            println!(
                "{:>4}  {:<48} {checksum}{}",
                m.index,
                m.version,
                if m.destructive { "  destructive" } else { "" }
            );
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

/// A ComponentService client on [`channel`].
async fn connect(server: &ServerArgs) -> Result<Client, u8> {
    let (channel, bearer) = channel(server).await?;
    // A push's answer repeats the scripts it registered: as large as the push itself.
    Ok(ComponentServiceClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(crate::grpc::MAX_PUSH_BYTES)
        .max_encoding_message_size(crate::grpc::MAX_PUSH_BYTES))
}

/// A channel to `--server`, and the interceptor that carries `--token` with every call.
pub(super) async fn channel(server: &ServerArgs) -> Result<(Channel, Bearer), u8> {
    let broken = |what: String| {
        eprintln!("tenant-plane migrations: {what}");
        BROKEN
    };
    let timeout = Duration::from_secs(server.timeout_secs.max(1));
    let mut endpoint = Endpoint::from_shared(server.server.clone())
        .map_err(|e| broken(format!("--server {}: {e}", server.server)))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if server.server.starts_with("https://") {
        let Some(ca) = &server.ca_cert else {
            return Err(broken(
                "an https:// server needs --ca-cert, the PEM of the CA that signed its certificate"
                    .into(),
            ));
        };
        let pem = std::fs::read(ca).map_err(|e| broken(format!("{}: {e}", ca.display())))?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .map_err(|e| broken(format!("TLS: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| broken(format!("cannot connect to {}: {e}", server.server)))?;
    let header: Option<MetadataValue<Ascii>> = match &server.token {
        Some(token) => Some(
            format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| broken("the token is not printable ASCII".into()))?,
        ),
        None => None,
    };
    Ok((channel, Bearer(header)))
}

fn to_wire(m: &LocalMigration) -> proto::ComponentMigration {
    proto::ComponentMigration {
        version: m.version.clone(),
        description: m.description.clone(),
        up_sql: m.up_sql.clone(),
        down_sql: m.down_sql.clone(),
        sqlite_up_sql: m.sqlite_up_sql.clone(),
        sqlite_down_sql: m.sqlite_down_sql.clone(),
        ..Default::default()
    }
}

/// Prints why the server refused, readably, and returns the exit code: [`REFUSED`] when the
/// migrations are at fault, [`BROKEN`] otherwise.
fn report_refusal(status: &Status, local: &[LocalMigration]) -> u8 {
    let code = match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => REFUSED,
        _ => BROKEN,
    };
    eprintln!("refused ({:?}): {}", status.code(), status.message());
    if let Some(bad) = status.get_details_bad_request() {
        for v in &bad.field_violations {
            // `migrations[2].up_sql` names the file it came from.
            let file = v
                .field
                .strip_prefix("migrations[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(i, script)| {
                    let m = local.get(i.parse::<usize>().ok()?)?;
                    let suffix = match script.trim_start_matches('.') {
                        "down_sql" => ".down.sql",
                        "sqlite_up_sql" => ".up.sqlite.sql",
                        "sqlite_down_sql" => ".down.sqlite.sql",
                        _ => ".up.sql",
                    };
                    Some(format!("{}{suffix}", m.version))
                });
            match file {
                Some(file) => eprintln!("  {file}: {}", v.description),
                None => eprintln!("  {}: {}", v.field, v.description),
            }
        }
    }
    if let Some(info) = status.get_details_error_info() {
        let mut metadata: Vec<_> = info
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != "request_id")
            .collect();
        metadata.sort();
        for (key, value) in metadata {
            eprintln!("  {key}: {value}");
        }
    }
    code
}
