//! The walk of a statement's whole tree. The tree is read through its serde form, so every
//! node is visited, whatever the statement (`pg_query`'s own node iterator covers only the
//! nodes its authors needed): a name or call hidden in a default, a CHECK, a subquery, a CTE,
//! a rule's action or a function's SQL body is found like one at the top. What a node means
//! on its own is checked here; what a statement's kind means, in the parent module.

use serde_json::{Map, Value};

use super::{reserved, reserved_error, rule, schema_qualified};
use crate::lint::Sink;

/// Functions that reach the server, its files, the session or other sessions, matched on the
/// name's start (`pg_advisory` covers every advisory-lock function) after any schema. The
/// reason is the message's first half.
const DANGEROUS: &[(&str, &str)] = &[
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
const NAMING: &[&str] = &[
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
const REG_TYPES: &[&str] = &[
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

/// Fields naming a tablespace, in any node.
const TABLESPACE_FIELDS: &[&str] = &[
    "tablespacename",
    "table_space",
    "table_space_name",
    "indexspace",
];

pub(super) fn walk(node: &pg_query::NodeEnum, s: &mut Sink) {
    match serde_json::to_value(node) {
        Ok(value) => visit(&value, s),
        // Cannot happen for a tree of strings, numbers and lists; refusing is the safe answer.
        Err(error) => s.error(
            rule::SYNTAX,
            format!("the statement's tree cannot be read: {error}"),
        ),
    }
}

fn visit(value: &Value, s: &mut Sink) {
    match value {
        Value::Object(map) => {
            if let Some(kind) = shape(map) {
                node(kind, map, s);
            }
            for (key, child) in map {
                if QUALIFIED_FIELDS.contains(&key.as_str()) && !defines(key, map) {
                    qualified_field(key, child, map, s);
                }
                if TABLESPACE_FIELDS.contains(&key.as_str())
                    && child.as_str().is_some_and(|t| !t.is_empty())
                {
                    s.error(
                        rule::SERVER_OBJECTS,
                        "a TABLESPACE clause places the tenant's data on storage the operator \
                         manages for the whole server; leave it out",
                    );
                }
                visit(child, s);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| visit(item, s)),
        _ => {}
    }
}

/// Fields that hold a possibly qualified name of a function, type, operator, collation or
/// operator class, as a list of strings. `pg_catalog.` is allowed: it is where PostgreSQL's own
/// are, and no migration can write there.
const QUALIFIED_FIELDS: &[&str] = &[
    "funcname",
    "objname",
    "names",
    "name",
    "collname",
    "opclass",
    "collation",
    "use_op",
    "opname",
    "opfamilyname",
    "exclude_op_names",
    "oper_name",
    "method",
    "handler_name",
    "validator",
];

/// Whether the field names what its statement defines: checked (more strictly) with the
/// statement's kind.
fn defines(key: &str, map: &Map<String, Value>) -> bool {
    key == "funcname" && (map.contains_key("is_procedure") || map.contains_key("trigname"))
}

fn qualified_field(key: &str, child: &Value, map: &Map<String, Value>, s: &mut Sink) {
    let Some(items) = child.as_array() else {
        return;
    };
    let names = strings(Some(child));
    if names.len() != items.len() {
        return; // Not a name: a list of expressions or clauses.
    }
    // `t.col%TYPE` names a column of a table; `s.t.col%TYPE` a schema.
    let own = if key == "names" && map.get("pct_type").and_then(Value::as_bool) == Some(true) {
        2
    } else {
        1
    };
    if names.len() > own && !names[0].eq_ignore_ascii_case("pg_catalog") {
        schema_qualified(&names.join("."), "a name", s);
    }
}

/// The kind of node an object is, told by its fields: a node held in a typed field (an
/// INSERT's `relation`, a column's `type_name`) is serialized without its kind's name, so the
/// name cannot be relied on.
fn shape(f: &Map<String, Value>) -> Option<&'static str> {
    let has = |keys: &[&str]| keys.iter().all(|k| f.contains_key(*k));
    Some(if has(&["relname", "relpersistence"]) {
        "RangeVar"
    } else if has(&["funcname", "agg_star"]) {
        "FuncCall"
    } else if has(&["objname", "objargs"]) {
        "ObjectWithArgs"
    } else if has(&["arg", "type_name", "location"]) && f.len() == 3 {
        "TypeCast"
    } else if has(&["fields", "location"]) && f.len() == 2 {
        "ColumnRef"
    } else if has(&["defname", "defnamespace", "arg"]) {
        "DefElem"
    } else if has(&["contype", "exclusions"]) {
        "Constraint"
    } else {
        return None;
    })
}

/// What one node says on its own.
fn node(kind: &str, f: &Map<String, Value>, s: &mut Sink) {
    match kind {
        "RangeVar" => range_var(f, s),
        "FuncCall" => {
            let names = strings(f.get("funcname"));
            if let Some(last) = names.last() {
                let last = last.to_ascii_lowercase();
                dangerous(&last, s);
                // pg_get_…def and the like take an object id or a name given as text.
                if NAMING.contains(&last.as_str()) || last.starts_with("pg_get_") {
                    naming_argument(&last, first_arg(f), s);
                }
                if REG_TYPES.contains(&last.as_str()) {
                    reg_literal(&last, first_arg(f), s);
                }
            }
        }
        "ObjectWithArgs" => {
            let names = strings(f.get("objname"));
            if let Some(last) = names.last() {
                dangerous(&last.to_ascii_lowercase(), s);
            }
        }
        "TypeCast" => {
            let type_names = f
                .get("type_name")
                .map(|t| strings(t.get("names")))
                .unwrap_or_default();
            if let Some(last) = type_names.last() {
                let last = last.to_ascii_lowercase();
                if REG_TYPES.contains(&last.as_str()) {
                    reg_literal(&last, f.get("arg"), s);
                }
            }
        }
        "ColumnRef" => {
            let names = strings(f.get("fields"));
            if names.len() >= 3 {
                schema_qualified(&names.join("."), "a column", s);
            }
        }
        // EXCLUDE (column WITH operator, …): pairs of an index element and an operator name.
        "Constraint" => {
            for pair in f
                .get("exclusions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let items = pair
                    .get("node")
                    .and_then(|n| n.get("List"))
                    .and_then(|l| l.get("items"));
                for item in items.and_then(Value::as_array).into_iter().flatten() {
                    let list = item
                        .get("node")
                        .and_then(|n| n.get("List"))
                        .and_then(|l| l.get("items"));
                    let names = strings(list);
                    if names.len() >= 2 && !names[0].eq_ignore_ascii_case("pg_catalog") {
                        schema_qualified(&names.join("."), "an operator", s);
                    }
                }
            }
        }
        "DefElem" => {
            let name = f.get("defname").and_then(Value::as_str).unwrap_or_default();
            let arg = f
                .get("arg")
                .and_then(|a| a.get("node"))
                .and_then(|n| n.get("List"));
            let Some(items) = arg.and_then(|l| l.get("items")) else {
                return;
            };
            let names = strings(Some(items));
            if items.as_array().map(Vec::len) != Some(names.len()) {
                return;
            }
            match name {
                // A function's source; a sequence's OWNED BY table.column.
                "as" => {}
                "owned_by" if names.len() > 2 => {
                    schema_qualified(&names.join("."), "a sequence's table", s)
                }
                "owned_by" => {}
                // SEQUENCE NAME, a type's support functions and the like.
                _ if names.len() >= 2 && !names[0].eq_ignore_ascii_case("pg_catalog") => {
                    schema_qualified(&names.join("."), "a name", s)
                }
                _ => {}
            }
        }
        _ => {}
    }
}

fn range_var(f: &Map<String, Value>, s: &mut Sink) {
    let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or_default();
    let (catalog, schema, relation) = (text("catalogname"), text("schemaname"), text("relname"));
    if !schema.is_empty() || !catalog.is_empty() {
        let name = [catalog, schema, relation]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(".");
        schema_qualified(&name, "a relation", s);
    }
    if reserved(relation) {
        reserved_error(relation, s);
    }
    if relation.to_ascii_lowercase().starts_with("pg_") {
        s.error(
            rule::SYSTEM_CATALOG,
            format!(
                "{relation}: PostgreSQL's catalogs and statistics views describe every \
                 tenant's objects (pg_stats even samples their rows) and some change the \
                 server's settings; a migration works on the tenant's own tables"
            ),
        );
    }
    if text("relpersistence") == "t" {
        s.error(
            rule::SESSION_STATE,
            format!(
                "TEMPORARY {relation} lives in the pooled session's own schema, where the next \
                 tenant's transaction would find it (and unqualified names would resolve to it \
                 first); use an ordinary table and drop it at the end of the migration"
            ),
        );
    }
}

fn dangerous(name: &str, s: &mut Sink) {
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

fn first_arg(f: &Map<String, Value>) -> Option<&Value> {
    f.get("args")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
}

/// The first argument of a function that looks a relation up by name.
fn naming_argument(function: &str, arg: Option<&Value>, s: &mut Sink) {
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
fn reg_literal(to: &str, arg: Option<&Value>, s: &mut Sink) {
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

/// `{"node": {"Kind": {...}}}` as (kind, fields).
fn kind_of(value: &Value) -> Option<(&str, &Map<String, Value>)> {
    let inner = value.get("node").unwrap_or(value);
    let (kind, fields) = inner.as_object()?.iter().next()?;
    Some((kind.as_str(), fields.as_object()?))
}

/// The strings of a serialized name list.
fn strings(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match kind_of(item) {
                    Some(("String", f)) => f.get("sval").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}
