//! How two shapes differ: object by object, each difference with what it is about, so that
//! drift reads as sentences ("extra index messages_tmp_idx on messages") and as fields.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Shape, Table};

/// What kind of object a [`Difference`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Object {
    Table,
    Column,
    Index,
    Constraint,
    Policy,
    Trigger,
    /// A function of the schema: its difference's `table` is empty.
    Function,
}

impl Object {
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Table => "table",
            Object::Column => "column",
            Object::Index => "index",
            Object::Constraint => "constraint",
            Object::Policy => "policy",
            Object::Trigger => "trigger",
            Object::Function => "function",
        }
    }
}

/// One way a tenant's storage differs from what its migrations produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Difference {
    /// In the tenant's storage, not in the expected shape.
    Extra {
        object: Object,
        /// The table it belongs to (the table itself for a table).
        table: String,
        name: String,
    },
    /// Expected, not in the tenant's storage.
    Missing {
        object: Object,
        table: String,
        name: String,
    },
    /// Both have it, differently: `what` of it (`type`, `nullability`, `default`, `definition`,
    /// `kind`, `row security`) is `actual` where `expected` was expected.
    Changed {
        object: Object,
        table: String,
        name: String,
        what: String,
        actual: String,
        expected: String,
    },
}

impl Difference {
    pub fn object(&self) -> Object {
        match self {
            Difference::Extra { object, .. }
            | Difference::Missing { object, .. }
            | Difference::Changed { object, .. } => *object,
        }
    }

    /// The table the object belongs to (the table itself for a table).
    pub fn table(&self) -> &str {
        table_of(self)
    }

    pub fn name(&self) -> &str {
        match self {
            Difference::Extra { name, .. }
            | Difference::Missing { name, .. }
            | Difference::Changed { name, .. } => name,
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn named(
            f: &mut fmt::Formatter<'_>,
            object: Object,
            table: &str,
            name: &str,
        ) -> fmt::Result {
            match object {
                Object::Table => write!(f, "table {name}"),
                Object::Function => write!(f, "function {name}"),
                Object::Column => write!(f, "column {table}.{name}"),
                _ => write!(f, "{} {name} on {table}", object.as_str()),
            }
        }
        match self {
            Difference::Extra {
                object,
                table,
                name,
            } => {
                f.write_str("extra ")?;
                named(f, *object, table, name)
            }
            Difference::Missing {
                object,
                table,
                name,
            } => {
                f.write_str("missing ")?;
                named(f, *object, table, name)
            }
            Difference::Changed {
                object,
                table,
                name,
                what,
                actual,
                expected,
            } => {
                named(f, *object, table, name)?;
                match what.as_str() {
                    "type" => write!(f, " is {actual}, expected {expected}"),
                    _ => write!(f, " has {what} {actual}, expected {expected}"),
                }
            }
        }
    }
}

/// How `actual` differs from `expected`, table by table in name order; empty when they are
/// the same shape.
pub fn differences(expected: &Shape, actual: &Shape) -> Vec<Difference> {
    let mut found = Vec::new();
    for name in actual.tables.keys() {
        if !expected.tables.contains_key(name) {
            found.push(Difference::Extra {
                object: Object::Table,
                table: name.clone(),
                name: name.clone(),
            });
        }
    }
    for (name, want) in &expected.tables {
        match actual.tables.get(name) {
            None => found.push(Difference::Missing {
                object: Object::Table,
                table: name.clone(),
                name: name.clone(),
            }),
            Some(have) => table_differences(name, want, have, &mut found),
        }
    }
    // Functions have no table: keyed by an empty one, they come first.
    compare_maps(
        "",
        Object::Function,
        &expected.functions,
        &actual.functions,
        &mut found,
        |c, w, h| {
            if w == h {
                Vec::new()
            } else {
                vec![c("definition", h, w)]
            }
        },
    );
    found.sort_by(|a, b| table_of(a).cmp(table_of(b)));
    found
}

fn table_of(difference: &Difference) -> &str {
    match difference {
        Difference::Extra { table, .. }
        | Difference::Missing { table, .. }
        | Difference::Changed { table, .. } => table,
    }
}

fn table_differences(name: &str, want: &Table, have: &Table, found: &mut Vec<Difference>) {
    let changed = |what: &str, actual: &str, expected: &str| Difference::Changed {
        object: Object::Table,
        table: name.to_owned(),
        name: name.to_owned(),
        what: what.to_owned(),
        actual: shown(actual),
        expected: shown(expected),
    };
    if want.kind != have.kind {
        found.push(changed("kind", &have.kind, &want.kind));
    }
    if want.row_security != have.row_security {
        found.push(changed(
            "row security",
            &have.row_security,
            &want.row_security,
        ));
    }
    if want.definition != have.definition {
        found.push(changed("definition", &have.definition, &want.definition));
    }
    compare_maps(
        name,
        Object::Column,
        &want.columns,
        &have.columns,
        found,
        |c, w, h| {
            let mut out = Vec::new();
            if w.data_type != h.data_type {
                out.push(c("type", &h.data_type, &w.data_type));
            }
            if w.not_null != h.not_null {
                let nullability = |not_null: bool| if not_null { "NOT NULL" } else { "NULL" };
                out.push(c(
                    "nullability",
                    nullability(h.not_null),
                    nullability(w.not_null),
                ));
            }
            if w.default != h.default {
                let default = |d: &Option<String>| d.clone().unwrap_or_else(|| "none".into());
                out.push(c("default", &default(&h.default), &default(&w.default)));
            }
            out
        },
    );
    for (object, want, have) in [
        (Object::Index, &want.indexes, &have.indexes),
        (Object::Constraint, &want.constraints, &have.constraints),
        (Object::Policy, &want.policies, &have.policies),
        (Object::Trigger, &want.triggers, &have.triggers),
    ] {
        compare_maps(name, object, want, have, found, |c, w, h| {
            if w == h {
                Vec::new()
            } else {
                vec![c("definition", h, w)]
            }
        });
    }
}

/// The extra, missing and changed entries of one kind of a table's objects.
fn compare_maps<T>(
    table: &str,
    object: Object,
    want: &BTreeMap<String, T>,
    have: &BTreeMap<String, T>,
    found: &mut Vec<Difference>,
    compare: impl Fn(&dyn Fn(&str, &str, &str) -> Difference, &T, &T) -> Vec<Difference>,
) {
    for name in have.keys().filter(|name| !want.contains_key(*name)) {
        found.push(Difference::Extra {
            object,
            table: table.to_owned(),
            name: name.clone(),
        });
    }
    for (name, w) in want {
        match have.get(name) {
            None => found.push(Difference::Missing {
                object,
                table: table.to_owned(),
                name: name.clone(),
            }),
            Some(h) => {
                let changed = |what: &str, actual: &str, expected: &str| Difference::Changed {
                    object,
                    table: table.to_owned(),
                    name: name.clone(),
                    what: what.to_owned(),
                    actual: shown(actual),
                    expected: shown(expected),
                };
                found.extend(compare(&changed, w, h));
            }
        }
    }
}

/// An empty value, shown so that a sentence about it still reads.
fn shown(value: &str) -> String {
    if value.is_empty() {
        "none".into()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::shape::Column;

    fn users() -> Table {
        let mut table = Table {
            kind: "table".into(),
            ..Table::default()
        };
        table.columns.insert(
            "id".into(),
            Column {
                data_type: "uuid".into(),
                not_null: true,
                default: None,
            },
        );
        table.columns.insert(
            "name".into(),
            Column {
                data_type: "character varying(200)".into(),
                not_null: false,
                default: None,
            },
        );
        table.indexes.insert(
            "users_pkey".into(),
            "CREATE UNIQUE INDEX users_pkey ON users USING btree (id)".into(),
        );
        table
            .constraints
            .insert("users_pkey".into(), "PRIMARY KEY (id)".into());
        table
    }

    fn sample() -> Shape {
        let mut shape = Shape::default();
        shape.tables.insert("users".into(), users());
        shape
    }

    #[test]
    fn equal_shapes_have_no_differences_and_equal_fingerprints() {
        assert!(differences(&sample(), &sample()).is_empty());
        assert_eq!(sample().fingerprint(), sample().fingerprint());
        assert_eq!(sample().fingerprint().len(), 64);
    }

    #[test]
    fn each_change_is_reported_in_a_sentence() {
        let mut actual = sample();
        let users = actual.tables.get_mut("users").expect("users");
        users.columns.get_mut("name").expect("name").data_type = "text".into();
        users.columns.get_mut("id").expect("id").not_null = false;
        users.indexes.insert(
            "users_tmp_idx".into(),
            "CREATE INDEX users_tmp_idx ON users USING btree (name)".into(),
        );
        users.constraints.clear();
        actual.tables.insert("scratch".into(), Table::default());
        let found: Vec<String> = differences(&sample(), &actual)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "extra table scratch",
                "column users.id has nullability NULL, expected NOT NULL",
                "column users.name is text, expected character varying(200)",
                "extra index users_tmp_idx on users",
                "missing constraint users_pkey on users",
            ]
        );
        assert_ne!(sample().fingerprint(), actual.fingerprint());
    }

    #[test]
    fn triggers_and_functions_are_compared_and_only_shapes_with_them_change_fingerprint() {
        let before = sample().fingerprint();
        let mut actual = sample();
        assert_eq!(
            serde_json::to_string(&actual).expect("serialise"),
            r#"{"tables":{"users":{"kind":"table","row_security":"","definition":"","columns":{"id":{"data_type":"uuid","not_null":true,"default":null},"name":{"data_type":"character varying(200)","not_null":false,"default":null}},"indexes":{"users_pkey":"CREATE UNIQUE INDEX users_pkey ON users USING btree (id)"},"constraints":{"users_pkey":"PRIMARY KEY (id)"},"policies":{}}}}"#,
            "a shape without triggers or functions serialises as it did before them"
        );
        actual
            .tables
            .get_mut("users")
            .expect("users")
            .triggers
            .insert(
                "users_touch".into(),
                "CREATE TRIGGER users_touch ...".into(),
            );
        actual
            .functions
            .insert("touch()".into(), " RETURNS trigger ...".into());
        let mut expected = sample();
        expected
            .functions
            .insert("count_users()".into(), " RETURNS bigint ...".into());
        let found: Vec<String> = differences(&expected, &actual)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "extra function touch()",
                "missing function count_users()",
                "extra trigger users_touch on users",
            ]
        );
        assert_ne!(actual.fingerprint(), before);
        assert_eq!(sample().fingerprint(), before);
    }

    #[test]
    fn a_missing_table_and_a_changed_default_are_reported() {
        let mut expected = sample();
        expected
            .tables
            .get_mut("users")
            .expect("users")
            .columns
            .get_mut("name")
            .expect("name")
            .default = Some("'x'::character varying".into());
        expected.tables.insert("projects".into(), Table::default());
        let found: Vec<String> = differences(&expected, &sample())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "missing table projects",
                "column users.name has default none, expected 'x'::character varying",
            ]
        );
    }
}
