//! SHARED isolation through keys and sequences: row-level security does not apply to unique and
//! foreign-key checks, so in the shared schema every key includes `tenant_id`, and tenant roles
//! may draw from the shared sequences but not read them. Tried by logging in as two tenants'
//! roles.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tenant_plane::proto;

use crate::rollout_fleet::{all, finish, start, version_of};
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer};
use crate::tenant_roles::{catalog_database, denied, log_in, refused};
use crate::tenant_roles_isolation::create_with;

fn shared(slug: &str) -> proto::Tenant {
    proto::Tenant {
        slug: slug.into(),
        isolation: proto::Isolation::Shared as i32,
        ..Default::default()
    }
}

/// Logs in as `tenant`'s role, its session naming its tenant (which its rows' `tenant_id`
/// defaults to).
async fn as_role(server: &TestServer, tenant: &proto::Tenant) -> (String, DatabaseConnection) {
    let (credentials, db) = log_in(server, tenant, &catalog_database(server)).await;
    db.execute_unprepared(&format!("SET tenant_plane.tenant_id = '{}'", tenant.id))
        .await
        .expect("name the tenant");
    (credentials.role_name, db)
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a number")
}

/// Keys (primary, unique and foreign) of the shared schema's tenant tables that do not include
/// `tenant_id`, as "table.constraint".
async fn keys_without_tenant(admin: &DatabaseConnection) -> Vec<String> {
    let rows = admin
        .query_all_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT c.relname || '.' || k.conname AS name FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'tenant_shared' AND k.contype IN ('p', 'u', 'f') \
               AND c.relname NOT IN ('seaql_migrations', 'tenant_plane_roles') \
               AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                                 AND a.attname = 'tenant_id' AND a.attnum = ANY (k.conkey)) \
             ORDER BY 1",
        ))
        .await
        .expect("constraints");
    rows.iter()
        .map(|r| r.try_get::<String>("", "name").expect("a name"))
        .collect()
}

/// Runs the three probes of tenant `a`'s role at tenant `b`, whose user `b_user` has the email
/// `bob@b.example`, and checks that none tells `a` anything of `b`'s.
async fn probes_learn_nothing(a: &DatabaseConnection, b_user: uuid::Uuid) {
    a.execute_unprepared(
        "INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'bob@b.example')",
    )
    .await
    .expect("a's role takes an email b has: b's emails are not a's to know");
    a.execute_unprepared(&format!(
        "INSERT INTO users (id, email) VALUES ('{b_user}', 'ann@a.example')"
    ))
    .await
    .expect("a's role takes an id b has: b's ids are not a's to know");

    let nobody = uuid::Uuid::now_v7();
    let unknown = refused(
        a,
        &format!(
            "INSERT INTO projects (id, owner_id, title) VALUES (gen_random_uuid(), '{nobody}', 'x')"
        ),
    )
    .await;
    // a's own user has b's user's id: delete it, so the id names b's user alone.
    a.execute_unprepared(&format!("DELETE FROM users WHERE id = '{b_user}'"))
        .await
        .expect("a deletes its own user");
    let bs = refused(
        a,
        &format!(
            "INSERT INTO projects (id, owner_id, title) VALUES (gen_random_uuid(), '{b_user}', 'x')"
        ),
    )
    .await;
    assert!(
        unknown.contains("violates foreign key constraint \"projects_owner_id_fkey\""),
        "{unknown}"
    );
    assert_eq!(
        bs.replace(&b_user.to_string(), "ID"),
        unknown.replace(&nobody.to_string(), "ID"),
        "b's user looks to a exactly like no user at all"
    );

    denied(a, "SELECT last_value FROM messages_id_seq").await;
    denied(a, "SELECT last_value FROM audit_log_id_seq").await;
    a.execute_unprepared("INSERT INTO audit_log (action) VALUES ('probe')")
        .await
        .expect("a's role still draws ids from the sequence (USAGE)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_tenant_learns_nothing_of_another_through_keys_or_sequences() {
    let server = TestServer::start(Db::Postgres).await;
    let a = create_with(&server, shared("keys-a")).await;
    let b = create_with(&server, shared("keys-b")).await;
    let admin = server.catalog().await;
    assert_eq!(keys_without_tenant(&admin).await, Vec::<String>::new());
    let (_, as_b) = as_role(&server, &b).await;
    let b_user = uuid::Uuid::now_v7();
    as_b.execute_unprepared(&format!(
        "INSERT INTO users (id, email) VALUES ('{b_user}', 'bob@b.example'); \
         INSERT INTO audit_log (action) VALUES ('b wrote')"
    ))
    .await
    .expect("b's role writes b's rows");

    let (_, as_a) = as_role(&server, &a).await;
    probes_learn_nothing(&as_a, b_user).await;

    assert_eq!(
        count(
            &as_b,
            &format!("DELETE FROM users WHERE id = '{b_user}' RETURNING 1::bigint")
        )
        .await,
        1,
        "b deletes its own user: nothing of a's holds on to it"
    );
    assert_eq!(count(&as_b, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&as_a, "SELECT count(*) FROM users").await, 1);
    as_a.close().await.expect("close");
    as_b.close().await.expect("close");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_re_keys_a_shared_schema_made_before_and_takes_the_sequences_from_its_roles() {
    let server = TestServer::start(Db::Postgres).await;
    let a = create_with(&server, shared("old-a")).await;
    let b = create_with(&server, shared("old-b")).await;
    let admin = server.catalog().await;
    let b_user = uuid::Uuid::now_v7();
    admin
        .execute_unprepared(&format!(
            "INSERT INTO tenant_shared.users (id, email, tenant_id) \
             VALUES ('{b_user}', 'bob@b.example', '{}')",
            b.id
        ))
        .await
        .expect("a row of b's");
    // The shared schema as an older version left it: keys of their own, and tenant roles that
    // may read the sequences.
    server
        .migrations()
        .migrate_tenant(proto::MigrateTenantRequest {
            tenant: a.name.clone(),
            direction: proto::MigrationDirection::Down as i32,
            ..Default::default()
        })
        .await
        .expect("one step down");
    assert_eq!(version_of(&server, &b).await, SAMPLE_MIGRATIONS[3]);
    assert!(!keys_without_tenant(&admin).await.is_empty());
    let (role, as_a) = as_role(&server, &a).await;
    admin
        .execute_unprepared(&format!(
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA tenant_shared TO \"{role}\""
        ))
        .await
        .expect("grant as before");
    let leak = refused(
        &as_a,
        "INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'bob@b.example')",
    )
    .await;
    assert!(
        leak.contains("users_email_key"),
        "the old shape leaks: {leak}"
    );

    let rollout = start(
        &server,
        proto::StartRolloutRequest {
            selector: all(),
            ..Default::default()
        },
    )
    .await;
    let ended = finish(&server, &rollout).await;

    assert_eq!(ended.state(), proto::rollout::State::Succeeded, "{ended:?}");
    assert_eq!(version_of(&server, &a).await, SAMPLE_MIGRATIONS[4]);
    assert_eq!(keys_without_tenant(&admin).await, Vec::<String>::new());
    assert_eq!(
        count(&admin, "SELECT count(*) FROM tenant_shared.users").await,
        1,
        "b's row came through the re-keying"
    );
    probes_learn_nothing(&as_a, b_user).await;
    as_a.close().await.expect("close");
    server.stop().await;
}
