//! `tenant-plane migrations plan|rehearse|drift`: a dry run of one tenant's migration, a
//! rehearsal of a rollout on a sample of tenants, and a drift check,
//! asked of a running server over gRPC, for an application's pipeline or an operator. Exit
//! codes as for `push`: 0 when all is well, 1 when the answer is a finding (a statement the lint
//! refuses, a drifted tenant), 2 on any other error.

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::push::{BROKEN, Bearer, REFUSED, channel};
use crate::config::{DriftArgs, PlanArgs, RehearseArgs};
use crate::proto::{
    self, check_drift_request::Scope, migration_service_client::MigrationServiceClient,
    tenant_selector::Selector,
};

type Client = MigrationServiceClient<InterceptedService<Channel, Bearer>>;

async fn client(server: &crate::config::ServerArgs) -> Result<Client, u8> {
    let (channel, bearer) = channel(server).await?;
    Ok(MigrationServiceClient::with_interceptor(channel, bearer))
}

fn failed(status: &tonic::Status) -> u8 {
    eprintln!(
        "tenant-plane migrations: {:?}: {}",
        status.code(),
        status.message()
    );
    BROKEN
}

pub(super) async fn plan(args: PlanArgs) -> Result<(), u8> {
    let mut client = client(&args.server).await?;
    let direction = if args.down {
        proto::MigrationDirection::Down
    } else {
        proto::MigrationDirection::Up
    };
    let plan = client
        .plan_migration(proto::PlanMigrationRequest {
            tenant: format!("tenants/{}", args.tenant),
            component: args.component.unwrap_or_default(),
            target_version: args.to.unwrap_or_default(),
            direction: direction.into(),
        })
        .await
        .map_err(|s| failed(&s))?
        .into_inner();
    println!(
        "{} {}: at {}, to {}",
        args.tenant,
        plan.component,
        or_none(&plan.current_version),
        or_none(&plan.target_version)
    );
    let mut refused = false;
    for m in &plan.migrations {
        println!("  {}", m.version);
        for (i, statement) in m.statements.iter().enumerate() {
            println!(
                "    [{i}] {}",
                statement.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        if !m.note.is_empty() {
            println!("    note: {}", m.note);
        }
        for f in &m.lint {
            let error = f.severity == proto::lint_finding::Severity::Error as i32;
            refused |= error;
            println!(
                "    {} statement {}: {}: {}",
                if error { "error:" } else { "note:" },
                f.statement_index,
                f.rule,
                f.message
            );
        }
    }
    if plan.migrations.is_empty() {
        println!("  nothing to run");
    }
    if refused { Err(REFUSED) } else { Ok(()) }
}

pub(super) async fn rehearse(args: RehearseArgs) -> Result<(), u8> {
    let mut client = client(&args.server).await?;
    let rollout = client
        .start_rollout(proto::StartRolloutRequest {
            component: args.component.unwrap_or_default(),
            target_version: args.to.unwrap_or_default(),
            selector: Some(proto::TenantSelector {
                selector: Some(Selector::All(true)),
            }),
            validate_only: true,
            rehearsal_sample_size: args.sample.unwrap_or(0),
            ..Default::default()
        })
        .await
        .map_err(|s| failed(&s))?
        .into_inner();
    let mut refused = false;
    for target in &rollout.rehearsal {
        let took = target.duration.map_or(0.0, |d| {
            d.seconds as f64 * 1000.0 + f64::from(d.nanos) / 1e6
        });
        if target.ok {
            println!(
                "ok      {} {} -> {} ({took:.1} ms)",
                target.tenant,
                or_none(&target.from_version),
                target.to_version
            );
        } else {
            refused = true;
            println!(
                "FAILED  {} at {}: {}",
                target.tenant,
                or_none(&target.from_version),
                target.error
            );
        }
    }
    println!(
        "{} {}: {} tenants rehearsed of {} the rollout would target; nothing was kept",
        rollout.component,
        rollout.target_version,
        rollout.rehearsal.len(),
        rollout.counts.map_or(0, |c| c.total)
    );
    if refused { Err(REFUSED) } else { Ok(()) }
}

pub(super) async fn drift(args: DriftArgs) -> Result<(), u8> {
    let mut client = client(&args.server).await?;
    let scope = match args.tenant {
        Some(tenant) => Scope::Tenant(format!("tenants/{tenant}")),
        None => Scope::Selector(proto::TenantSelector {
            selector: Some(Selector::All(true)),
        }),
    };
    let answer = client
        .check_drift(proto::CheckDriftRequest {
            scope: Some(scope),
            drifted_only: true,
        })
        .await
        .map_err(|s| failed(&s))?
        .into_inner();
    for tenant in &answer.tenants {
        if !tenant.error.is_empty() {
            println!("{}: not checked: {}", tenant.slug, tenant.error);
        }
        for difference in &tenant.differences {
            println!("{}: {difference}", tenant.slug);
        }
    }
    println!(
        "{} checked, {} drifted, {} not checked",
        answer.checked_count, answer.drifted_count, answer.failed_count
    );
    if answer.drifted_count > 0 || answer.failed_count > 0 {
        Err(REFUSED)
    } else {
        Ok(())
    }
}

fn or_none(version: &str) -> &str {
    if version.is_empty() {
        "(none)"
    } else {
        version
    }
}
