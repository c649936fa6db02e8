//! `tenant-plane migrate`: the operators' command line for tenant migrations of any component,
//! working on the catalog directly (no server needed; running servers help with `--all`
//! rollouts) through the same services as the gRPC API. And
//! `tenant-plane migrations push|list` ([`push`]): the applications' command line, a gRPC
//! client of a running server, reading a component's migrations from a directory ([`dir`]).

mod check;
pub mod dir;
mod push;

pub use push::migrations;

use tokio_stream::StreamExt;

use crate::app::App;
use crate::config::{MigrateAction, MigrateArgs};
use crate::domain::{CallContext, Error, RolloutState};
use crate::service::{Direction, SelectorInput, StartRolloutInput, TenantRef};

/// Runs the command; the result is what the process should exit with.
pub async fn migrate(args: MigrateArgs) -> Result<bool, String> {
    let app = App::build(args.config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let services = app.services().clone();
    app.work_until(async move {
        let component = args.component.as_str();
        if args.all {
            return roll_out(
                &services,
                component,
                args.to.unwrap_or_default(),
                args.concurrency,
            )
            .await;
        }
        let name = args.tenant.unwrap_or_default();
        let target = TenantRef::parse(&format!("tenants/{name}"), "--tenant").map_err(describe)?;
        let one = One {
            services: &services,
            target: &target,
            name: &name,
            component,
        };
        match args.action.unwrap_or(MigrateAction::Status) {
            MigrateAction::Status => one.status(false).await,
            MigrateAction::History => one.status(true).await,
            MigrateAction::Up { to } => one.migrate(to, Direction::Up).await,
            MigrateAction::Down { to } => one.migrate(to, Direction::Down).await,
        }
    })
    .await
}

/// The context the command's changes are made under: the command runs beside the server, not
/// through its API, so, as for the server's background jobs, no audit row is written.
fn operator() -> CallContext {
    CallContext::system()
}

/// One tenant's component, as `--tenant` and `--component` name it.
struct One<'a> {
    services: &'a crate::grpc::Services,
    target: &'a TenantRef,
    name: &'a str,
    component: &'a str,
}

impl One<'_> {
    /// `status`, or with `history` every applied migration with its time. A component the
    /// tenant's plan does not list is shown too (it may still be installed), with a note that
    /// `up` and `down` would be refused.
    async fn status(&self, history: bool) -> Result<bool, String> {
        let migrations = &self.services.migrations;
        let status = migrations
            .status(self.target, self.component)
            .await
            .map_err(describe)?;
        if history {
            for (version, at) in &status.applied {
                println!("{}  {version}", at.format("%Y-%m-%d %H:%M:%S UTC"));
            }
        } else {
            println!(
                "{} ({}): at {}",
                self.name,
                status.component,
                status.current_version().unwrap_or("(none)")
            );
            for pending in &status.pending {
                println!("  pending  {pending}");
            }
            if let Some(error) = &status.last_error {
                println!("  last error: {error}");
            }
        }
        let listed = migrations
            .plan_lists(self.target, self.component)
            .await
            .map_err(describe)?;
        if !listed {
            eprintln!(
                "note: the plan of tenant {} does not list component {}: up and down are refused",
                self.name, status.component
            );
        }
        Ok(true)
    }

    async fn migrate(&self, to: Option<String>, direction: Direction) -> Result<bool, String> {
        let done = self
            .services
            .migrations
            .migrate(
                &operator(),
                self.target,
                self.component,
                to.as_deref().unwrap_or(""),
                direction,
                None,
            )
            .await
            .map_err(describe)?;
        for version in &done.ran {
            println!(
                "{} {version}",
                if direction == Direction::Up {
                    "applied "
                } else {
                    "reverted"
                }
            );
        }
        println!(
            "{} ({}): now at {} ({} ms)",
            self.name,
            done.status.component,
            done.status.current_version().unwrap_or("(none)"),
            done.duration.as_millis()
        );
        Ok(true)
    }
}

async fn roll_out(
    services: &crate::grpc::Services,
    component: &str,
    to: String,
    concurrency: Option<u32>,
) -> Result<bool, String> {
    let rollout = services
        .rollouts
        .start(
            &operator(),
            StartRolloutInput {
                component: component.to_owned(),
                target_version: to,
                selector: SelectorInput::All(true),
                max_concurrency: concurrency.map_or(0, |c| c.min(i32::MAX as u32) as i32),
                canary_count: 0,
                error_policy: None,
                max_failure_ratio: 0.0,
                request: None,
                validate_only: false,
                rehearsal_sample_size: 0,
                skip_drifted: false,
            },
        )
        .await
        .map_err(describe)?;
    println!(
        "rollout {} of {} to {}: {} tenants",
        rollout.id,
        rollout.component,
        rollout.target_version,
        rollout.counts.total()
    );
    let mut items = services
        .rollouts
        .watch(rollout.id)
        .await
        .map_err(describe)?;
    while let Some(item) = items.next().await {
        let item = item.map_err(describe)?;
        let c = item.counts;
        if let Some(event) = item.event.as_ref().filter(|e| e.kind == "failed") {
            let error = event
                .detail
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or_default();
            let tenant = event.tenant.map(|t| t.to_string()).unwrap_or_default();
            eprintln!("  failed {tenant}: {error}");
        }
        eprint!(
            "\r  {}/{} done: {} migrated, {} skipped, {} failed, {} running   ",
            c.finished(),
            c.total(),
            c.migrated,
            c.skipped,
            c.failed,
            c.running
        );
    }
    eprintln!();
    let ended = services.rollouts.get(rollout.id).await.map_err(describe)?;
    println!(
        "rollout {}: {}{}",
        ended.id,
        ended.state.as_str(),
        ended.error.map(|e| format!(" ({e})")).unwrap_or_default()
    );
    Ok(ended.state == RolloutState::Succeeded)
}

/// The error as the command's user should read it: a refused field is named by the flag that
/// gave it (the services name the API's fields).
fn describe(error: Error) -> String {
    match error {
        Error::InvalidArgument(violations) => Error::InvalidArgument(
            violations
                .into_iter()
                .map(|mut v| {
                    v.field = match v.field.as_str() {
                        "target_version" => "--to".to_owned(),
                        "max_concurrency" => "--concurrency".to_owned(),
                        _ => v.field,
                    };
                    v
                })
                .collect(),
        )
        .to_string(),
        other => other.to_string(),
    }
}
