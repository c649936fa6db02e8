//! The walk of a statement's whole tree. The tree is read through its serde form, so every
//! node is visited, whatever the statement (`pg_query`'s own node iterator covers only the
//! nodes its authors needed): a name or call hidden in a default, a CHECK, a subquery, a CTE,
//! a rule's action or a function's SQL body is found like one at the top. What a node means
//! on its own is checked here; what a statement's kind means, in the parent module.

use serde_json::{Map, Value};

use super::calls::{NAMING, REG_TYPES, dangerous, first_arg, naming_argument, reg_literal};
use super::{reserved, reserved_error, rule, schema_qualified};
use crate::lint::Sink;

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

/// `{"node": {"Kind": {...}}}` as (kind, fields).
pub(super) fn kind_of(value: &Value) -> Option<(&str, &Map<String, Value>)> {
    let inner = value.get("node").unwrap_or(value);
    let (kind, fields) = inner.as_object()?.iter().next()?;
    Some((kind.as_str(), fields.as_object()?))
}

/// The strings of a serialized name list.
pub(super) fn strings(list: Option<&Value>) -> Vec<String> {
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
