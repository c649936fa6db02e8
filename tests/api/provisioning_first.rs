//! A tenant's first provisioning makes its schema in the batch that migrates it; one that finds
//! its (marked) schema already there reads the version table first. Both must leave the same
//! storage, role and grants.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tenant_plane::proto::{self, tenant::State};

use crate::provisioning::status_of;
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, create};
use crate::tenant_roles::location;

/// What the catalog database says about a tenant's schema `schema` and role `role`, with both
/// names replaced by `S` and `R` so that two tenants' descriptions compare equal.
async fn describe(admin: &DatabaseConnection, schema: &str, role: &str) -> Vec<String> {
    let queries = [
        // The schema's owner and privileges.
        "SELECT nspowner::regrole::text || ' ' || coalesce(nspacl::text, '-') AS line \
         FROM pg_namespace WHERE nspname = $1",
        // Each table, index and sequence, with its owner and privileges.
        "SELECT c.relname || ' ' || c.relkind::text || ' ' || c.relowner::regrole::text || ' ' \
           || coalesce(c.relacl::text, '-') AS line \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 ORDER BY c.relname",
        // What tables and sequences made there later will grant.
        "SELECT d.defaclobjtype::text || ' ' || d.defaclrole::regrole::text || ' ' \
           || d.defaclacl::text AS line \
         FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace \
         WHERE n.nspname = $1 ORDER BY d.defaclobjtype",
        // Whether the role may connect to the catalog database (PUBLIC may not, here).
        "SELECT 'connect ' || has_database_privilege($1, current_database(), 'CONNECT')::text \
           AS line",
        // The role's attributes, its settings, and who is a member of it.
        "SELECT concat_ws(' ', rolcanlogin, rolsuper, rolinherit, rolcreaterole, rolcreatedb, \
           rolreplication, rolbypassrls, rolconfig::text, \
           (SELECT string_agg(m.member::regrole::text, ',') FROM pg_auth_members m \
            WHERE m.roleid = r.oid)) AS line \
         FROM pg_roles r WHERE rolname = $1",
    ];
    let mut lines = Vec::new();
    for (i, sql) in queries.iter().enumerate() {
        let of = if i < 3 { schema } else { role };
        let rows = admin
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                *sql,
                [of.into()],
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!rows.is_empty(), "nothing for {of}: {sql}");
        for row in rows {
            let line: String = row.try_get("", "line").expect("line");
            lines.push(line.replace(role, "R").replace(schema, "S"));
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioning_that_makes_the_schema_and_one_that_finds_it_leave_the_same_storage() {
    let server = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    let batched = create(&server, "in-one-batch").await;
    let stepwise = create(&server, "step-by-step").await;
    // An empty schema of the tenant's name made beforehand, with the tenant's mark (as an
    // operator restoring it might leave it): the provisioning adopts it and reads its version
    // table before it migrates.
    let admin = server.catalog().await;
    admin
        .execute_unprepared(&format!(
            "CREATE SCHEMA \"{0}\"; COMMENT ON SCHEMA \"{0}\" IS 'tenant-plane tenant {1}'",
            stepwise.schema_name, stepwise.id
        ))
        .await
        .expect("the schema beforehand");
    // Where PUBLIC may not connect, each way must grant the role CONNECT.
    admin
        .execute_unprepared(
            "DO $$ BEGIN \
               EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database()); \
             END $$",
        )
        .await
        .expect("revoke CONNECT from PUBLIC");

    for tenant in [&stepwise, &batched] {
        let answer = server
            .provisioning()
            .provision_tenant(proto::ProvisionTenantRequest {
                tenant: tenant.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("{}: {status:?}", tenant.slug))
            .into_inner();
        assert!(answer.changed, "{}", tenant.slug);
        assert_eq!(
            answer.tenant.map(|t| t.state()),
            Some(State::Active),
            "{}",
            tenant.slug
        );
        let status = status_of(&server, &tenant.name).await;
        assert_eq!(status.last_error, "", "{}", tenant.slug);
        assert_eq!(
            server.tenant_versions(tenant).await,
            SAMPLE_MIGRATIONS,
            "{}",
            tenant.slug
        );
    }
    let mut described = Vec::new();
    for tenant in [&batched, &stepwise] {
        let role = location(&server, tenant).await.role_name;
        described.push(describe(&admin, &tenant.schema_name, &role).await);
    }
    assert!(
        described[0].iter().any(|line| line.contains("R=arwd/")),
        "the role may use the tables' rows: {:#?}",
        described[0]
    );
    assert!(
        described[0].iter().any(|line| line == "connect true"),
        "the role may connect: {:#?}",
        described[0]
    );
    assert_eq!(described[0], described[1]);
    admin.close().await.expect("close");
    server.stop().await;
}
