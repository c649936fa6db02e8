//! The lint on PostgreSQL: each statement is parsed by PostgreSQL's own parser, its kind is
//! checked against the allowlist (this file, [`statement`]), what it does to the tenant's
//! objects ([`objects`]), its routines and settings against what may run as the control plane's
//! role ([`routines`]), and every node of its tree for names and calls that leave the tenant's
//! schema ([`tree`], [`calls`]).

mod calls;
mod objects;
mod routines;
mod tree;

use objects::{alter_table, comment, drop, grant, rename};
use pg_query::NodeEnum as N;
use pg_query::protobuf::{self as pb, ObjectType as Ot};

use super::{Allowances, Linted, Sink, quote, reserved, rule};

/// `WITH HOLD` in a cursor's options (PostgreSQL's `CURSOR_OPT_HOLD`).
const CURSOR_OPT_HOLD: i32 = 0x0020;

pub(super) fn lint(script: &str, allow: Allowances, linted: &mut Linted) {
    let (chunks, refused) = match pg_query::split_with_parser(script) {
        Ok(chunks) => (chunks, None),
        // The parser stops at the first error; the scanner still finds the statements, so each
        // one is reported on its own and the error is placed on the statement that has it.
        Err(error) => match pg_query::split_with_scanner(script) {
            Ok(chunks) if !chunks.is_empty() => (with_rest(script, chunks), Some(error)),
            _ => {
                let mut sink = Sink::new(linted, allow, 0, script);
                sink.error(
                    rule::SYNTAX,
                    format!("the script does not parse as PostgreSQL: {error}"),
                );
                return;
            }
        },
    };
    for chunk in chunks {
        let text = chunk.trim();
        if text.is_empty() {
            continue;
        }
        let parsed = pg_query::parse(text, pg_query::ParserOptions::DEFAULT);
        if let Ok(parsed) = &parsed
            && parsed.protobuf.stmts.is_empty()
        {
            // Only comments.
            continue;
        }
        let index = linted.statements.len();
        linted.statements.push(text.to_owned());
        let mut sink = Sink::new(linted, allow, index, text);
        strings(text, &mut sink);
        match parsed {
            Ok(parsed) => {
                for raw in &parsed.protobuf.stmts {
                    if let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
                        statement(node, &mut sink);
                        tree::walk(node, &mut sink);
                    }
                }
            }
            Err(error) => sink.error(
                rule::SYNTAX,
                format!("the statement does not parse as PostgreSQL: {error}"),
            ),
        }
    }
    // Whatever the scanner made of it, a script the parser refused is refused.
    if let Some(error) = refused
        && !linted.findings.iter().any(|f| f.rule == rule::SYNTAX)
    {
        let index = linted.statements.len().saturating_sub(1);
        let statement = linted.statements.last().cloned().unwrap_or_default();
        Sink::new(linted, allow, index, &statement).error(
            rule::SYNTAX,
            format!("the script does not parse as PostgreSQL: {error}"),
        );
    }
}

/// Lints the statements of a string PostgreSQL parses later (the body of a `LANGUAGE sql`
/// function), as if they stood in the script.
fn body(sql: &str, within: String, s: &mut Sink) {
    let outer = s.within.replace(within);
    strings(sql, s);
    match pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) {
        Ok(parsed) => {
            for raw in &parsed.protobuf.stmts {
                if let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
                    statement(node, s);
                    tree::walk(node, s);
                }
            }
        }
        Err(error) => s.error(
            rule::SYNTAX,
            format!("does not parse as PostgreSQL: {error}"),
        ),
    }
    s.within = outer;
}

/// Refuses a string literal whose end depends on `standard_conforming_strings`: with the
/// setting off, `\'` does not end the literal, and the server would split the script elsewhere
/// than the lint did.
fn strings(sql: &str, s: &mut Sink) {
    let Ok(scanned) = pg_query::scan(sql) else {
        return; // The parser reports it.
    };
    for token in scanned.tokens {
        if token.token != pb::Token::Sconst as i32 {
            continue;
        }
        let (Ok(start), Ok(end)) = (usize::try_from(token.start), usize::try_from(token.end))
        else {
            continue;
        };
        let Some(text) = sql.get(start..end) else {
            continue;
        };
        // A standard string ('…', or N'…'); E'…', U&'…', bit strings and dollar quotes read
        // backslashes alike whatever the setting.
        let standard = text.starts_with('\'') || text.starts_with("N'") || text.starts_with("n'");
        if standard && text.contains("\\'") {
            s.error(
                rule::SYNTAX,
                format!(
                    "the literal {} has a backslash before a quote, which PostgreSQL reads \
                     differently when standard_conforming_strings is off; write it as an \
                     escape string (E'…' with \\\\ for a backslash) or a dollar-quoted string",
                    quote(text)
                ),
            );
        }
    }
}

/// Checks one statement's kind against the allowlist, and what its kind alone can tell.
fn statement(node: &N, s: &mut Sink) {
    match node {
        N::SelectStmt(_)
        | N::InsertStmt(_)
        | N::UpdateStmt(_)
        | N::DeleteStmt(_)
        | N::MergeStmt(_)
        | N::ReturnStmt(_)
        | N::CreateStmt(_)
        | N::ViewStmt(_)
        | N::CreateSeqStmt(_)
        | N::AlterSeqStmt(_)
        | N::CompositeTypeStmt(_)
        | N::LockStmt(_) => {}
        N::AlterTableStmt(a) => alter_table(a, s),
        N::IndexStmt(i) => {
            if i.concurrent {
                s.error(
                    rule::NON_TRANSACTIONAL,
                    "CREATE INDEX CONCURRENTLY cannot run inside the tenant's transaction; use \
                     CREATE INDEX (it locks the table against writes while it builds), or \
                     build the index concurrently by hand outside migrations",
                );
            }
            if reserved(&i.idxname) {
                reserved_error(&i.idxname, s);
            }
        }
        N::DropStmt(d) => drop(d, s),
        N::CreateTableAsStmt(c) => {
            if let Some(query) = c.query.as_ref().and_then(|q| q.node.as_ref()) {
                statement(query, s);
            }
        }
        N::RefreshMatViewStmt(r) => {
            if r.concurrent {
                s.error(
                    rule::NON_TRANSACTIONAL,
                    "REFRESH MATERIALIZED VIEW CONCURRENTLY cannot run inside the tenant's \
                     transaction; use REFRESH MATERIALIZED VIEW",
                );
            }
        }
        N::CommentStmt(c) => comment(c, s),
        N::CreateEnumStmt(e) => defined(&e.type_name, "a type", s),
        N::CreateDomainStmt(d) => defined(&d.domainname, "a domain", s),
        N::CreateRangeStmt(r) => defined(&r.type_name, "a type", s),
        N::AlterDomainStmt(d) => defined(&d.type_name, "a domain", s),
        N::AlterEnumStmt(e) => {
            defined(&e.type_name, "a type", s);
            if e.old_val.is_empty() {
                s.note(
                    rule::NON_TRANSACTIONAL,
                    "ALTER TYPE … ADD VALUE runs in the tenant's transaction, but the new value \
                     cannot be used until that transaction commits: not by this migration, nor \
                     by a later one applied in the same run (provisioning applies every \
                     migration in one transaction); use it only from the application, or \
                     replace the enum with a lookup table or a CHECK constraint",
                );
            }
        }
        N::CreateFunctionStmt(f) => routines::create_function(f, s),
        N::AlterFunctionStmt(f) => routines::alter_function(f, s),
        N::DoStmt(d) => routines::do_block(d, s),
        N::VariableSetStmt(v) => routines::set(v, s),
        N::CreateTrigStmt(t) => qualified(&t.funcname, true, "a trigger's function", s),
        N::RenameStmt(r) => rename(r, s),
        N::RuleStmt(r) => {
            let outer = s
                .within
                .replace(format!("in an action of rule {}", r.rulename));
            for action in &r.actions {
                if let Some(action) = action.node.as_ref() {
                    statement(action, s);
                }
            }
            s.within = outer;
        }
        N::TruncateStmt(_) => s.destructive("TRUNCATE deletes every row of the table"),
        N::CreateExtensionStmt(e) => {
            s.allowed_or(
                s.allow.extensions,
                rule::EXTENSION,
                &format!(
                    "CREATE EXTENSION {}: allowed by allow_extensions; an extension is installed \
                     once per database, in the schema of the first tenant that creates it",
                    e.extname
                ),
                &format!(
                    "CREATE EXTENSION {} installs objects for the whole database as the control \
                     plane's role; ask an operator to install it, or push with allow_extensions \
                     (admin only)",
                    e.extname
                ),
            );
            for option in &e.options {
                if let Some(N::DefElem(d)) = option.node.as_ref()
                    && d.defname == "schema"
                {
                    s.error(
                        rule::SCHEMA_QUALIFIED,
                        "CREATE EXTENSION … SCHEMA installs into a schema other than the \
                         tenant's; leave SCHEMA out",
                    );
                }
            }
        }
        N::AlterExtensionStmt(_) | N::AlterExtensionContentsStmt(_) => s.allowed_or(
            s.allow.extensions,
            rule::EXTENSION,
            "ALTER EXTENSION: allowed by allow_extensions",
            "ALTER EXTENSION changes an extension the whole database shares; ask an operator, or \
             push with allow_extensions (admin only)",
        ),
        N::GrantStmt(g) => grant(g, s),
        N::VacuumStmt(v) => {
            if v.is_vacuumcmd {
                s.error(
                    rule::NON_TRANSACTIONAL,
                    "VACUUM cannot run inside the tenant's transaction; leave it to autovacuum",
                );
            } else if v.rels.is_empty() {
                unsupported(
                    "ANALYZE without a table analyzes every table the control plane's role \
                     owns, every tenant's; name the tenant's tables",
                    s,
                );
            }
        }
        N::TransactionStmt(_) => s.error(
            rule::TRANSACTION_CONTROL,
            "the control plane runs each tenant's migrations in one transaction of its own; \
             BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE and PREPARE TRANSACTION would end or \
             split it; remove the statement",
        ),
        N::DiscardStmt(_) => session_state("DISCARD", s),
        N::PrepareStmt(_) | N::ExecuteStmt(_) | N::DeallocateStmt(_) => {
            session_state("PREPARE, EXECUTE and DEALLOCATE", s)
        }
        N::ListenStmt(_) | N::UnlistenStmt(_) | N::NotifyStmt(_) => s.error(
            rule::SESSION_STATE,
            "LISTEN, UNLISTEN and NOTIFY subscribe the pooled session to channels or signal \
             the control plane's own listeners; remove the statement",
        ),
        N::DeclareCursorStmt(d) => {
            if d.options & CURSOR_OPT_HOLD != 0 {
                session_state("DECLARE … WITH HOLD", s);
            } else {
                unsupported(
                    "a cursor is of no use in a migration; use INSERT … SELECT",
                    s,
                );
            }
        }
        N::CopyStmt(_) => s.error(
            rule::COPY,
            "COPY reads or writes server files, runs programs (PROGRAM) or needs a client \
             stream (STDIN/STDOUT) the control plane does not provide; seed rows with INSERT",
        ),
        N::CreateSchemaStmt(_) => schema_statement("CREATE SCHEMA", s),
        N::AlterObjectSchemaStmt(_) => s.error(
            rule::SCHEMA_QUALIFIED,
            "ALTER … SET SCHEMA moves an object out of the tenant's schema; remove the statement",
        ),
        N::CreatedbStmt(_)
        | N::DropdbStmt(_)
        | N::AlterSystemStmt(_)
        | N::CreateTableSpaceStmt(_)
        | N::DropTableSpaceStmt(_)
        | N::ReindexStmt(_)
        | N::ClusterStmt(_) => s.error(
            rule::NON_TRANSACTIONAL,
            "databases, tablespaces, ALTER SYSTEM, REINDEX and CLUSTER are server maintenance \
             that PostgreSQL refuses (or that would lock for long) inside the tenant's \
             transaction; ask an operator",
        ),
        N::CreateRoleStmt(_)
        | N::AlterRoleStmt(_)
        | N::AlterRoleSetStmt(_)
        | N::DropRoleStmt(_)
        | N::GrantRoleStmt(_)
        | N::AlterDefaultPrivilegesStmt(_)
        | N::AlterOwnerStmt(_)
        | N::ReassignOwnedStmt(_)
        | N::DropOwnedStmt(_) => s.error(
            rule::PRIVILEGES,
            "roles, role membership, ownership and default privileges belong to the whole \
             server and to the control plane, which owns every tenant's objects; grant named \
             roles privileges on the tenant's objects instead",
        ),
        N::CreatePolicyStmt(_) | N::AlterPolicyStmt(_) => row_security(s),
        N::CreateEventTrigStmt(_)
        | N::AlterEventTrigStmt(_)
        | N::CreatePublicationStmt(_)
        | N::AlterPublicationStmt(_)
        | N::CreateSubscriptionStmt(_)
        | N::AlterSubscriptionStmt(_)
        | N::DropSubscriptionStmt(_)
        | N::CreateFdwStmt(_)
        | N::AlterFdwStmt(_)
        | N::CreateForeignServerStmt(_)
        | N::AlterForeignServerStmt(_)
        | N::CreateUserMappingStmt(_)
        | N::AlterUserMappingStmt(_)
        | N::DropUserMappingStmt(_)
        | N::CreateForeignTableStmt(_)
        | N::ImportForeignSchemaStmt(_)
        | N::CreatePlangStmt(_)
        | N::LoadStmt(_)
        | N::CheckPointStmt(_)
        | N::SecLabelStmt(_)
        | N::CreateCastStmt(_)
        | N::CreateTransformStmt(_)
        | N::CreateAmStmt(_)
        | N::AlterTableSpaceOptionsStmt(_)
        | N::AlterTableMoveAllStmt(_)
        | N::AlterDatabaseStmt(_)
        | N::AlterDatabaseSetStmt(_)
        | N::AlterDatabaseRefreshCollStmt(_)
        | N::AlterCollationStmt(_)
        | N::CreateConversionStmt(_) => server_objects(s),
        N::DefineStmt(d) if d.kind == Ot::ObjectCollation as i32 => server_objects(s),
        _ => unsupported(
            &format!(
                "{} is not among the statements a tenant migration may run (see \"The lint\" \
                 in docs/migrations.md)",
                kind_name(node)
            ),
            s,
        ),
    }
}

/// The parser's name for a statement's kind, from its serde form ("ConstraintsSetStmt").
fn kind_name(node: &N) -> String {
    serde_json::to_value(node)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()))
        .unwrap_or_else(|| "this kind of statement".to_owned())
}

fn unsupported(why: &str, s: &mut Sink) {
    s.error(rule::UNSUPPORTED_STATEMENT, format!("refused: {why}"));
}

fn session_state(what: &str, s: &mut Sink) {
    s.error(
        rule::SESSION_STATE,
        format!(
            "{what} leaves state on the pooled connection, which the next tenant's transaction \
             would inherit; remove the statement"
        ),
    );
}

fn schema_statement(what: &str, s: &mut Sink) {
    s.error(
        rule::CREATE_SCHEMA,
        format!(
            "{what}: a tenant's migrations run inside the tenant's own schema (or database), \
             which the control plane creates and names; create tables, not schemas"
        ),
    );
}

fn row_security(s: &mut Sink) {
    s.error(
        rule::ROW_SECURITY,
        "row-level security is the control plane's: SHARED tenants share one schema, and its \
         policies are what keeps each tenant's rows from the others; remove the statement",
    );
}

fn server_objects(s: &mut Sink) {
    s.error(
        rule::SERVER_OBJECTS,
        "the statement creates or changes objects of the whole server or database (event \
         triggers, publications, subscriptions, foreign servers and tables, languages, casts, \
         collations, tablespaces…) or acts on the server (LOAD, CHECKPOINT, SECURITY LABEL); \
         ask an operator",
    );
}

fn reserved_error(name: &str, s: &mut Sink) {
    s.error(
        rule::RESERVED_NAME,
        format!(
            "{name}: names starting with seaql_migrations (version tables) or tenant_plane_ \
             (the control plane's own tables) belong to the control plane in every tenant's \
             storage; choose another name"
        ),
    );
}

/// The strings of a name list (`a.b.c` as ["a", "b", "c"]); other nodes are skipped.
fn strings_of(list: &[pb::Node]) -> Vec<&str> {
    list.iter()
        .filter_map(|n| match n.node.as_ref() {
            Some(N::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect()
}

/// Refuses a qualified name of something referenced (`pg_catalog.` allowed when
/// `catalog_ok`).
fn qualified(list: &[pb::Node], catalog_ok: bool, what: &str, s: &mut Sink) {
    let names = strings_of(list);
    if names.len() >= 2 && !(catalog_ok && names[0].eq_ignore_ascii_case("pg_catalog")) {
        schema_qualified(&names.join("."), what, s);
    }
}

fn schema_qualified(name: &str, what: &str, s: &mut Sink) {
    s.error(
        rule::SCHEMA_QUALIFIED,
        format!(
            "{what} is named with a schema ({name}): a tenant's migration runs in the tenant's \
             own schema and may name nothing outside it; write the name unqualified"
        ),
    );
}

/// Refuses a qualified name for something the statement defines.
fn defined(list: &[pb::Node], what: &str, s: &mut Sink) {
    qualified(list, false, what, s);
    if let Some(name) = strings_of(list).last()
        && reserved(name)
    {
        reserved_error(name, s);
    }
}

/// `chunks` (slices of `script`) and, after them, whatever of `script` the scanner left out
/// past the last one (an unfinished statement at its end), so it too is parsed and refused.
fn with_rest<'a>(script: &'a str, mut chunks: Vec<&'a str>) -> Vec<&'a str> {
    let end = chunks
        .last()
        .map(|last| last.as_ptr() as usize - script.as_ptr() as usize + last.len())
        .unwrap_or_default();
    if let Some(rest) = script.get(end..) {
        let rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if !rest.trim().is_empty() {
            chunks.push(rest);
        }
    }
    chunks
}
