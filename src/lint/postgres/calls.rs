//! Calls and names given as text: the functions a migration may not call, and the functions
//! and casts that look an object up by a name in a string, which must then be a literal,
//! unqualified name (a computed name or an object id could be any schema's object).

use serde_json::{Map, Value};

use super::tree::{kind_of, strings};
use super::{reserved, reserved_error, rule, schema_qualified};
use crate::lint::Sink;

/// Functions that reach the server, its files, the session or other sessions, matched on the
/// name's start (`pg_advisory` covers every advisory-lock function) after any schema. The
/// reason is the message's first half.
pub(super) const DANGEROUS: &[(&str, &str)] = &[
    (
        "set_config",
        "changes a setting (search_path, role-related ones, the row filter of SHARED tenants) for the rest of the transaction or the pooled session",
    ),
    (
        "pg_notify",
        "signals other sessions, the control plane's own listeners included",
    ),
    ("pg_read_", "reads the server's files"),
    ("pg_ls_", "lists the server's directories"),
    ("pg_stat_file", "reads the server's files"),
    ("pg_file_", "writes the server's files"),
    ("pg_logdir_ls", "lists the server's directories"),
    ("pg_current_logfile", "reads the server's files"),
    (
        "lo_",
        "works on large objects, which belong to the whole database and to no tenant, or on the server's files",
    ),
    (
        "loread",
        "works on large objects, which belong to the whole database",
    ),
    (
        "lowrite",
        "works on large objects, which belong to the whole database",
    ),
    ("dblink", "opens connections from the server"),
    ("pg_terminate_backend", "ends other sessions"),
    ("pg_cancel_backend", "cancels other sessions' queries"),
    (
        "pg_advisory",
        "takes advisory locks, which the control plane uses to serialize tenants' migrations",
    ),
    (
        "pg_try_advisory",
        "takes advisory locks, which the control plane uses to serialize tenants' migrations",
    ),
    ("pg_reload_conf", "reloads the server's configuration"),
    ("pg_rotate_logfile", "acts on the server's log"),
    ("pg_log_backend_memory_contexts", "acts on other sessions"),
    (
        "pg_sleep",
        "holds the tenant's transaction, its locks and a pooled connection for nothing",
    ),
    (
        "query_to_xml",
        "runs a query given as a string, which the lint cannot read",
    ),
    ("cursor_to_xml", "reads a cursor"),
    (
        "table_to_xml",
        "reads a table named by a string, which may be another tenant's",
    ),
    (
        "schema_to_xml",
        "reads a whole schema, which may be another tenant's",
    ),
    ("database_to_xml", "reads every tenant's tables"),
    (
        "ts_stat",
        "runs a query given as a string, which the lint cannot read",
    ),
    ("pg_stat_reset", "resets the whole server's statistics"),
    (
        "pg_stat_statements_reset",
        "resets the whole server's statistics",
    ),
    ("pg_promote", "acts on the server's replication"),
    ("pg_switch_wal", "acts on the server's write-ahead log"),
    ("pg_wal_", "acts on the server's write-ahead log"),
    (
        "pg_create_",
        "creates server-wide replication slots or restore points",
    ),
    (
        "pg_drop_replication_slot",
        "drops server-wide replication slots",
    ),
    ("pg_copy_", "copies server-wide replication slots"),
    ("pg_replication_", "acts on the server's replication"),
    ("pg_logical_", "acts on the server's replication"),
    ("pg_backup_", "acts on the server's backups"),
    ("pg_start_backup", "acts on the server's backups"),
    ("pg_stop_backup", "acts on the server's backups"),
    (
        "pg_import_system_collations",
        "changes the database's collations",
    ),
    (
        "pg_stat_get_",
        "reads other sessions' activity and every tenant's table statistics",
    ),
    (
        "pg_show_all_file_settings",
        "reads the server's configuration files",
    ),
    (
        "pg_hba_file_rules",
        "reads the server's configuration files",
    ),
    (
        "pg_ident_file_mappings",
        "reads the server's configuration files",
    ),
];

/// Functions whose first argument names a relation (a `regclass` given as text): it must be a
/// literal, unqualified name, or the function may reach another schema's object.
pub(super) const NAMING: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "pg_sequence_last_value",
    "pg_get_serial_sequence",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_relation_filenode",
    "pg_relation_filepath",
    "pg_partition_tree",
    "pg_partition_root",
    "pg_partition_ancestors",
    "pg_get_viewdef",
    "obj_description",
    "col_description",
    "to_regclass",
    "to_regtype",
    "to_regtypemod",
    "to_regproc",
    "to_regprocedure",
    "to_regoper",
    "to_regoperator",
    "to_regcollation",
    "to_regnamespace",
];

/// The object identifier types: a cast to one looks an object up by a name given as text.
pub(super) const REG_TYPES: &[&str] = &[
    "regclass",
    "regnamespace",
    "regproc",
    "regprocedure",
    "regtype",
    "regoper",
    "regoperator",
    "regconfig",
    "regdictionary",
    "regcollation",
];

pub(super) fn dangerous(name: &str, s: &mut Sink) {
    if let Some((_, why)) = DANGEROUS
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
    {
        s.error(
            rule::DANGEROUS_FUNCTION,
            format!("{name}() {why}; a migration may not call it"),
        );
    }
}

pub(super) fn first_arg(f: &Map<String, Value>) -> Option<&Value> {
    f.get("args")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
}

/// The first argument of a function that looks a relation up by name.
pub(super) fn naming_argument(function: &str, arg: Option<&Value>, s: &mut Sink) {
    let Some(arg) = arg else { return };
    match kind_of(arg) {
        Some(("AConst", c)) => {
            if let Some(text) = c
                .get("val")
                .and_then(|v| v.get("Sval"))
                .and_then(|v| v.get("sval"))
                .and_then(Value::as_str)
            {
                object_literal(function, text, false, s);
            } else {
                oid(function, s);
            }
        }
        // 'name'::regclass (checked as a cast) or 'name'::text
        Some(("TypeCast", c)) => {
            let inner = c.get("arg");
            if !matches!(inner.and_then(kind_of), Some(("AConst", _))) {
                computed(function, s);
            }
            let type_names = c
                .get("type_name")
                .map(|t| strings(t.get("names")))
                .unwrap_or_default();
            let to_reg = type_names
                .last()
                .is_some_and(|t| REG_TYPES.contains(&t.to_ascii_lowercase().as_str()));
            if !to_reg {
                naming_argument(function, inner, s);
            }
        }
        // setval(pg_get_serial_sequence('t', 'id'), …): checked as a call of its own.
        Some(("FuncCall", c))
            if strings(c.get("funcname"))
                .last()
                .is_some_and(|n| n.eq_ignore_ascii_case("pg_get_serial_sequence")) => {}
        _ => computed(function, s),
    }
}

/// The argument of a cast to an object identifier type (or of a call spelled like one).
pub(super) fn reg_literal(to: &str, arg: Option<&Value>, s: &mut Sink) {
    let Some(arg) = arg else { return };
    let what = format!("a cast to {to}");
    match kind_of(arg) {
        Some(("AConst", c)) => match c
            .get("val")
            .and_then(|v| v.get("Sval"))
            .and_then(|v| v.get("sval"))
            .and_then(Value::as_str)
        {
            Some(_) if to == "regnamespace" => s.error(
                rule::SCHEMA_QUALIFIED,
                "a cast to regnamespace names a schema, which may be another tenant's; a \
                 migration works in the tenant's own schema",
            ),
            Some(text) => object_literal(&what, text, to != "regclass", s),
            None if matches!(to, "regclass" | "regnamespace") => oid(&what, s),
            None => {}
        },
        _ if matches!(to, "regclass" | "regnamespace") => computed(&what, s),
        _ => {}
    }
}

/// A name given as text: unqualified, not an OID, not reserved.
fn object_literal(what: &str, text: &str, catalog_ok: bool, s: &mut Sink) {
    let parts = split_name(text);
    if parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return oid(what, s);
    }
    if parts.len() >= 2 && !(catalog_ok && parts[0].eq_ignore_ascii_case("pg_catalog")) {
        schema_qualified(text, &format!("the relation given to {what}"), s);
    }
    if let Some(last) = parts.last()
        && reserved(last)
    {
        reserved_error(last, s);
    }
}

fn oid(what: &str, s: &mut Sink) {
    s.error(
        rule::SCHEMA_QUALIFIED,
        format!(
            "{what} is given an object id, which can be any schema's object; give the \
             unqualified name as a literal ('users_id_seq')"
        ),
    );
}

fn computed(what: &str, s: &mut Sink) {
    s.error(
        rule::SCHEMA_QUALIFIED,
        format!(
            "{what} is given a name computed when the statement runs, which can be any \
             schema's object; give the unqualified name as a literal ('users_id_seq')"
        ),
    );
}

/// Splits a name as PostgreSQL reads a `regclass` literal: on dots outside double quotes,
/// unquoted parts folded to lower case.
fn split_name(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c if quoted => part.push(c),
            c => part.push(c.to_ascii_lowercase()),
        }
    }
    parts.push(part);
    parts
}
