//! The grants a tenant role gets in a schema, written so that none reads a catalog table whose
//! size grows with the fleet (the module docs of [`super`] say why): default privileges set
//! before the migrations, grants by name on what a schema already holds (found through
//! `pg_depend`'s index), and CONNECT through one connect role per catalog database.

use super::super::sql::{Ident, Literal};

/// What a tenant role may do with its tables' rows: everything but change their shape.
pub(super) const TABLE_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE";
/// What it may do with its tables' sequences: draw the next value (`nextval`, and `currval` of
/// this session's own). Not SELECT: a SHARED tenant's sequences count every shared tenant's
/// rows, and `SELECT last_value` would tell it how much the others write.
pub(super) const SEQUENCE_PRIVILEGES: &str = "USAGE";
/// Serialises changes to the catalog database's own privileges (its one row of `pg_database`,
/// which two grants at once would both rewrite: "tuple concurrently updated") and the making
/// of its connect role, as an SQL literal for `hashtextextended`.
pub(super) const CATALOG_CONNECT_LOCK: &str = "'tenant-plane:catalog-connect'";
/// The connect role's name before the catalog database's oid, as an SQL literal. Not of the
/// form of a tenant's storage or role name (`[a-z0-9_]` only), so no tenant can be given it.
pub(super) const CONNECT_ROLE_PREFIX: &str = "'tenant-plane-connect-'";
/// The comment on the connect role, as an SQL literal: a role of its name without it is not
/// the control plane's.
pub(super) const CONNECT_ROLE_MARK: &str = "'tenant-plane connect'";
/// How every component's version table is named ("seaql_migrations", "seaql_migrations_<id>"):
/// the role may read them, never change them.
const VERSION_TABLES: &str = "seaql_migrations";
/// The privileges a tenant role holds in `schema`, given without scanning a catalog table
/// whose size grows with the fleet (see the module docs): the schema's default privileges, so
/// that every table and sequence made in it from now on is granted as it is made; SELECT on
/// the version table, which is made before them; and, where the schema holds tables made
/// before (`existing`), grants on those by name. The revocations take from a role granted by
/// an older version what it no longer gets (they change nothing for a role made just now).
///
/// Sent after the version table is made and before the migrations run: what they create is
/// then granted by PostgreSQL itself, row by row, as it creates it.
pub(super) fn schema_grants(
    role: &str,
    schema: &str,
    start: GrantStart,
    version_tables: &[&str],
) -> String {
    let existing = start == GrantStart::ExistingSchema;
    let role_q = Ident::new(role);
    let schema_q = Ident::new(schema);
    let mut sql = format!(
        "GRANT USAGE ON SCHEMA {schema_q} TO {role_q}; \
         ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA {schema_q} \
           GRANT {TABLE_PRIVILEGES} ON TABLES TO {role_q}; \
         ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA {schema_q} \
           GRANT {SEQUENCE_PRIVILEGES} ON SEQUENCES TO {role_q}; "
    );
    if existing {
        sql.push_str(&grants_on_existing(role, schema));
    }
    for table in version_tables {
        let version = format!("{schema_q}.{}", Ident::new(table));
        sql.push_str(&format!("GRANT SELECT ON {version} TO {role_q}; "));
        if start != GrantStart::Fresh {
            sql.push_str(&format!(
                "REVOKE INSERT, UPDATE, DELETE ON {version} FROM {role_q}; "
            ));
        }
    }
    if start != GrantStart::Fresh {
        sql.push_str(&format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA {schema_q} \
               REVOKE SELECT ON SEQUENCES FROM {role_q}; "
        ));
    }
    sql
}

/// What a role's grants in a schema start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrantStart {
    /// The role and the schema were both made in this transaction: nothing to grant by name,
    /// nothing to take back.
    Fresh,
    /// The schema was made in this transaction, the role before it: nothing to grant by name;
    /// what an older version granted the role is taken back.
    NewSchema,
    /// The schema holds tables made before: they are granted by name, and what an older
    /// version granted the role is taken back.
    ExistingSchema,
}

/// Grants the role its privileges on every table and sequence already in `schema`, by name.
/// `GRANT … ON ALL TABLES IN SCHEMA` would find them by reading the whole of `pg_class` (it
/// has no index on a relation's schema), which holds every tenant's tables: 6.4 ms at 30,000
/// rows, 14 ms at 79,000, 35 ms at 139,000. Here they are found through `pg_depend`, where
/// each relation records its schema and which is indexed on what is depended on: the cost
/// follows the schema's own objects, not the fleet's.
fn grants_on_existing(role: &str, schema: &str) -> String {
    format!(
        "DO $grant$ DECLARE tables text; sequences text; versions text; BEGIN \
           SELECT string_agg(c.oid::regclass::text, ', ') \
                    FILTER (WHERE c.relkind <> 'S' AND left(c.relname, {prefix}) <> {versions}), \
                  string_agg(c.oid::regclass::text, ', ') FILTER (WHERE c.relkind = 'S'), \
                  string_agg(c.oid::regclass::text, ', ') \
                    FILTER (WHERE c.relkind = 'r' AND left(c.relname, {prefix}) = {versions}) \
             INTO tables, sequences, versions \
             FROM ({relations}) AS r JOIN pg_class c ON c.oid = r.oid \
             WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S'); \
           IF tables IS NOT NULL THEN \
             EXECUTE format('GRANT {TABLE_PRIVILEGES} ON TABLE %s TO %I', tables, {role}); \
           END IF; \
           IF sequences IS NOT NULL THEN \
             EXECUTE format('GRANT {SEQUENCE_PRIVILEGES} ON SEQUENCE %s TO %I', sequences, {role}); \
             EXECUTE format('REVOKE SELECT ON SEQUENCE %s FROM %I', sequences, {role}); \
           END IF; \
           IF versions IS NOT NULL THEN \
             EXECUTE format('GRANT SELECT ON TABLE %s TO %I', versions, {role}); \
             EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON TABLE %s FROM %I', versions, {role}); \
           END IF; \
         END $grant$; ",
        relations = relations_in_schema(&Literal::new(&Ident::new(schema))),
        role = Literal::new(role),
        prefix = VERSION_TABLES.len(),
        versions = Literal::new(VERSION_TABLES),
    )
}

/// A query of the oids of the relations (tables, views, sequences; not indexes) in the schema
/// named by `schema`, an SQL expression of a quoted identifier (`'"tenant_acme"'`), read
/// through the index of `pg_depend` on what is depended on: one index range, however many
/// relations other schemas hold.
pub(in crate::dataplane) fn relations_in_schema(schema: &str) -> String {
    format!(
        "SELECT d.objid AS oid FROM pg_depend d \
         WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = {schema}::regnamespace \
           AND d.refobjsubid = 0 AND d.classid = 'pg_class'::regclass AND d.deptype = 'n'"
    )
}

/// Makes the role (a SCHEMA or SHARED tenant's) a member of the catalog database's connect
/// role, `tenant-plane-connect-<database oid>`, which alone holds CONNECT on that database
/// when PUBLIC does not; makes that role first if it is missing (once per catalog database),
/// and grants it CONNECT if PUBLIC may not connect and it may not yet.
///
/// Each role granted CONNECT directly would add an entry to the catalog database's privileges,
/// one row of `pg_database` that every such grant (and every purge's `DROP OWNED`) rewrites
/// whole, and every login reads: a cost that grows with the fleet. A membership is a row of
/// `pg_auth_members` of its own, found by its index. The connect role may not log in and holds
/// nothing else; it is marked like a tenant's role, and a role of its name without the mark is
/// refused rather than joined. The tenant role inherits (INHERIT) what its memberships hold:
/// this one only. A role of an older version, granted CONNECT directly, keeps that grant and
/// joins on its next provisioning.
pub(super) fn join_connect_role(role: &str) -> String {
    format!(
        "DO $connect$ DECLARE \
           connect text := {CONNECT_ROLE_PREFIX} \
             || (SELECT oid FROM pg_database WHERE datname = current_database()); \
         BEGIN \
           IF to_regrole(quote_ident(connect)) IS NULL THEN \
             PERFORM pg_advisory_xact_lock(hashtextextended({CATALOG_CONNECT_LOCK}, 0)); \
             BEGIN \
               EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', connect); \
               EXECUTE format('COMMENT ON ROLE %I IS %L', connect, {CONNECT_ROLE_MARK}); \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
             END; \
           END IF; \
           IF coalesce(shobj_description(to_regrole(quote_ident(connect)), 'pg_authid'), '') \
                <> {CONNECT_ROLE_MARK} THEN \
             RAISE EXCEPTION 'role % exists but was not made by tenant-plane (it lacks the \
               comment %): tenant roles are not made members of it', connect, {CONNECT_ROLE_MARK} \
               USING ERRCODE = 'duplicate_object'; \
           END IF; \
           IF NOT has_database_privilege('public', current_database(), 'CONNECT') \
              AND NOT has_database_privilege(connect, current_database(), 'CONNECT') THEN \
             PERFORM pg_advisory_xact_lock(hashtextextended({CATALOG_CONNECT_LOCK}, 0)); \
             EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), connect); \
           END IF; \
           IF NOT pg_has_role({role}, connect, 'MEMBER') THEN \
             EXECUTE format('ALTER ROLE %I INHERIT', {role}); \
             EXECUTE format('GRANT %I TO %I', connect, {role}); \
           END IF; \
         END $connect$; ",
        role = Literal::new(role),
    )
}
