//! Routines and settings: what a function, procedure or DO block may be, and which settings a
//! migration may change. A routine a migration creates later runs as whoever calls it, and a
//! trigger's function runs inside the control plane's own later migrations, as its role: so a
//! routine's body is linted like the script itself, and a body the lint cannot read needs an
//! admin's allowance.

use pg_query::NodeEnum as N;
use pg_query::protobuf::{self as pb, VariableSetKind as Vk};

use super::{body, defined, rule, strings_of};
use crate::lint::Sink;

/// Procedural languages PostgreSQL marks trusted (they cannot reach the server's files or
/// processes), which `allow.dynamic_sql` lets through. Any other language (C, internal, the
/// untrusted `…u` ones) binds server code to a name, and no allowance permits it.
const TRUSTED: &[&str] = &["plpgsql", "plperl", "pltcl", "plv8", "plrust"];

/// The settings a migration may change, with SET LOCAL: they bound how long the tenant's
/// transaction waits and runs, and end with it.
const TIMEOUTS: &[&str] = &["lock_timeout", "statement_timeout"];

pub(super) fn create_function(f: &pb::CreateFunctionStmt, s: &mut Sink) {
    let what = if f.is_procedure {
        "a procedure"
    } else {
        "a function"
    };
    defined(&f.funcname, what, s);
    let name = strings_of(&f.funcname).join(".");
    let mut language = None;
    let mut source = None;
    for option in &f.options {
        let Some(N::DefElem(d)) = option.node.as_ref() else {
            continue;
        };
        option_of(d, s);
        match (
            d.defname.as_str(),
            d.arg.as_ref().and_then(|a| a.node.as_ref()),
        ) {
            ("language", Some(N::String(l))) => language = Some(l.sval.to_ascii_lowercase()),
            ("as", Some(N::List(l))) => {
                source = strings_of(&l.items).first().map(|b| (*b).to_owned())
            }
            _ => {}
        }
    }
    // A body written as BEGIN ATOMIC … END or RETURN is SQL, and part of the tree already.
    if let Some(sql_body) = f.sql_body.as_deref() {
        let outer = s.within.replace(format!("in the body of {name}"));
        nested(sql_body, s);
        s.within = outer;
    }
    match language.as_deref() {
        None | Some("sql") => {
            if let Some(source) = source {
                body(&source, format!("in the body of {name}"), s);
            }
        }
        Some(language) => procedural(language, &format!("{what} in {language}"), s),
    }
}

/// The statements of a BEGIN ATOMIC body (lists of lists of statements).
fn nested(node: &pb::Node, s: &mut Sink) {
    match node.node.as_ref() {
        Some(N::List(list)) => list.items.iter().for_each(|item| nested(item, s)),
        Some(statement) => super::statement(statement, s),
        None => {}
    }
}

pub(super) fn alter_function(f: &pb::AlterFunctionStmt, s: &mut Sink) {
    for action in &f.actions {
        if let Some(N::DefElem(d)) = action.node.as_ref() {
            option_of(d, s);
        }
    }
}

/// One option of CREATE or ALTER FUNCTION.
fn option_of(d: &pb::DefElem, s: &mut Sink) {
    let arg = d.arg.as_ref().and_then(|a| a.node.as_ref());
    match (d.defname.as_str(), arg) {
        ("security", Some(N::Boolean(b))) if b.boolval => s.error(
            rule::PRIVILEGES,
            "SECURITY DEFINER would run the routine as the control plane's role, which owns \
             every tenant's schema and the catalog, for whoever calls it; use SECURITY INVOKER \
             (the default)",
        ),
        ("set", Some(N::VariableSetStmt(v))) => function_setting(v, s),
        _ => {}
    }
}

/// A routine's `SET` clause: it holds while the routine runs, so `FROM CURRENT` (the tenant's
/// own search_path at creation) and the timeouts are fine; another search_path would point the
/// routine's unqualified names at another schema.
fn function_setting(v: &pb::VariableSetStmt, s: &mut Sink) {
    let name = v.name.to_ascii_lowercase();
    if v.kind == Vk::VarSetCurrent as i32 || TIMEOUTS.contains(&name.as_str()) {
        return;
    }
    s.error(
        rule::SESSION_STATE,
        format!(
            "a routine's SET {name} would run it under a setting of the migration's choosing \
             (a search_path naming another schema, a role); use SET {name} FROM CURRENT, or \
             leave it out"
        ),
    );
}

pub(super) fn do_block(d: &pb::DoStmt, s: &mut Sink) {
    let mut language = "plpgsql".to_owned();
    for arg in &d.args {
        if let Some(N::DefElem(e)) = arg.node.as_ref()
            && e.defname == "language"
            && let Some(N::String(l)) = e.arg.as_ref().and_then(|a| a.node.as_ref())
        {
            language = l.sval.to_ascii_lowercase();
        }
    }
    procedural(&language, &format!("a DO block in {language}"), s);
}

/// Code the lint cannot read.
fn procedural(language: &str, what: &str, s: &mut Sink) {
    if !TRUSTED.contains(&language) {
        s.error(
            rule::DYNAMIC_SQL,
            format!(
                "{what}: only LANGUAGE sql (and, with allow_dynamic_sql, trusted procedural \
                 languages such as plpgsql) may be used; {language} can reach the server's \
                 files or processes, and no allowance permits it"
            ),
        );
    } else if s.allow.dynamic_sql {
        s.note(
            rule::DYNAMIC_SQL,
            format!(
                "{what} is not linted: it can build and run any SQL as the control plane's \
                 role; allowed by allow_dynamic_sql"
            ),
        );
    } else {
        s.error(
            rule::DYNAMIC_SQL,
            format!(
                "{what} can build and run SQL the lint cannot read, as the control plane's \
                 role; write it in LANGUAGE sql (or plain statements), or push with \
                 allow_dynamic_sql (admin only)"
            ),
        );
    }
}

/// A SET or RESET statement in the script.
pub(super) fn set(v: &pb::VariableSetStmt, s: &mut Sink) {
    let name = v.name.to_ascii_lowercase();
    let kind = Vk::try_from(v.kind).unwrap_or(Vk::Undefined);
    if v.is_local
        && TIMEOUTS.contains(&name.as_str())
        && matches!(kind, Vk::VarSetValue | Vk::VarSetDefault)
    {
        return;
    }
    if kind == Vk::VarSetMulti {
        // SET TRANSACTION … and SET SESSION CHARACTERISTICS AS TRANSACTION …
        return s.error(
            rule::TRANSACTION_CONTROL,
            "SET TRANSACTION and SET SESSION CHARACTERISTICS change the control plane's \
             transaction (or every later one on the pooled session); remove the statement",
        );
    }
    let why = match name.as_str() {
        "search_path" => {
            "would point the rest of the tenant's transaction, the control plane's own \
             statements included, at another schema"
        }
        "role" | "session_authorization" => {
            "would change the role the rest of the transaction, or the pooled session, runs as"
        }
        _ if !v.is_local || kind == Vk::VarReset || kind == Vk::VarResetAll => {
            "would outlive the migration on the pooled session, which the next tenant's \
             transaction would inherit"
        }
        _ => "would change how the rest of the tenant's transaction runs",
    };
    let shown = if name.is_empty() { "ALL" } else { &name };
    s.error(
        rule::SESSION_STATE,
        format!(
            "SET/RESET {shown} {why}; only SET LOCAL lock_timeout and SET LOCAL \
             statement_timeout are allowed"
        ),
    );
}
