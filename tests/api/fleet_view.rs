//! The fleet view (GetFleetStatus) at its edges: a component whose first install failed in a
//! tenant counts that tenant as failed and pending; drift checks count per component whose
//! table drifted, and in all; and a deleted tenant is counted nowhere — all read from the
//! catalog alone.

use sea_orm::ConnectionTrait;
use tenant_plane::proto::{
    self, MigrationDirection, component_service_client::ComponentServiceClient,
};

use crate::components_runs::{drift_of, migrate, plan_with, provisioned_on, register};
use crate::on_both;
use crate::support::TestServer;

on_both!(a_failed_first_install_is_counted_and_a_deleted_tenant_is_not);

const INVOICES: &str = "CREATE TABLE invoices (id integer PRIMARY KEY, total integer NOT NULL)";

async fn fleet(server: &TestServer) -> proto::FleetStatus {
    ComponentServiceClient::new(server.conn())
        .get_fleet_status(proto::GetFleetStatusRequest {})
        .await
        .expect("fleet status")
        .into_inner()
}

fn component<'a>(fleet: &'a proto::FleetStatus, id: &str) -> &'a proto::ComponentFleetStatus {
    fleet
        .components
        .iter()
        .find(|c| c.component_id == id)
        .unwrap_or_else(|| panic!("{id} in {fleet:?}"))
}

fn counted(view: &proto::ComponentFleetStatus) -> Vec<(&str, i32)> {
    view.versions
        .iter()
        .map(|v| (v.version.as_str(), v.tenant_count))
        .collect()
}

async fn a_failed_first_install_is_counted_and_a_deleted_tenant_is_not(server: &TestServer) {
    plan_with(server, "ledger", &["sample"]).await;
    let acme = provisioned_on(server, "acme", "ledger").await;
    let globex = provisioned_on(server, "globex", "ledger").await;
    let initech = provisioned_on(server, "initech", "ledger").await;
    register(
        server,
        "billing",
        &[("0001_create_invoices", INVOICES, "DROP TABLE invoices")],
    )
    .await;
    plan_with(server, "ledger", &["sample", "billing"]).await;

    // globex already has a table of that name, made by hand: its first install of billing fails.
    let conn = server.tenant_conn(&globex).await;
    conn.execute_unprepared("CREATE TABLE invoices (id integer PRIMARY KEY)")
        .await
        .expect("a hand-made table");
    conn.close().await.expect("close");
    for tenant in [&acme, &initech] {
        migrate(server, &tenant.name, "billing", "", MigrationDirection::Up)
            .await
            .unwrap_or_else(|s| panic!("install billing in {}: {s:?}", tenant.slug));
    }
    let failed = migrate(server, &globex.name, "billing", "", MigrationDirection::Up)
        .await
        .expect_err("the table is already there");
    assert!(failed.message().contains("invoices"), "{failed:?}");

    let view = fleet(server).await;
    assert_eq!(view.tenant_count, 3);
    let billing = component(&view, "billing");
    assert_eq!(
        counted(billing),
        [("", 1), ("0001_create_invoices", 2)],
        "globex has the component with none of its migrations: {billing:?}"
    );
    assert_eq!(
        (
            billing.tenant_count,
            billing.pending_count,
            billing.failed_count
        ),
        (3, 1, 1),
        "{billing:?}"
    );

    // globex's hand-made table belongs to no component; an index made by hand on acme's
    // invoices drifts billing.
    let conn = server.tenant_conn(&acme).await;
    conn.execute_unprepared("CREATE INDEX invoices_by_hand ON invoices (total)")
        .await
        .expect("a hand-made index");
    conn.close().await.expect("close");
    for tenant in [&acme, &globex, &initech] {
        let found = drift_of(server, tenant).await;
        assert_eq!(found.drifted, tenant.slug != "initech", "{found:?}");
    }
    let view = fleet(server).await;
    assert_eq!(view.drifted_count, 2, "{view:?}");
    assert_eq!(component(&view, "billing").drifted_count, 1, "{view:?}");
    assert_eq!(component(&view, "sample").drifted_count, 0, "{view:?}");
    // initech drifts too, then is deleted: counted nowhere.
    let conn = server.tenant_conn(&initech).await;
    conn.execute_unprepared("CREATE INDEX invoices_by_hand ON invoices (total)")
        .await
        .expect("a hand-made index");
    conn.close().await.expect("close");
    assert!(drift_of(server, &initech).await.drifted);
    assert_eq!(component(&fleet(server).await, "billing").drifted_count, 2);

    server
        .tenants()
        .delete_tenant(proto::DeleteTenantRequest {
            name: initech.name.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete initech");
    let view = fleet(server).await;
    assert_eq!(view.tenant_count, 2, "a deleted tenant is not live");
    let billing = component(&view, "billing");
    assert_eq!(counted(billing), [("", 1), ("0001_create_invoices", 1)]);
    assert_eq!(
        (
            billing.tenant_count,
            billing.pending_count,
            billing.failed_count
        ),
        (2, 1, 1),
        "{billing:?}"
    );
    assert_eq!(view.drifted_count, 2, "{view:?}");
    assert_eq!(billing.drifted_count, 1, "{billing:?}");
    let sample = component(&view, "sample");
    assert_eq!(sample.tenant_count, 2, "{sample:?}");
    assert_eq!(
        sample.versions.iter().map(|v| v.tenant_count).sum::<i32>(),
        2,
        "{sample:?}"
    );
}
