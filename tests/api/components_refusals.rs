//! PushMigrations and CreateComponent refusals: a changed history, a version before the
//! latest, a gap, a lint error anywhere in the push, a malformed request, a caller that may not
//! push; each answered with its code and details, and each leaving the registry as it was.

use tenant_plane::proto;
use tonic::Code;
use tonic_types::StatusExt;

use crate::api_keys::create_key;
use crate::components::{
    billing_history, components, create_component, list_migrations, migration, push, push_request,
    registry_rows,
};
use crate::support::{Db, SERVICE_TOKEN, TestServer, assert_bad_field, create};

use proto::component_service_client::ComponentServiceClient;

async fn server_with_two_migrations() -> TestServer {
    let server = TestServer::start(Db::Postgres).await;
    create_component(&server, "billing").await;
    push(&server, "billing", billing_history()[..2].to_vec())
        .await
        .expect("push the first two");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_migration_is_refused_with_both_checksums_and_nothing_is_registered() {
    let server = server_with_two_migrations().await;
    let registered = list_migrations(&server, "billing").await;
    let before = registry_rows(&server).await;

    let mut changed = billing_history();
    changed[1].up_sql = "ALTER TABLE invoices ADD COLUMN number varchar(20)".into();
    let refused = push(&server, "billing", changed)
        .await
        .expect_err("a registered migration with another body");

    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let info = refused.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "MIGRATION_CHANGED");
    assert_eq!(info.metadata["version"], "0002_invoice_number");
    assert_eq!(info.metadata["registered_checksum"], registered[1].checksum);
    let pushed = &info.metadata["pushed_checksum"];
    assert_eq!(pushed.len(), 64);
    assert_ne!(pushed, &registered[1].checksum);
    let failure = refused
        .get_details_precondition_failure()
        .expect("PreconditionFailure");
    assert_eq!(
        failure.violations[0].subject,
        "components/billing/migrations/0002_invoice_number"
    );
    assert!(
        refused.message().contains("0002_invoice_number"),
        "{refused:?}"
    );
    // The new third migration of that push was not registered either.
    assert_eq!(registry_rows(&server).await, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_before_the_latest_and_a_gap_are_refused_and_change_nothing() {
    let server = server_with_two_migrations().await;
    let before = registry_rows(&server).await;

    let early = push(
        &server,
        "billing",
        vec![migration(
            "0001_b_forgotten",
            "CREATE TABLE forgotten (id int)",
        )],
    )
    .await
    .expect_err("a version before the latest");
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    let info = early.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "VERSION_BEFORE_LATEST");
    assert_eq!(info.metadata["version"], "0001_b_forgotten");
    assert_eq!(info.metadata["latest_version"], "0002_invoice_number");

    let history = billing_history();
    let gap = push(
        &server,
        "billing",
        vec![history[0].clone(), history[2].clone()],
    )
    .await
    .expect_err("a history without its second migration");
    assert_eq!(gap.code(), Code::FailedPrecondition, "{gap:?}");
    let info = gap.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "MIGRATION_MISSING");
    assert_eq!(info.metadata["version"], "0002_invoice_number");

    assert_eq!(registry_rows(&server).await, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_last_migration_fails_the_lint_registers_none_of_them() {
    let server = TestServer::start(Db::Postgres).await;
    create_component(&server, "billing").await;
    let before = registry_rows(&server).await;

    let mut pushed = billing_history();
    pushed[2].up_sql = "CREATE TABLE invoice_lines (id int);\nCREATE TABLE (".into();
    let refused = push(&server, "billing", pushed)
        .await
        .expect_err("a statement that does not parse");
    assert_bad_field(&refused, "migrations[2].up_sql");
    let bad = refused.get_details_bad_request().expect("BadRequest");
    assert!(
        bad.field_violations[0]
            .description
            .contains("0003_invoice_lines"),
        "{bad:?}"
    );
    assert_eq!(registry_rows(&server).await, before, "none registered");
    assert!(list_migrations(&server, "billing").await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_refusals_name_the_migration_the_statement_and_the_rule() {
    let server = TestServer::start(Db::Postgres).await;
    create_component(&server, "billing").await;
    let before = registry_rows(&server).await;

    let pushed = vec![
        migration("0001_users", "CREATE TABLE users (id int PRIMARY KEY)"),
        migration(
            "0002_users_index",
            "CREATE TABLE logins (id int);\nCREATE INDEX CONCURRENTLY users_id ON users (id)",
        ),
        migration("0003_path", "SET search_path TO public"),
        migration("0004_reach", "INSERT INTO tenant_globex.users VALUES (1)"),
    ];
    let refused = push(&server, "billing", pushed)
        .await
        .expect_err("three migrations fail the lint");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let violations = refused
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations;
    let expect = [
        (
            "migrations[1].up_sql",
            "0002_users_index",
            "statement 1",
            "non_transactional",
        ),
        (
            "migrations[2].up_sql",
            "0003_path",
            "statement 0",
            "session_state",
        ),
        (
            "migrations[3].up_sql",
            "0004_reach",
            "statement 0",
            "schema_qualified",
        ),
    ];
    for (field, version, statement, rule) in expect {
        assert!(
            violations.iter().any(|v| v.field == field
                && v.description.contains(version)
                && v.description.contains(statement)
                && v.description.contains(rule)),
            "no violation of {field} naming {version}, {statement} and {rule} in {violations:?}"
        );
    }
    assert!(
        !violations
            .iter()
            .any(|v| v.field.starts_with("migrations[0]")),
        "{violations:?}"
    );
    assert_eq!(registry_rows(&server).await, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_answers_what_would_be_registered_and_registers_nothing() {
    let server = server_with_two_migrations().await;
    let before = registry_rows(&server).await;
    let answer = components(&server)
        .push_migrations(proto::PushMigrationsRequest {
            validate_only: true,
            ..push_request("billing", billing_history())
        })
        .await
        .expect("a valid push, validated only")
        .into_inner();
    let would: Vec<_> = answer
        .registered
        .iter()
        .map(|m| m.version.as_str())
        .collect();
    assert_eq!(would, ["0003_invoice_lines"]);
    assert_eq!(answer.registered[0].index, 2);
    assert!(answer.registered[0].create_time.is_none());
    assert_eq!(answer.unchanged.len(), 2);
    assert_eq!(answer.component.expect("component").migration_count, 2);
    assert_eq!(registry_rows(&server).await, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pushes_and_the_compiled_component_are_refused_without_writing() {
    let server = server_with_two_migrations().await;
    let before = registry_rows(&server).await;
    let history = billing_history();

    let twice = push(
        &server,
        "billing",
        vec![history[2].clone(), history[2].clone()],
    )
    .await
    .expect_err("one version twice");
    assert_bad_field(&twice, "migrations[1].version");

    let cases = [
        ("migrations[0].up_sql", migration("0004_empty", "  ")),
        ("migrations[0].version", migration("v4", "SELECT 1")),
        (
            "migrations[0].up_sql",
            migration("0004_big", &"-".repeat(1024 * 1024 + 1)),
        ),
    ];
    for (field, m) in cases {
        let refused = push(&server, "billing", vec![m]).await.expect_err(field);
        assert_bad_field(&refused, field);
    }
    let none = push(&server, "billing", Vec::new())
        .await
        .expect_err("empty");
    assert_bad_field(&none, "migrations");
    let unknown = push(&server, "nobody", history.clone())
        .await
        .expect_err("no such component");
    assert_eq!(unknown.code(), Code::NotFound);
    let bad_name = components(&server)
        .push_migrations(proto::PushMigrationsRequest {
            component: "billing".into(),
            ..push_request("billing", history.clone())
        })
        .await
        .expect_err("not a component name");
    assert_bad_field(&bad_name, "component");

    // The compiled component: neither created nor pushed to.
    let sample = push(&server, "sample", history.clone())
        .await
        .expect_err("a push to the compiled component");
    assert_eq!(sample.code(), Code::FailedPrecondition, "{sample:?}");
    let created = components(&server)
        .create_component(proto::CreateComponentRequest {
            component: Some(crate::components::component("sample")),
        })
        .await
        .expect_err("a component named sample");
    assert_eq!(created.code(), Code::AlreadyExists);
    let bad_id = components(&server)
        .create_component(proto::CreateComponentRequest {
            component: Some(crate::components::component("Billing_2")),
        })
        .await
        .expect_err("not a DNS label");
    assert_bad_field(&bad_id, "component.component_id");

    assert_eq!(registry_rows(&server).await, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_may_not_touch_the_registry_and_a_service_may_not_allow_dynamic_sql() {
    let server = TestServer::start(Db::Postgres).await;
    create_component(&server, "billing").await;
    let acme = create(&server, "acme").await;
    let key = create_key(&server, &acme.name, "ci", None).await.secret;
    let before = registry_rows(&server).await;

    let mut as_tenant = ComponentServiceClient::new(server.conn_as(&key));
    let pushed = as_tenant
        .push_migrations(push_request("billing", billing_history()))
        .await
        .expect_err("a tenant key pushes");
    assert_eq!(pushed.code(), Code::PermissionDenied, "{pushed:?}");
    let listed = as_tenant
        .list_components(proto::ListComponentsRequest::default())
        .await
        .expect_err("a tenant key lists");
    assert_eq!(listed.code(), Code::PermissionDenied);
    let created = as_tenant
        .create_component(proto::CreateComponentRequest {
            component: Some(crate::components::component("search")),
        })
        .await
        .expect_err("a tenant key creates");
    assert_eq!(created.code(), Code::PermissionDenied);

    // A service token pushes, but only an admin may let dynamic SQL or extensions through.
    let mut as_service = ComponentServiceClient::new(server.conn_as(SERVICE_TOKEN));
    for allow in [
        proto::LintAllowances {
            dynamic_sql: true,
            ..Default::default()
        },
        proto::LintAllowances {
            extensions: true,
            ..Default::default()
        },
    ] {
        let refused = as_service
            .push_migrations(proto::PushMigrationsRequest {
                allow: Some(allow),
                ..push_request("billing", billing_history())
            })
            .await
            .expect_err("a service allowing what only an admin may");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
    assert_eq!(registry_rows(&server).await, before);

    let pushed = as_service
        .push_migrations(push_request("billing", billing_history()))
        .await
        .expect("a service token pushes")
        .into_inner();
    assert_eq!(pushed.registered.len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_different_tails_do_not_interleave() {
    let server = TestServer::start(Db::Postgres).await;
    create_component(&server, "billing").await;
    let base = billing_history()[0].clone();
    let tails: Vec<Vec<proto::ComponentMigration>> = (0..4)
        .map(|t| {
            vec![
                base.clone(),
                migration(&format!("0002_tail_{t}_a"), "CREATE TABLE a (id int)"),
                migration(&format!("0002_tail_{t}_b"), "CREATE TABLE b (id int)"),
            ]
        })
        .collect();

    // Each push on its own task (and connection use), all at once.
    let handles: Vec<_> = tails
        .iter()
        .map(|tail| {
            let mut client = components(&server);
            let request = push_request("billing", tail.clone());
            tokio::spawn(async move { client.push_migrations(request).await })
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("the push task"));
    }

    let won: Vec<usize> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.is_ok().then_some(i))
        .collect();
    assert_eq!(won.len(), 1, "exactly one tail lands: {results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(refused.code(), Code::FailedPrecondition | Code::Aborted),
            "{refused:?}"
        );
    }
    let registered: Vec<String> = list_migrations(&server, "billing")
        .await
        .into_iter()
        .map(|m| m.version)
        .collect();
    let winner: Vec<String> = tails[won[0]].iter().map(|m| m.version.clone()).collect();
    assert_eq!(registered, winner, "the history is one push's, whole");
    server.stop().await;
}
