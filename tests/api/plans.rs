//! PlanService reads: the built-in plans, GetPlan and paging; and the helpers every plan test
//! shares.

use prost_types::{Duration, FieldMask};
use tenant_plane::proto::{self, Isolation, QuotaKind, plan_service_client::PlanServiceClient};
use tonic::Code;

use crate::support::{Conn, Db, TestServer, assert_bad_field, create};
use crate::{on_both, on_both_dbs};

on_both!(
    list_plans_returns_the_builtin_plans_by_id_with_their_limits,
    get_plan_answers_not_found_for_an_unknown_plan_and_refuses_bad_names,
    list_plans_pages_one_plan_at_a_time_and_refuses_bad_requests,
);

on_both_dbs!(the_default_plan_takes_its_limits_from_the_configuration);

pub fn plans(server: &TestServer) -> PlanServiceClient<Conn> {
    PlanServiceClient::new(server.conn())
}

pub fn counter(resource: &str, limit: i64, window_secs: i64) -> proto::PlanLimit {
    proto::PlanLimit {
        resource: resource.into(),
        limit,
        kind: QuotaKind::Counter as i32,
        window: Some(Duration {
            seconds: window_secs,
            nanos: 0,
        }),
    }
}

pub fn gauge(resource: &str, limit: i64) -> proto::PlanLimit {
    proto::PlanLimit {
        resource: resource.into(),
        limit,
        kind: QuotaKind::Gauge as i32,
        window: None,
    }
}

/// An UpsertPlan of `plan` with `paths` as its update mask (none when empty).
pub fn upsert(plan: proto::Plan, paths: &[&str]) -> proto::UpsertPlanRequest {
    proto::UpsertPlanRequest {
        plan: Some(plan),
        update_mask: (!paths.is_empty()).then(|| FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        request_id: String::new(),
    }
}

/// The "exports" plan: a counter of its own and a well-known gauge.
pub fn exports_plan() -> proto::Plan {
    proto::Plan {
        name: "plans/exports".into(),
        display_name: "Exports".into(),
        limits: vec![counter("exports_per_hour", 50, 3600), gauge("users", 5)],
        ..Default::default()
    }
}

pub async fn create_exports_plan(server: &TestServer) -> proto::Plan {
    plans(server)
        .upsert_plan(upsert(exports_plan(), &[]))
        .await
        .expect("create the exports plan")
        .into_inner()
}

/// (resource, limit, kind, window seconds) of each limit, in order.
pub fn limits_of(plan: &proto::Plan) -> Vec<(String, i64, QuotaKind, Option<i64>)> {
    plan.limits
        .iter()
        .map(|l| {
            (
                l.resource.clone(),
                l.limit,
                l.kind(),
                l.window.as_ref().map(|w| w.seconds),
            )
        })
        .collect()
}

fn well_known(
    users: i64,
    storage: i64,
    messages: i64,
) -> Vec<(String, i64, QuotaKind, Option<i64>)> {
    vec![
        (
            "messages_per_day".into(),
            messages,
            QuotaKind::Counter,
            Some(86_400),
        ),
        ("storage_bytes".into(), storage, QuotaKind::Gauge, None),
        ("users".into(), users, QuotaKind::Gauge, None),
    ]
}

const GIB: i64 = 1 << 30;

async fn list_plans_returns_the_builtin_plans_by_id_with_their_limits(server: &TestServer) {
    let page = plans(server)
        .list_plans(proto::ListPlansRequest::default())
        .await
        .expect("list")
        .into_inner();

    let ids: Vec<&str> = page.plans.iter().map(|p| p.plan_id.as_str()).collect();
    assert_eq!(ids, ["enterprise", "free", "pro"]);
    assert!(page.next_page_token.is_empty());
    let [enterprise, free, pro] = &page.plans[..] else {
        unreachable!()
    };
    assert_eq!(enterprise.name, "plans/enterprise");
    assert_eq!(enterprise.display_name, "Enterprise");
    assert_eq!(enterprise.default_isolation(), Isolation::Database);
    assert_eq!(limits_of(enterprise), well_known(-1, -1, -1));
    assert_eq!(free.default_isolation(), Isolation::Unspecified);
    // free is the default plan: its limits are TENANT_MAX_USERS and friends (defaults here).
    assert_eq!(limits_of(free), well_known(100, 10 * GIB, 1_000));
    assert_eq!(pro.display_name, "Pro");
    assert_eq!(limits_of(pro), well_known(1_000, 100 * GIB, 100_000));
    for plan in &page.plans {
        assert_eq!(plan.etag, "r1");
        assert!(plan.create_time.is_some() && plan.update_time.is_some());
    }
}

async fn the_default_plan_takes_its_limits_from_the_configuration(db: Db) {
    let server = TestServer::start_with(db, |c| {
        c.tenant_default_plan = "pro".into();
        c.tenant_max_users = 7;
        c.tenant_max_storage_gb = 2;
        c.tenant_max_messages_per_day = -1;
    })
    .await;
    let mut client = plans(&server);
    let get = |id: &str| proto::GetPlanRequest {
        name: format!("plans/{id}"),
    };

    let pro = client.get_plan(get("pro")).await.expect("pro").into_inner();
    let free = client
        .get_plan(get("free"))
        .await
        .expect("free")
        .into_inner();

    assert_eq!(limits_of(&pro), well_known(7, 2 * GIB, -1));
    assert_eq!(limits_of(&free), well_known(10, 5 * GIB, 1_000), "built-in");
    server.stop().await;
}

async fn get_plan_answers_not_found_for_an_unknown_plan_and_refuses_bad_names(server: &TestServer) {
    let mut client = plans(server);
    let get = |name: &str| proto::GetPlanRequest { name: name.into() };

    let pro = client
        .get_plan(get("plans/pro"))
        .await
        .expect("pro")
        .into_inner();
    let missing = client.get_plan(get("plans/platinum")).await.unwrap_err();

    assert_eq!(pro.plan_id, "pro");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    for bad in [
        "",
        "pro",
        "plans/",
        "plans/Pro",
        "tenants/pro",
        "plans/pro/x",
    ] {
        let status = client.get_plan(get(bad)).await.unwrap_err();
        assert_bad_field(&status, "name");
    }
}

async fn list_plans_pages_one_plan_at_a_time_and_refuses_bad_requests(server: &TestServer) {
    create_exports_plan(server).await;
    let mut client = plans(server);
    let mut request = proto::ListPlansRequest {
        page_size: 1,
        page_token: String::new(),
    };
    let mut ids = Vec::new();
    let mut tokens = Vec::new();

    loop {
        let page = client
            .list_plans(request.clone())
            .await
            .expect("page")
            .into_inner();
        assert_eq!(page.plans.len(), 1);
        ids.push(page.plans[0].plan_id.clone());
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token.clone());
        request.page_token = page.next_page_token;
    }

    assert_eq!(ids, ["enterprise", "exports", "free", "pro"]);
    let negative = client
        .list_plans(proto::ListPlansRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_bad_field(&negative, "page_size");
    let mut tampered = tokens[0].clone().into_bytes();
    tampered[2] ^= 1;
    for slug in ["a1", "a2"] {
        create(server, slug).await;
    }
    let tenants_token = server
        .tenants()
        .list_tenants(proto::ListTenantsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("tenants")
        .into_inner()
        .next_page_token;
    assert!(!tenants_token.is_empty());
    for token in [
        String::from_utf8_lossy(&tampered).into_owned(),
        "garbage".to_owned(),
        tenants_token,
    ] {
        let status = client
            .list_plans(proto::ListPlansRequest {
                page_size: 1,
                page_token: token.clone(),
            })
            .await
            .unwrap_err();
        assert_bad_field(&status, "page_token");
    }
}
