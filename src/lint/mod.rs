//! The lint of application-owned tenant migrations: every statement a component pushes is
//! parsed before it is registered, and refused when it cannot run inside a tenant's one
//! transaction, would reach beyond the tenant's storage, or would lose data without an explicit
//! allowance. Nothing is run: the lint reads parse trees only.
//!
//! # Why it is strict
//! A registered migration later runs in every tenant's storage *as the control plane's own
//! database role*, which owns every tenant schema and the catalog, inside the tenant's one
//! transaction (`SET LOCAL search_path TO "<tenant schema>"`) on a pooled connection. The lint
//! is the boundary between an application's SQL and everything else that role can reach: other
//! tenants, the catalog, the server, and the state a pooled session carries to its next user.
//! So PostgreSQL scripts are checked against an allowlist of statement kinds, and every node of
//! each statement's tree (subqueries, defaults, checks, rule actions, the bodies of
//! `LANGUAGE sql` functions) is searched for names that leave the tenant's schema and for
//! functions that reach the server. What the lint cannot read (procedural code) is refused
//! unless an admin allows it.
//!
//! PostgreSQL scripts are read with PostgreSQL's own parser (`pg_query`, libpg_query), so the
//! lint sees the statements exactly as the server will; SQLite scripts with `sqlparser`, and
//! whatever it cannot parse is refused. Each rule has a stable name ([`rule`]), listed with its
//! reason in docs/migrations.md ("The lint").

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

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
    /// DO blocks and functions in trusted procedural languages (plpgsql and the like).
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
    /// The script's statements, in order, without their separators. Run them one at a time, as
    /// split here: that is what the lint read.
    pub statements: Vec<String>,
    pub findings: Vec<Finding>,
    /// Whether a statement loses data (allowed or not).
    pub destructive: bool,
    /// The roles the script grants privileges to or revokes them from, by name, in order of
    /// appearance. The lint cannot know which roles belong to tenants (their names come from the
    /// server's configuration), so the caller refuses a script that names one: a grant runs in
    /// every tenant, and would hand each tenant's tables to the named tenant.
    pub grantees: Vec<String>,
}

impl Linted {
    /// Whether a finding refuses the script.
    pub fn refused(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// The rules' names, stable: clients match on them, and docs/migrations.md lists each with its
/// reason.
pub mod rule {
    /// The statement does not parse (or parses differently under some server settings).
    pub const SYNTAX: &str = "syntax";
    /// A kind of statement outside the allowlist.
    pub const UNSUPPORTED_STATEMENT: &str = "unsupported_statement";
    /// Cannot run inside the tenant's one transaction.
    pub const NON_TRANSACTIONAL: &str = "non_transactional";
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT…: the control plane owns the transaction.
    pub const TRANSACTION_CONTROL: &str = "transaction_control";
    /// A name qualified with a schema (or computed at run time) that may leave the tenant's.
    pub const SCHEMA_QUALIFIED: &str = "schema_qualified";
    /// State that outlives the statement on a pooled session, or signals other sessions.
    pub const SESSION_STATE: &str = "session_state";
    /// CREATE, ALTER or DROP SCHEMA.
    pub const CREATE_SCHEMA: &str = "create_schema";
    /// Roles, ownership and grants beyond named roles on the tenant's objects.
    pub const PRIVILEGES: &str = "privileges";
    /// Row-level security policies and switches.
    pub const ROW_SECURITY: &str = "row_security";
    /// COPY of any kind.
    pub const COPY: &str = "copy";
    /// CREATE EXTENSION without the allowance.
    pub const EXTENSION: &str = "extension";
    /// DO blocks and procedural functions, whose statements the lint cannot read.
    pub const DYNAMIC_SQL: &str = "dynamic_sql";
    /// A call to a function that reaches the server, the session or its files.
    pub const DANGEROUS_FUNCTION: &str = "dangerous_function";
    /// A relation the control plane keeps in tenant storage (version tables and its own).
    pub const RESERVED_NAME: &str = "reserved_name";
    /// PostgreSQL's catalogs and statistics views, which describe every tenant.
    pub const SYSTEM_CATALOG: &str = "system_catalog";
    /// Objects of the whole server or database: event triggers, foreign servers, languages…
    pub const SERVER_OBJECTS: &str = "server_objects";
    /// Loses data: refused without `allow.destructive`, noted with it.
    pub const DESTRUCTIVE: &str = "destructive";
    /// SQLite: ATTACH or DETACH.
    pub const ATTACH: &str = "attach";
    /// SQLite: PRAGMA.
    pub const PRAGMA: &str = "pragma";

    /// Every rule, for the docs' test.
    pub const ALL: &[&str] = &[
        SYNTAX,
        UNSUPPORTED_STATEMENT,
        NON_TRANSACTIONAL,
        TRANSACTION_CONTROL,
        SCHEMA_QUALIFIED,
        SESSION_STATE,
        CREATE_SCHEMA,
        PRIVILEGES,
        ROW_SECURITY,
        COPY,
        EXTENSION,
        DYNAMIC_SQL,
        DANGEROUS_FUNCTION,
        RESERVED_NAME,
        SYSTEM_CATALOG,
        SERVER_OBJECTS,
        DESTRUCTIVE,
        ATTACH,
        PRAGMA,
    ];
}

/// At most this much of a statement is quoted in a finding.
const QUOTED: usize = 120;

/// Splits `script` into statements and lints each.
pub fn lint(script: &str, dialect: Dialect, allow: Allowances) -> Linted {
    let mut linted = Linted::default();
    match dialect {
        Dialect::Postgres => postgres::lint(script, allow, &mut linted),
        Dialect::Sqlite => sqlite::lint(script, allow, &mut linted),
    }
    linted
}

/// Whether a relation named `name` belongs to the control plane in every tenant's storage:
/// sea-orm-migration's version tables (one per component) and the control plane's own tables.
fn reserved(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("seaql_migrations") || name.starts_with("tenant_plane_")
}

/// Where the findings of one statement go.
struct Sink<'a> {
    linted: &'a mut Linted,
    allow: Allowances,
    index: usize,
    /// The statement, quoted for findings.
    statement: String,
    /// Where inside the statement the lint is reading, when not at its top ("in the body of
    /// function f"), prefixed to messages.
    within: Option<String>,
}

impl<'a> Sink<'a> {
    fn new(linted: &'a mut Linted, allow: Allowances, index: usize, statement: &str) -> Self {
        Self {
            linted,
            allow,
            index,
            statement: quote(statement),
            within: None,
        }
    }

    fn push(&mut self, rule: &'static str, severity: Severity, message: String) {
        let message = match &self.within {
            Some(within) => format!("{within}: {message}"),
            None => message,
        };
        let seen = self
            .linted
            .findings
            .iter()
            .any(|f| f.statement_index == self.index && f.rule == rule && f.message == message);
        if !seen {
            self.linted.findings.push(Finding {
                statement_index: self.index,
                rule,
                severity,
                message,
                statement: self.statement.clone(),
            });
        }
    }

    fn error(&mut self, rule: &'static str, message: impl Into<String>) {
        self.push(rule, Severity::Error, message.into());
    }

    fn note(&mut self, rule: &'static str, message: impl Into<String>) {
        self.push(rule, Severity::Note, message.into());
    }

    /// A statement that loses data: refused unless allowed, noted when allowed.
    fn destructive(&mut self, what: &str) {
        self.linted.destructive = true;
        if self.allow.destructive {
            self.note(
                rule::DESTRUCTIVE,
                format!("{what}; allowed by allow_destructive"),
            );
        } else {
            self.error(
                rule::DESTRUCTIVE,
                format!(
                    "{what}; push with allow_destructive if that is intended, or keep the data \
                     (rename instead of dropping, add a new column instead of changing a type)"
                ),
            );
        }
    }

    /// A statement that needs an allowance: noted when given, refused otherwise.
    fn allowed_or(&mut self, allowed: bool, rule: &'static str, note: &str, error: &str) {
        if allowed {
            self.note(rule, note);
        } else {
            self.error(rule, error);
        }
    }

    fn grantee(&mut self, role: &str) {
        if !self.linted.grantees.iter().any(|r| r == role) {
            self.linted.grantees.push(role.to_owned());
        }
    }
}

/// The start of `statement`, on one line.
fn quote(statement: &str) -> String {
    let line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(QUOTED) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line,
    }
}
