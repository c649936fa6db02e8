//! UpsertPlan refusals: invalid fields, stale etags and reused request ids are answered with
//! the right code and field, and leave the catalog as it was.

use prost_types::Duration;
use sea_orm::{ConnectionTrait, Statement};
use tenant_plane::proto::{self, Isolation, QuotaKind};
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both;
use crate::plans::{counter, create_exports_plan, exports_plan, gauge, plans, upsert};
use crate::support::{Db, TestServer, assert_bad_field};

on_both!(
    upsert_plan_refuses_every_invalid_field_and_changes_nothing,
    upsert_plan_with_a_stale_etag_is_aborted_and_changes_nothing,
    upsert_plan_with_a_reused_request_id_returns_the_first_answer,
);

/// Every plan row as (id, display_name, default_isolation, limits, revision).
async fn plan_rows(server: &TestServer) -> Vec<(String, String, Option<String>, String, i64)> {
    let db = server.catalog().await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, display_name, default_isolation, CAST(limits AS TEXT) AS limits, revision \
             FROM plans ORDER BY id",
        ))
        .await
        .expect("read the plans");
    let snapshot = rows
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "id").expect("id"),
                r.try_get::<String>("", "display_name")
                    .expect("display_name"),
                r.try_get::<Option<String>>("", "default_isolation")
                    .expect("default_isolation"),
                r.try_get::<String>("", "limits").expect("limits"),
                r.try_get::<i64>("", "revision").expect("revision"),
            )
        })
        .collect();
    db.close().await.expect("close");
    snapshot
}

type Case = (&'static str, fn(&mut proto::UpsertPlanRequest));

/// One invalid change each, and the field it must be reported on.
const INVALID: &[Case] = &[
    ("plan", |r| r.plan = None),
    ("plan.name", |r| plan(r).name.clear()),
    ("plan.name", |r| plan(r).name = "exports".into()),
    ("plan.name", |r| plan(r).name = "plans/Exports".into()),
    ("plan.plan_id", |r| plan(r).plan_id = "other".into()),
    ("plan.display_name", |r| {
        plan(r).display_name = "x".repeat(201)
    }),
    ("plan.default_isolation", |r| plan(r).default_isolation = 9),
    ("plan.limits[0].limit", |r| plan(r).limits[0].limit = -2),
    ("plan.limits[1].kind", |r| plan(r).limits[1].kind = 0),
    ("plan.limits[0].window", |r| plan(r).limits[0].window = None),
    ("plan.limits[0].window", |r| {
        plan(r).limits[0].window = Some(Duration {
            seconds: 3600,
            nanos: 5,
        })
    }),
    ("plan.limits[1].window", |r| {
        plan(r).limits[1].window = Some(Duration {
            seconds: 60,
            nanos: 0,
        })
    }),
    ("plan.limits[2]", |r| {
        plan(r).limits.push(gauge("messages_per_day", 10))
    }),
    ("plan.limits[2]", |r| {
        plan(r).limits.push(counter("messages_per_day", 10, 3600))
    }),
    ("plan.limits[2].resource", |r| {
        plan(r).limits.push(gauge("users", 1))
    }),
    ("plan.limits[0].resource", |r| {
        plan(r).limits[0].resource = "Exports-Per-Hour".into()
    }),
    ("plan.etag", |r| plan(r).etag = "W/\"1\"".into()),
    ("update_mask", |r| mask(r, "quota")),
    ("update_mask", |r| mask(r, "limits.users")),
    ("update_mask", |r| mask(r, "etag")),
    ("update_mask", |r| mask(r, "create_time")),
    ("update_mask", |r| mask(r, "update_time")),
    ("update_mask", |r| mask(r, "name")),
    ("update_mask", |r| mask(r, "plan_id")),
    ("request_id", |r| r.request_id = "not-a-uuid".into()),
];

fn plan(request: &mut proto::UpsertPlanRequest) -> &mut proto::Plan {
    request.plan.get_or_insert_with(Default::default)
}

fn mask(request: &mut proto::UpsertPlanRequest, path: &str) {
    let mask = request.update_mask.get_or_insert_with(Default::default);
    mask.paths = vec!["display_name".into(), path.into()];
}

async fn upsert_plan_refuses_every_invalid_field_and_changes_nothing(server: &TestServer) {
    create_exports_plan(server).await;
    let before = plan_rows(server).await;
    let tenants_before = server.catalog_snapshot().await;
    let mut client = plans(server);

    // Each change to an existing plan, and to one that does not exist yet.
    for name in ["plans/exports", "plans/fresh"] {
        for (i, (field, spoil)) in INVALID.iter().enumerate() {
            let mut request = upsert(
                proto::Plan {
                    name: name.into(),
                    display_name: "Changed".into(),
                    ..exports_plan()
                },
                &[],
            );
            spoil(&mut request);
            let status = client.upsert_plan(request).await.unwrap_err();
            assert!(
                status.code() == Code::InvalidArgument,
                "case {i} on {name}: {status:?}"
            );
            assert_bad_field(&status, field);
        }
    }
    assert_eq!(plan_rows(server).await, before, "no plan changed");
    assert_eq!(server.catalog_snapshot().await, tenants_before);

    let schema_default = client
        .upsert_plan(upsert(
            proto::Plan {
                name: "plans/schema".into(),
                default_isolation: Isolation::Schema as i32,
                ..Default::default()
            },
            &[],
        ))
        .await;

    match server.db {
        Db::Sqlite => {
            assert_bad_field(&schema_default.unwrap_err(), "plan.default_isolation");
            assert_eq!(plan_rows(server).await, before);
        }
        Db::Postgres => {
            let created = schema_default.expect("schema isolation on PostgreSQL");
            assert_eq!(created.into_inner().default_isolation(), Isolation::Schema);
        }
    }
}

async fn upsert_plan_with_a_stale_etag_is_aborted_and_changes_nothing(server: &TestServer) {
    let created = create_exports_plan(server).await;
    let mut client = plans(server);
    let rename = |name: &str, display_name: &str, etag: &str| {
        upsert(
            proto::Plan {
                name: name.into(),
                display_name: display_name.into(),
                etag: etag.into(),
                ..Default::default()
            },
            &["display_name"],
        )
    };
    let first = client
        .upsert_plan(rename("plans/exports", "First", &created.etag))
        .await
        .expect("the first write wins")
        .into_inner();
    let before = plan_rows(server).await;

    let stale = client
        .upsert_plan(rename("plans/exports", "Second", &created.etag))
        .await
        .unwrap_err();
    let ghost = client
        .upsert_plan(rename("plans/ghost", "Ghost", "r1"))
        .await
        .unwrap_err();

    for status in [&stale, &ghost] {
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "ETAG_MISMATCH");
    }
    assert_eq!(
        plan_rows(server).await,
        before,
        "nothing changed, nothing created"
    );
    let missing = client
        .get_plan(proto::GetPlanRequest {
            name: "plans/ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let current = client
        .upsert_plan(rename("plans/exports", "Third", &first.etag))
        .await
        .expect("the current etag is accepted")
        .into_inner();
    assert_eq!(current.display_name, "Third");
}

async fn upsert_plan_with_a_reused_request_id_returns_the_first_answer(server: &TestServer) {
    let mut client = plans(server);
    let request_id = uuid::Uuid::now_v7().to_string();
    let create = proto::UpsertPlanRequest {
        request_id: request_id.clone(),
        ..upsert(exports_plan(), &[])
    };
    let first = client
        .upsert_plan(create.clone())
        .await
        .expect("create")
        .into_inner();
    let renamed = client
        .upsert_plan(upsert(
            proto::Plan {
                name: "plans/exports".into(),
                display_name: "Renamed".into(),
                ..Default::default()
            },
            &["display_name"],
        ))
        .await
        .expect("a later change")
        .into_inner();
    let before = plan_rows(server).await;

    let retry = client
        .upsert_plan(create.clone())
        .await
        .expect("retry")
        .into_inner();
    let mut other = create.clone();
    if let Some(p) = other.plan.as_mut() {
        p.limits = vec![gauge("users", 1)];
    }
    let reused = client.upsert_plan(other).await.unwrap_err();

    assert_eq!(retry, first, "the first answer, as it was");
    assert_eq!(first.etag, "r1");
    assert_eq!(renamed.etag, "r2");
    assert_bad_field(&reused, "request_id");
    assert_eq!(
        plan_rows(server).await,
        before,
        "neither call changed the plan"
    );
    let current = client
        .get_plan(proto::GetPlanRequest {
            name: "plans/exports".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(current.display_name, "Renamed");
    assert_eq!(current.limits.len(), 2);
    assert_eq!(current.limits[0].kind(), QuotaKind::Counter);
}
