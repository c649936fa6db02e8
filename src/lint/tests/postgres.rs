//! The lint on PostgreSQL.

use super::rules;
use crate::lint::*;

fn pg(script: &str) -> Linted {
    lint(script, Dialect::Postgres, Allowances::default())
}

/// (statement, the rule that must refuse it)
const REFUSED_ON_POSTGRES: &[(&str, &str)] = &[
    ("CREATE TABLE t (id int", rule::SYNTAX),
    ("SELECT 'a\\'", rule::SYNTAX),
    (
        "INSERT INTO tenant_globex.users (id) VALUES (1)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "UPDATE users SET name = (SELECT name FROM tenant_globex.users LIMIT 1)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "WITH x AS (DELETE FROM public.tenants RETURNING id) SELECT * FROM x",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TABLE orders (id int, user_id int REFERENCES tenant_globex.users (id))",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE INDEX i ON tenant_globex.users (id)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TABLE t (m tenant_globex.mood)",
        rule::SCHEMA_QUALIFIED,
    ),
    ("SELECT tenant_globex.f()", rule::SCHEMA_QUALIFIED),
    (
        "SELECT nextval('tenant_globex.users_id_seq')",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "SELECT setval('\"tenant_globex\".users_id_seq', 1)",
        rule::SCHEMA_QUALIFIED,
    ),
    ("SELECT nextval(16423)", rule::SCHEMA_QUALIFIED),
    (
        "SELECT nextval('tenant_globex' || '.users_id_seq')",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "SELECT 'tenant_globex.users'::regclass",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "SELECT 'tenant_globex'::regnamespace",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TABLE t (id int DEFAULT nextval('public.s'::regclass))",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "SELECT 1 OPERATOR(tenant_globex.+) 1",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "UPDATE users SET id = tenant_globex.users.id",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE SEQUENCE s OWNED BY tenant_globex.users.id",
        rule::SCHEMA_QUALIFIED,
    ),
    ("DROP TABLE tenant_globex.users", rule::SCHEMA_QUALIFIED),
    (
        "COMMENT ON TABLE tenant_globex.users IS 'x'",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "ALTER TABLE users SET SCHEMA tenant_globex",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "GRANT SELECT ON ALL TABLES IN SCHEMA tenant_globex TO app",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE FUNCTION tenant_globex.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM tenant_globex.users $$",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql BEGIN ATOMIC; SELECT count(*) FROM tenant_globex.users; END",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO tenant_globex.log VALUES (1)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "SELECT * FROM users ORDER BY id USING OPERATOR(tenant_globex.<)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE INDEX i ON users (name tenant_globex.text_ops)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TABLE t (name text COLLATE tenant_globex.c)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TABLE t () INHERITS (tenant_globex.users)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TABLE t (LIKE tenant_globex.users)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "MERGE INTO tenant_globex.users u USING src ON u.id = src.id WHEN MATCHED THEN DELETE",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME tenant_globex.s))",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE FUNCTION f(x tenant_globex.mood) RETURNS int LANGUAGE sql AS 'SELECT 1'",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION tenant_globex.f()",
        rule::SCHEMA_QUALIFIED,
    ),
    ("LOCK TABLE tenant_globex.users", rule::SCHEMA_QUALIFIED),
    (
        "CREATE VIEW v AS SELECT * FROM other_db.tenant_globex.users",
        rule::SCHEMA_QUALIFIED,
    ),
    ("CREATE EXTENSION IF NOT EXISTS pgcrypto", rule::EXTENSION),
    ("SET search_path TO public", rule::SESSION_STATE),
    (
        "SET LOCAL search_path TO tenant_globex",
        rule::SESSION_STATE,
    ),
    ("SET ROLE postgres", rule::SESSION_STATE),
    ("SET SESSION AUTHORIZATION postgres", rule::SESSION_STATE),
    ("RESET ROLE", rule::SESSION_STATE),
    ("RESET ALL", rule::SESSION_STATE),
    ("SET lock_timeout = '1s'", rule::SESSION_STATE),
    ("SET tenant_plane.tenant_id = 'x'", rule::SESSION_STATE),
    ("DISCARD ALL", rule::SESSION_STATE),
    ("PREPARE p AS SELECT 1", rule::SESSION_STATE),
    ("EXECUTE p", rule::SESSION_STATE),
    ("DEALLOCATE p", rule::SESSION_STATE),
    (
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        rule::SESSION_STATE,
    ),
    ("LISTEN tenant_plane", rule::SESSION_STATE),
    ("NOTIFY tenant_plane, 'x'", rule::SESSION_STATE),
    ("CREATE TEMP TABLE t (id int)", rule::SESSION_STATE),
    ("SELECT 1 INTO TEMP t", rule::SESSION_STATE),
    (
        "CREATE RULE r AS ON INSERT TO t DO ALSO NOTIFY ch",
        rule::SESSION_STATE,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = tenant_globex AS 'SELECT 1'",
        rule::SESSION_STATE,
    ),
    ("CREATE TABLE t AS EXECUTE p", rule::SESSION_STATE),
    (
        "DO $$ BEGIN EXECUTE 'DROP SCHEMA tenant_globex CASCADE'; END $$",
        rule::DYNAMIC_SQL,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        rule::DYNAMIC_SQL,
    ),
    (
        "CREATE FUNCTION f(text) RETURNS text LANGUAGE internal AS 'pg_read_file'",
        rule::DYNAMIC_SQL,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'return 1'",
        rule::DYNAMIC_SQL,
    ),
    ("CREATE POLICY p ON t USING (true)", rule::ROW_SECURITY),
    ("ALTER POLICY p ON t USING (true)", rule::ROW_SECURITY),
    ("DROP POLICY p ON t", rule::ROW_SECURITY),
    (
        "ALTER TABLE t DISABLE ROW LEVEL SECURITY",
        rule::ROW_SECURITY,
    ),
    (
        "ALTER TABLE t NO FORCE ROW LEVEL SECURITY",
        rule::ROW_SECURITY,
    ),
    (
        "SELECT set_config('search_path', 'public', false)",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "SELECT pg_catalog.set_config('role', 'postgres', true)",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "CREATE TABLE t (x text DEFAULT pg_read_file('/etc/passwd'))",
        rule::DANGEROUS_FUNCTION,
    ),
    ("SELECT * FROM pg_ls_dir('.')", rule::DANGEROUS_FUNCTION),
    ("SELECT pg_advisory_xact_lock(1)", rule::DANGEROUS_FUNCTION),
    ("SELECT pg_sleep(10)", rule::DANGEROUS_FUNCTION),
    ("SELECT pg_terminate_backend(1)", rule::DANGEROUS_FUNCTION),
    ("SELECT lo_import('/etc/passwd')", rule::DANGEROUS_FUNCTION),
    (
        "SELECT dblink_exec('host=x', 'DROP TABLE t')",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "SELECT pg_notify('tenant_plane', 'x')",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "SELECT query_to_xml('select * from public.tenants', true, true, '')",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "INSERT INTO t SELECT ts_stat('select 1')",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "CREATE VIEW v AS SELECT pg_reload_conf()",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "CREATE TABLE seaql_migrations_x (id int)",
        rule::RESERVED_NAME,
    ),
    (
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('x', 0)",
        rule::RESERVED_NAME,
    ),
    ("DELETE FROM tenant_plane_state", rule::RESERVED_NAME),
    (
        "SELECT * FROM seaql_migrations_billing",
        rule::RESERVED_NAME,
    ),
    (
        "ALTER TABLE users RENAME TO seaql_migrations_billing",
        rule::RESERVED_NAME,
    ),
    (
        "SELECT setval('seaql_migrations_id_seq', 1)",
        rule::RESERVED_NAME,
    ),
    ("CREATE INDEX tenant_plane_i ON t (id)", rule::RESERVED_NAME),
    ("SELECT N'a\\'", rule::SYNTAX),
    (
        "SELECT pg_stat_get_backend_activity(1)",
        rule::DANGEROUS_FUNCTION,
    ),
    ("SELECT pg_get_functiondef(16423)", rule::SCHEMA_QUALIFIED),
    (
        "SELECT * FROM users TABLESAMPLE tenant_globex.sampler (10)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ NOTIFY ch $$",
        rule::SESSION_STATE,
    ),
    (
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SELECT set_config('role', 'postgres', false) $$",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS 'BEGIN RETURN 1; END' $$",
        rule::DYNAMIC_SQL,
    ),
    (
        "CREATE RULE \"_RETURN\" AS ON SELECT TO v DO INSTEAD SELECT * FROM tenant_globex.users",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "SELECT 1 WHERE 1 OPERATOR(tenant_globex.=) ANY (SELECT 1)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TABLE r (during tstzrange, EXCLUDE USING gist (during WITH OPERATOR(tenant_globex.&&)))",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "COMMENT ON COLUMN tenant_globex.users.email IS 'x'",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "COMMENT ON CONSTRAINT c ON tenant_globex.users IS 'x'",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "DROP TRIGGER tr ON tenant_globex.users",
        rule::SCHEMA_QUALIFIED,
    ),
    ("DROP FUNCTION tenant_globex.f()", rule::SCHEMA_QUALIFIED),
    ("DROP TYPE tenant_globex.mood", rule::SCHEMA_QUALIFIED),
    (
        "ALTER TRIGGER tr ON tenant_globex.users RENAME TO x",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "ALTER TYPE tenant_globex.mood RENAME TO m",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "GRANT USAGE ON TYPE tenant_globex.mood TO app",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "GRANT EXECUTE ON FUNCTION tenant_globex.f() TO app",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "ALTER TABLE users ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES tenant_globex.users (id)",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "SELECT * INTO tenant_globex.copy FROM users",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "ALTER SEQUENCE s OWNED BY tenant_globex.users.id",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "SELECT * FROM U&\"tenant\\0067lobex\".users",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "ALTER FUNCTION f() SET search_path = tenant_globex",
        rule::SESSION_STATE,
    ),
    ("CREATE TEMP SEQUENCE s", rule::SESSION_STATE),
    (
        "CREATE PROCEDURE p() LANGUAGE sql AS $$ COMMIT $$",
        rule::TRANSACTION_CONTROL,
    ),
    ("DROP TABLE seaql_migrations", rule::RESERVED_NAME),
    ("TRUNCATE seaql_migrations_billing", rule::RESERVED_NAME),
    (
        "CREATE TRIGGER t AFTER INSERT ON seaql_migrations FOR EACH ROW EXECUTE FUNCTION f()",
        rule::RESERVED_NAME,
    ),
    (
        "COMMENT ON TABLE tenant_plane_state IS 'x'",
        rule::RESERVED_NAME,
    ),
    ("SELECT * FROM pg_stats", rule::SYSTEM_CATALOG),
    (
        "UPDATE pg_settings SET setting = 'public' WHERE name = 'search_path'",
        rule::SYSTEM_CATALOG,
    ),
    (
        "CREATE INDEX CONCURRENTLY i ON t (id)",
        rule::NON_TRANSACTIONAL,
    ),
    ("DROP INDEX CONCURRENTLY i", rule::NON_TRANSACTIONAL),
    ("REINDEX TABLE t", rule::NON_TRANSACTIONAL),
    ("VACUUM t", rule::NON_TRANSACTIONAL),
    ("VACUUM INTO '/tmp/x'", rule::SYNTAX),
    ("CLUSTER t USING i", rule::NON_TRANSACTIONAL),
    ("CREATE DATABASE x", rule::NON_TRANSACTIONAL),
    ("DROP DATABASE x", rule::NON_TRANSACTIONAL),
    ("ALTER SYSTEM SET work_mem = '1GB'", rule::NON_TRANSACTIONAL),
    (
        "CREATE TABLESPACE ts LOCATION '/tmp'",
        rule::NON_TRANSACTIONAL,
    ),
    (
        "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
        rule::NON_TRANSACTIONAL,
    ),
    (
        "ALTER TABLE t DETACH PARTITION p CONCURRENTLY",
        rule::NON_TRANSACTIONAL,
    ),
    ("BEGIN", rule::TRANSACTION_CONTROL),
    ("COMMIT", rule::TRANSACTION_CONTROL),
    ("ROLLBACK", rule::TRANSACTION_CONTROL),
    ("SAVEPOINT s", rule::TRANSACTION_CONTROL),
    ("RELEASE SAVEPOINT s", rule::TRANSACTION_CONTROL),
    ("PREPARE TRANSACTION 'x'", rule::TRANSACTION_CONTROL),
    (
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        rule::TRANSACTION_CONTROL,
    ),
    ("CREATE SCHEMA evil", rule::CREATE_SCHEMA),
    ("DROP SCHEMA tenant_globex CASCADE", rule::CREATE_SCHEMA),
    (
        "ALTER SCHEMA tenant_globex RENAME TO x",
        rule::CREATE_SCHEMA,
    ),
    ("GRANT SELECT ON users TO PUBLIC", rule::PRIVILEGES),
    ("REVOKE SELECT ON users FROM PUBLIC", rule::PRIVILEGES),
    (
        "GRANT SELECT ON users TO app WITH GRANT OPTION",
        rule::PRIVILEGES,
    ),
    ("GRANT USAGE ON SCHEMA tenant_acme TO app", rule::PRIVILEGES),
    ("GRANT postgres TO app", rule::PRIVILEGES),
    ("CREATE ROLE evil LOGIN PASSWORD 'x'", rule::PRIVILEGES),
    ("ALTER USER app SUPERUSER", rule::PRIVILEGES),
    ("DROP ROLE app", rule::PRIVILEGES),
    ("ALTER TABLE users OWNER TO app", rule::PRIVILEGES),
    ("ALTER FUNCTION f() OWNER TO app", rule::PRIVILEGES),
    (
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app",
        rule::PRIVILEGES,
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
        rule::PRIVILEGES,
    ),
    ("ALTER FUNCTION f() SECURITY DEFINER", rule::PRIVILEGES),
    ("REVOKE ALL ON users FROM CURRENT_USER", rule::PRIVILEGES),
    (
        "CREATE FUNCTION tenant_plane_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        rule::RESERVED_NAME,
    ),
    ("COPY t TO PROGRAM 'sh'", rule::COPY),
    ("COPY t FROM '/etc/passwd'", rule::COPY),
    ("COPY t FROM STDIN", rule::COPY),
    (
        "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
        rule::SERVER_OBJECTS,
    ),
    ("CREATE PUBLICATION p FOR ALL TABLES", rule::SERVER_OBJECTS),
    (
        "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p",
        rule::SERVER_OBJECTS,
    ),
    (
        "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw",
        rule::SERVER_OBJECTS,
    ),
    ("CREATE FOREIGN DATA WRAPPER w", rule::SERVER_OBJECTS),
    ("CREATE USER MAPPING FOR app SERVER s", rule::SERVER_OBJECTS),
    (
        "CREATE FOREIGN TABLE f (id int) SERVER s",
        rule::SERVER_OBJECTS,
    ),
    (
        "IMPORT FOREIGN SCHEMA public FROM SERVER s INTO x",
        rule::SERVER_OBJECTS,
    ),
    ("CREATE LANGUAGE plperlu", rule::EXTENSION),
    (
        "CREATE LANGUAGE plsh HANDLER plsh_handler",
        rule::SERVER_OBJECTS,
    ),
    ("LOAD 'auto_explain'", rule::SERVER_OBJECTS),
    ("CHECKPOINT", rule::SERVER_OBJECTS),
    ("SECURITY LABEL ON TABLE t IS 'x'", rule::SERVER_OBJECTS),
    ("CREATE CAST (text AS int) WITH INOUT", rule::SERVER_OBJECTS),
    (
        "CREATE COLLATION c (provider = icu, locale = 'und')",
        rule::SERVER_OBJECTS,
    ),
    (
        "CREATE TABLE t (id int) TABLESPACE pg_default",
        rule::SERVER_OBJECTS,
    ),
    ("DROP TABLE users", rule::DESTRUCTIVE),
    ("ALTER TABLE users DROP COLUMN name", rule::DESTRUCTIVE),
    (
        "ALTER TABLE users ALTER COLUMN name TYPE varchar(10)",
        rule::DESTRUCTIVE,
    ),
    ("TRUNCATE users", rule::DESTRUCTIVE),
    ("DROP TYPE mood CASCADE", rule::DESTRUCTIVE),
    ("EXPLAIN ANALYZE SELECT 1", rule::UNSUPPORTED_STATEMENT),
    ("CALL p()", rule::UNSUPPORTED_STATEMENT),
    ("SHOW search_path", rule::UNSUPPORTED_STATEMENT),
    (
        "CREATE AGGREGATE a (int) (sfunc = int4pl, stype = int)",
        rule::UNSUPPORTED_STATEMENT,
    ),
    (
        "COMMENT ON DATABASE postgres IS 'x'",
        rule::UNSUPPORTED_STATEMENT,
    ),
    ("ANALYZE", rule::UNSUPPORTED_STATEMENT),
];

#[test]
fn each_hostile_or_unfit_postgres_statement_is_refused_by_its_rule() {
    let mut wrong = Vec::new();
    for (statement, expected) in REFUSED_ON_POSTGRES {
        let linted = pg(statement);
        let errors = rules(&linted, Severity::Error);
        if !errors.contains(expected) {
            wrong.push(format!(
                "{statement}\n  expected {expected}, got {:?}",
                linted.findings
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The statements of ordinary migrations.
const CLEAN_ON_POSTGRES: &[&str] = &[
    "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE orders (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE, total numeric(12, 2) CHECK (total >= 0))",
    "CREATE INDEX orders_user_id_idx ON orders (user_id) WHERE total > 0",
    "CREATE UNIQUE INDEX users_email_lower ON users (lower(email))",
    "ALTER TABLE users ADD COLUMN name varchar(200)",
    "ALTER TABLE users ALTER COLUMN name SET DEFAULT ''",
    "ALTER TABLE users ADD CONSTRAINT users_name_check CHECK (length(name) < 300)",
    "ALTER TABLE users RENAME COLUMN name TO full_name",
    "ALTER TABLE users RENAME TO accounts",
    "ALTER INDEX orders_user_id_idx RENAME TO orders_user_idx",
    "INSERT INTO users (email, name) VALUES ('a@example.com', 'A'), ('b@example.com', 'B') ON CONFLICT (email) DO NOTHING",
    "UPDATE users SET name = upper(name) WHERE id IN (SELECT user_id FROM orders)",
    "DELETE FROM orders WHERE total = 0",
    "WITH moved AS (SELECT id FROM users) UPDATE orders SET total = 0 FROM moved WHERE orders.user_id = moved.id",
    "CREATE FUNCTION order_count(uid bigint) RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders WHERE user_id = uid; $$",
    "CREATE FUNCTION touch() RETURNS int LANGUAGE sql BEGIN ATOMIC; SELECT 1; END",
    "SELECT now(), pg_catalog.now(), current_setting('tenant_plane.tenant_id', true)",
    "CREATE TABLE events (id int GENERATED ALWAYS AS IDENTITY, at timestamptz DEFAULT pg_catalog.now(), kind text COLLATE \"C\")",
    "CREATE SEQUENCE invoice_numbers START 1000 OWNED BY orders.total",
    "SELECT setval('invoice_numbers', 2000)",
    "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))",
    "CREATE TABLE t (id int DEFAULT nextval('invoice_numbers'::regclass))",
    "CREATE TYPE mood AS ENUM ('happy', 'sad')",
    "CREATE TYPE pair AS (a int, b text)",
    "CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%')",
    "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100",
    "CREATE MATERIALIZED VIEW totals AS SELECT user_id, sum(total) FROM orders GROUP BY user_id",
    "REFRESH MATERIALIZED VIEW totals",
    "COMMENT ON TABLE users IS 'the accounts'",
    "COMMENT ON COLUMN users.email IS 'unique'",
    "CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()",
    "CREATE RULE orders_no_delete AS ON DELETE TO orders DO INSTEAD NOTHING",
    "LOCK TABLE users IN SHARE MODE",
    "GRANT SELECT, INSERT ON users TO billing_app",
    "REVOKE UPDATE ON users FROM billing_app",
    "SET LOCAL lock_timeout = '5s'",
    "SET LOCAL statement_timeout TO 60000",
    "DROP INDEX orders_user_idx",
    "DROP VIEW big_orders",
    "ALTER TABLE orders DROP CONSTRAINT orders_total_check",
    "ALTER TABLE orders ENABLE ROW LEVEL SECURITY",
    "CREATE TABLE log (at timestamptz, line text) PARTITION BY RANGE (at)",
    "CREATE TABLE x (LIKE users INCLUDING ALL)",
    "CREATE TABLE bookings (room int, during tstzrange, EXCLUDE USING gist (during WITH &&))",
    "ANALYZE users",
    "SELECT 'it''s', E'a\\'b', $$x\\'y$$",
];

#[test]
fn ordinary_migration_statements_pass_without_a_finding() {
    let mut wrong = Vec::new();
    for statement in CLEAN_ON_POSTGRES {
        let linted = pg(statement);
        if !linted.findings.is_empty() || linted.destructive {
            wrong.push(format!("{statement}\n  got {:?}", linted.findings));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_destructive_statement_is_refused_without_the_allowance_and_noted_with_it() {
    let script = "ALTER TABLE users DROP COLUMN legacy; DROP TABLE old_orders";

    let refused = pg(script);
    let allowed = lint(
        script,
        Dialect::Postgres,
        Allowances {
            destructive: true,
            ..Allowances::default()
        },
    );

    assert!(refused.destructive && refused.refused());
    assert_eq!(rules(&refused, Severity::Error), [rule::DESTRUCTIVE; 2]);
    assert!(allowed.destructive && !allowed.refused());
    assert_eq!(rules(&allowed, Severity::Note), [rule::DESTRUCTIVE; 2]);
    let indexes: Vec<_> = allowed.findings.iter().map(|f| f.statement_index).collect();
    assert_eq!(indexes, [0, 1]);
}

#[test]
fn a_script_without_destructive_statements_is_not_marked_destructive() {
    let linted = pg("CREATE TABLE t (id int); ALTER TABLE t ADD COLUMN name text");

    assert!(!linted.destructive && linted.findings.is_empty());
}

#[test]
fn dynamic_sql_and_extensions_are_noted_when_allowed_but_untrusted_languages_never_pass() {
    let allow = Allowances {
        dynamic_sql: true,
        extensions: true,
        ..Allowances::default()
    };
    let script = "CREATE EXTENSION pgcrypto;\n\
        DO $$ BEGIN PERFORM 1; END $$;\n\
        CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;\n\
        CREATE FUNCTION g() RETURNS int LANGUAGE c AS 'mylib', 'g'";

    let linted = lint(script, Dialect::Postgres, allow);

    let found: Vec<_> = linted
        .findings
        .iter()
        .map(|f| (f.statement_index, f.rule, f.severity))
        .collect();
    assert_eq!(
        found,
        [
            (0, rule::EXTENSION, Severity::Note),
            (1, rule::DYNAMIC_SQL, Severity::Note),
            (2, rule::DYNAMIC_SQL, Severity::Note),
            (3, rule::DYNAMIC_SQL, Severity::Error),
        ]
    );
}

#[test]
fn a_script_is_split_into_its_statements_around_comments_and_dollar_quoted_bodies() {
    let script = "-- the accounts\n\
        CREATE TABLE users (id int, note text DEFAULT 'a;b'); /* ; */\n\
        CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; SELECT 2; $body$;\n\
        \n\
        INSERT INTO users (id) VALUES (1);\n\
        -- trailing comment only\n";

    let linted = pg(script);

    assert!(linted.findings.is_empty(), "{:?}", linted.findings);
    assert_eq!(linted.statements.len(), 3, "{:?}", linted.statements);
    assert!(linted.statements[0].ends_with("DEFAULT 'a;b')"));
    assert!(linted.statements[1].starts_with("CREATE FUNCTION f()"));
    assert!(linted.statements[1].ends_with("$body$"));
    assert_eq!(linted.statements[2], "INSERT INTO users (id) VALUES (1)");
}

#[test]
fn a_syntax_error_is_placed_on_its_statement_and_the_others_are_still_linted() {
    let linted = pg("CREATE TABLE t (id int); CREAT TABLE u (id int); SET search_path TO public");

    let found: Vec<_> = linted
        .findings
        .iter()
        .map(|f| (f.statement_index, f.rule))
        .collect();
    assert_eq!(found, [(1, rule::SYNTAX), (2, rule::SESSION_STATE)]);
}

#[test]
fn an_unfinished_last_statement_is_refused_however_the_script_is_split() {
    for script in [
        "CREATE TABLE invoice_lines (id int);\nCREATE TABLE (",
        "CREATE TABLE t (id int); SELECT 'unterminated",
        "CREATE TABLE t (id int); CREATE TABLE u (id int",
    ] {
        let linted = pg(script);

        assert!(
            linted.findings.iter().any(|f| f.rule == rule::SYNTAX),
            "{script}: {linted:?}"
        );
        assert!(linted.refused(), "{script}");
    }
}

#[test]
fn a_finding_names_its_statement_and_says_what_to_do() {
    let linted = pg("CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY t_id ON t (id)");

    let finding = &linted.findings[0];
    assert_eq!(finding.statement_index, 1);
    assert_eq!(finding.rule, rule::NON_TRANSACTIONAL);
    assert_eq!(
        finding.statement,
        "CREATE INDEX CONCURRENTLY t_id ON t (id)"
    );
    assert!(
        finding.message.contains("use CREATE INDEX"),
        "{}",
        finding.message
    );
}

#[test]
fn the_roles_a_script_grants_to_are_listed_for_the_caller_to_check() {
    let linted =
        pg("GRANT SELECT ON users TO billing_app, reporting; REVOKE ALL ON t FROM old_app");

    assert!(!linted.refused());
    assert_eq!(linted.grantees, ["billing_app", "reporting", "old_app"]);
}

#[test]
fn a_statement_outside_the_allowlist_is_refused_by_its_kind() {
    let linted = pg("SET CONSTRAINTS ALL DEFERRED");

    assert_eq!(
        rules(&linted, Severity::Error),
        [rule::UNSUPPORTED_STATEMENT]
    );
    assert!(linted.findings[0].message.contains("ConstraintsSetStmt"));
}

#[test]
fn a_finding_inside_a_function_body_says_where_it_is() {
    let linted = pg(
        "CREATE FUNCTION count_others() RETURNS bigint LANGUAGE sql AS \
                     $$ SELECT count(*) FROM tenant_globex.users $$",
    );

    assert_eq!(rules(&linted, Severity::Error), [rule::SCHEMA_QUALIFIED]);
    assert!(
        linted.findings[0]
            .message
            .starts_with("in the body of count_others: "),
        "{}",
        linted.findings[0].message
    );
}
