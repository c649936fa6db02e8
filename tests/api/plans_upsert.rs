//! UpsertPlan: creating a plan, changing the fields an update mask names, and tenants taking
//! their isolation from their plan.

use prost_types::Timestamp;
use tenant_plane::proto::{self, Isolation, QuotaKind};

use crate::on_both;
use crate::plans::{create_exports_plan, exports_plan, gauge, limits_of, plans, upsert};
use crate::support::{Db, TestServer};

on_both!(
    upsert_plan_creates_a_plan_with_a_counter_of_its_own,
    upsert_plan_changes_only_the_fields_the_mask_names,
    a_tenant_created_on_a_plan_gets_the_plan_isolation,
);

async fn upsert_plan_creates_a_plan_with_a_counter_of_its_own(server: &TestServer) {
    let mut plan = exports_plan();
    // Output-only fields are ignored.
    plan.create_time = Some(Timestamp {
        seconds: 1,
        nanos: 0,
    });

    let created = plans(server)
        .upsert_plan(upsert(plan, &["display_name"]))
        .await
        .expect("create")
        .into_inner();

    assert_eq!(created.name, "plans/exports");
    assert_eq!(created.plan_id, "exports");
    assert_eq!(created.display_name, "Exports");
    assert_eq!(created.default_isolation(), Isolation::Unspecified);
    assert_eq!(
        limits_of(&created),
        [
            (
                "exports_per_hour".into(),
                50,
                QuotaKind::Counter,
                Some(3600)
            ),
            ("users".into(), 5, QuotaKind::Gauge, None),
        ],
        "created from every field, whatever the mask"
    );
    assert_eq!(created.etag, "r1");
    assert_ne!(created.create_time.as_ref().map(|t| t.seconds), Some(1));
    let read = plans(server)
        .get_plan(proto::GetPlanRequest {
            name: "plans/exports".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(read, created);
}

async fn upsert_plan_changes_only_the_fields_the_mask_names(server: &TestServer) {
    let created = create_exports_plan(server).await;
    let mut client = plans(server);
    let mut change = proto::Plan {
        name: created.name.clone(),
        display_name: "Exports v2".into(),
        limits: vec![gauge("users", 9)],
        ..Default::default()
    };

    let renamed = client
        .upsert_plan(upsert(change.clone(), &["display_name"]))
        .await
        .expect("rename")
        .into_inner();
    change.display_name = String::new();
    let replaced = client
        .upsert_plan(upsert(change.clone(), &["limits"]))
        .await
        .expect("replace limits")
        .into_inner();
    let again = client
        .upsert_plan(upsert(change.clone(), &["limits"]))
        .await
        .expect("same limits again")
        .into_inner();
    change.default_isolation = Isolation::Database as i32;
    let unmasked = client
        .upsert_plan(upsert(change.clone(), &[]))
        .await
        .expect("populated fields")
        .into_inner();
    let everything = client
        .upsert_plan(upsert(
            proto::Plan {
                name: created.name.clone(),
                etag: unmasked.etag.clone(),
                ..Default::default()
            },
            &["*"],
        ))
        .await
        .expect("reset every field")
        .into_inner();

    assert_eq!(renamed.display_name, "Exports v2");
    assert_eq!(limits_of(&renamed), limits_of(&created), "limits unchanged");
    assert_eq!(renamed.etag, "r2");
    assert_eq!(replaced.display_name, "Exports v2");
    assert_eq!(
        limits_of(&replaced),
        [("users".into(), 9, QuotaKind::Gauge, None)]
    );
    assert_eq!(replaced.etag, "r3");
    assert_eq!(
        again, replaced,
        "a change to the same values writes nothing"
    );
    assert_eq!(unmasked.default_isolation(), Isolation::Database);
    assert_eq!(unmasked.display_name, "Exports v2");
    assert_eq!(unmasked.etag, "r4");
    assert_eq!(
        everything.display_name, "exports",
        "empty means the plan id"
    );
    assert_eq!(everything.default_isolation(), Isolation::Unspecified);
    assert!(everything.limits.is_empty());
    assert_eq!(everything.etag, "r5");
    assert_eq!(everything.create_time, created.create_time);
}

async fn a_tenant_created_on_a_plan_gets_the_plan_isolation(server: &TestServer) {
    let isolated = proto::Plan {
        name: "plans/isolated".into(),
        default_isolation: Isolation::Database as i32,
        ..Default::default()
    };
    plans(server)
        .upsert_plan(upsert(isolated, &[]))
        .await
        .expect("create the plan");
    let mut client = server.tenants();
    let on = |slug: &str, plan: &str| proto::CreateTenantRequest {
        tenant: Some(proto::Tenant {
            slug: slug.into(),
            plan: plan.into(),
            ..Default::default()
        }),
        ..Default::default()
    };

    let tenant = client
        .create_tenant(on("walled", "isolated"))
        .await
        .expect("create on the plan")
        .into_inner();
    let plain = client
        .create_tenant(on("plain", "free"))
        .await
        .expect("create on free")
        .into_inner();

    assert_eq!(tenant.plan, "isolated");
    assert_eq!(tenant.isolation(), Isolation::Database);
    assert!(!tenant.database_name.is_empty(), "{tenant:?}");
    let server_default = match server.db {
        Db::Postgres => Isolation::Schema,
        Db::Sqlite => Isolation::Database,
    };
    assert_eq!(plain.isolation(), server_default);
}
