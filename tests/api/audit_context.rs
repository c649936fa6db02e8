//! The audit row a call owes travels in the call's explicit context, not in the task that runs
//! it: a use case whose catalog write runs in a task of its own still commits the row with its
//! change, naming the call's actor and request id. (While the row lived in a task-local, a write
//! from a spawned task found none and the change went unaudited.)

use std::{num::NonZeroUsize, sync::Arc, time::Duration};

use tenant_plane::clock::Clock;
use tenant_plane::domain::{Actor, AuditRow, CallContext, CallerRole, Principal};
use tenant_plane::service::{IsolationInput, PlanFields, Plans, UpsertPlanInput};
use tenant_plane::store::{AuditQuery, Catalog, PoolSettings};

const UPSERT_PLAN: &str = "tenant.v1.PlanService/UpsertPlan";

/// A migrated SQLite catalog in `dir`.
async fn catalog(dir: &std::path::Path) -> Catalog {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.join("catalog.sqlite3").display()
    );
    let catalog = Catalog::connect(
        &url,
        &PoolSettings {
            max_connections: 4,
            rollout_connections: 1,
            acquire_timeout: Duration::from_secs(10),
            cache_capacity: NonZeroUsize::new(16).expect("non-zero"),
            catalog_schema: Default::default(),
        },
        Clock::system(),
    )
    .await
    .expect("the catalog opens");
    catalog.migrate().await.expect("the catalog migrates");
    catalog
}

fn new_plan(id: &str) -> UpsertPlanInput {
    UpsertPlanInput {
        components: Default::default(),
        name: format!("plans/{id}"),
        plan_id: String::new(),
        display_name: String::new(),
        default_isolation: IsolationInput::Unspecified,
        limits: Vec::new(),
        fields: PlanFields::ALL,
        etag: String::new(),
        request: None,
        violations: Vec::new(),
    }
}

#[tokio::test]
async fn a_use_case_run_in_a_spawned_task_commits_its_audit_row_with_its_change() {
    // Arrange: the context an audited UpsertPlan call gets from the gRPC layers.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let catalog = catalog(dir.path()).await;
    let plans = Plans::new(catalog.clone());
    let row = AuditRow::new(UPSERT_PLAN, catalog.clock().clone());
    let ops = Arc::new(Principal {
        role: CallerRole::Admin,
        name: "ops".into(),
    });
    let ctx = CallContext::rpc("req-spawned", Actor::Token(ops), Some(Arc::clone(&row)));

    // Act: the use case, and so its catalog write, runs in a task of its own.
    let task = tokio::spawn({
        let (plans, ctx) = (plans.clone(), ctx.clone());
        async move { plans.upsert(&ctx, new_plan("gold")).await }
    });
    let plan = task
        .await
        .expect("the task ran")
        .expect("the plan is created");

    // Assert: the row went with the change (the layer has nothing left to write), with the
    // call's id, action, actor and request id.
    assert_eq!(plan.id.as_str(), "gold");
    assert!(row.is_recorded(), "the row was not sent with the change");
    let events = catalog
        .list_audit_events(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("the log reads");
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.id, row.id());
    assert_eq!(event.action, UPSERT_PLAN);
    assert_eq!(event.actor, "admin:ops");
    assert_eq!(event.request_id, "req-spawned");
    assert_eq!(event.outcome, "OK");
    catalog.close().await.expect("close");
}

#[tokio::test]
async fn a_background_job_context_writes_no_audit_row() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let catalog = catalog(dir.path()).await;
    let plans = Plans::new(catalog.clone());

    plans
        .upsert(&CallContext::system(), new_plan("silver"))
        .await
        .expect("the plan is created");

    let events = catalog
        .list_audit_events(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("the log reads");
    assert!(events.is_empty(), "{events:?}");
    catalog.close().await.expect("close");
}
