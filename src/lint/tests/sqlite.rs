//! The lint on SQLite.

use super::rules;
use crate::lint::*;

fn sqlite(script: &str) -> Linted {
    lint(script, Dialect::Sqlite, Allowances::default())
}

/// (statement, the rule that must refuse it)
const REFUSED_ON_SQLITE: &[(&str, &str)] = &[
    ("CREATE TABLE t (id INTEGER", rule::SYNTAX),
    (
        "ATTACH DATABASE '/data/tenants/other.db' AS o",
        rule::ATTACH,
    ),
    ("DETACH DATABASE o", rule::ATTACH),
    ("PRAGMA foreign_keys = OFF", rule::PRAGMA),
    ("PRAGMA writable_schema = ON", rule::PRAGMA),
    ("VACUUM", rule::NON_TRANSACTIONAL),
    ("VACUUM INTO '/tmp/copy.db'", rule::NON_TRANSACTIONAL),
    ("BEGIN", rule::TRANSACTION_CONTROL),
    ("COMMIT", rule::TRANSACTION_CONTROL),
    ("END", rule::TRANSACTION_CONTROL),
    ("ROLLBACK", rule::TRANSACTION_CONTROL),
    ("SAVEPOINT s", rule::TRANSACTION_CONTROL),
    ("RELEASE s", rule::TRANSACTION_CONTROL),
    (
        "INSERT INTO other.users (id) VALUES (1)",
        rule::SCHEMA_QUALIFIED,
    ),
    ("CREATE TABLE main.t (id INTEGER)", rule::SCHEMA_QUALIFIED),
    ("SELECT * FROM temp.t", rule::SCHEMA_QUALIFIED),
    (
        "UPDATE users SET name = (SELECT name FROM o.users)",
        rule::SCHEMA_QUALIFIED,
    ),
    ("CREATE TEMP TABLE t (id INTEGER)", rule::SCHEMA_QUALIFIED),
    (
        "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM log; END",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO o.log VALUES (NEW.id); END",
        rule::SCHEMA_QUALIFIED,
    ),
    (
        "CREATE TRIGGER IF NOT EXISTS tr AFTER INSERT ON t BEGIN SELECT 1; END",
        rule::SYNTAX,
    ),
    (
        "SELECT load_extension('/tmp/evil.so')",
        rule::DANGEROUS_FUNCTION,
    ),
    (
        "INSERT INTO t SELECT readfile('/etc/passwd')",
        rule::DANGEROUS_FUNCTION,
    ),
    ("SELECT writefile('/tmp/x', 'y')", rule::DANGEROUS_FUNCTION),
    ("SELECT fts3_tokenizer('simple')", rule::DANGEROUS_FUNCTION),
    ("SELECT * FROM fsdir('/')", rule::DANGEROUS_FUNCTION),
    (
        "CREATE TABLE seaql_migrations_x (id INTEGER)",
        rule::RESERVED_NAME,
    ),
    ("DELETE FROM tenant_plane_state", rule::RESERVED_NAME),
    ("SELECT * FROM sqlite_master", rule::RESERVED_NAME),
    ("UPDATE sqlite_sequence SET seq = 0", rule::RESERVED_NAME),
    (
        "ALTER TABLE users RENAME TO sqlite_stat1",
        rule::RESERVED_NAME,
    ),
    ("CREATE INDEX main.i ON t (id)", rule::SCHEMA_QUALIFIED),
    ("SELECT o.users.id FROM o.users", rule::SCHEMA_QUALIFIED),
    (
        "CREATE VIRTUAL TABLE files USING fsdir",
        rule::DANGEROUS_FUNCTION,
    ),
    ("DROP TABLE users", rule::DESTRUCTIVE),
    ("ALTER TABLE users DROP COLUMN name", rule::DESTRUCTIVE),
    ("REINDEX users", rule::SYNTAX),
];

#[test]
fn each_hostile_or_unfit_sqlite_statement_is_refused_by_its_rule() {
    let mut wrong = Vec::new();
    for (statement, expected) in REFUSED_ON_SQLITE {
        let linted = sqlite(statement);
        if !rules(&linted, Severity::Error).contains(expected) {
            wrong.push(format!(
                "{statement}\n  expected {expected}, got {:?}",
                linted.findings
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const CLEAN_ON_SQLITE: &[&str] = &[
    "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL DEFAULT (datetime('now')))",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE)",
    "CREATE INDEX orders_user_id_idx ON orders (user_id)",
    "ALTER TABLE users ADD COLUMN name TEXT",
    "ALTER TABLE users RENAME COLUMN name TO full_name",
    "INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com')",
    "UPDATE users SET full_name = upper(email) WHERE id IN (SELECT user_id FROM orders)",
    "DELETE FROM orders WHERE user_id NOT IN (SELECT id FROM users)",
    "SELECT orders.id, users.email FROM orders JOIN users ON users.id = orders.user_id",
    "CREATE VIEW big AS SELECT * FROM orders WHERE id > 100",
    "DROP INDEX orders_user_id_idx",
    "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT) WITHOUT ROWID",
    "CREATE VIRTUAL TABLE docs USING fts5(title, body)",
    "CREATE TRIGGER orders_log AFTER INSERT ON orders FOR EACH ROW WHEN NEW.id > 0 BEGIN INSERT INTO log VALUES (NEW.id); END",
    "SELECT sqlite_version(), datetime('now'), json_extract('{}', '$.a')",
    "INSERT OR REPLACE INTO users (id, email) VALUES (1, 'a')",
];

#[test]
fn ordinary_sqlite_migration_statements_pass_without_a_finding() {
    let mut wrong = Vec::new();
    for statement in CLEAN_ON_SQLITE {
        let linted = sqlite(statement);
        if !linted.findings.is_empty() || linted.destructive {
            wrong.push(format!("{statement}\n  got {:?}", linted.findings));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_sqlite_script_is_split_into_its_statements_with_trigger_bodies_whole() {
    let script = "-- users\n\
        CREATE TABLE users (id INTEGER PRIMARY KEY, note TEXT DEFAULT 'a;b'); /* ; */\n\
        CREATE TRIGGER users_touch AFTER UPDATE ON users BEGIN\n\
          UPDATE users SET note = CASE WHEN note IS NULL THEN 'x' ELSE note END WHERE id = NEW.id;\n\
          SELECT 1;\n\
        END;\n\
        INSERT INTO users (id) VALUES (1);\n";

    let linted = sqlite(script);

    assert_eq!(linted.statements.len(), 3, "{:?}", linted.statements);
    assert!(linted.findings.is_empty(), "{:?}", linted.findings);
    assert!(linted.statements[0].starts_with("CREATE TABLE users"));
    assert!(linted.statements[0].ends_with("DEFAULT 'a;b')"));
    assert!(linted.statements[1].starts_with("CREATE TRIGGER users_touch"));
    assert!(linted.statements[1].ends_with("END"));
    assert_eq!(linted.statements[2], "INSERT INTO users (id) VALUES (1)");
}
