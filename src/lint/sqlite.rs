//! The lint on SQLite, where each tenant is a file of its own (the embedded mode): what would
//! reach another file (ATTACH), change the connection (PRAGMA), leave the migration's
//! transaction or read the server's files is refused. SQLite's own parser cannot be linked
//! here, so scripts are read with `sqlparser`'s SQLite dialect, and a statement it cannot
//! parse is refused: refusing what the lint cannot read is the safe answer.

use serde_json::{Map, Value};
use sqlparser::ast::{ObjectType, Statement};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::{Allowances, Linted, Sink, rule};

/// SQLite functions (built in, or from the extensions its shell and common builds load) that
/// read or write files, load code or run SQL given as a string, matched on the whole name.
const DANGEROUS: &[&str] = &[
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fsdir",
    "lsmode",
    "fts3_tokenizer",
    "zipfile",
    "zipfile_cds",
    "eval",
];

/// The statements that begin with these keywords are refused by their first word, whether or
/// not `sqlparser` reads the rest, so the finding names the right rule.
fn by_keyword(keyword: Keyword) -> Option<(&'static str, &'static str)> {
    Some(match keyword {
        Keyword::ATTACH | Keyword::DETACH => (
            rule::ATTACH,
            "ATTACH and DETACH open or close another database file, which could be another \
             tenant's; a migration works in the tenant's own file",
        ),
        Keyword::PRAGMA => (
            rule::PRAGMA,
            "PRAGMA changes the connection or the file's settings (foreign keys, journal, \
             schema version) under the control plane; remove the statement",
        ),
        Keyword::VACUUM => (
            rule::NON_TRANSACTIONAL,
            "VACUUM (and VACUUM INTO, which writes a copy of the file elsewhere) cannot run \
             inside the tenant's transaction; remove the statement",
        ),
        Keyword::BEGIN
        | Keyword::COMMIT
        | Keyword::END
        | Keyword::ROLLBACK
        | Keyword::SAVEPOINT
        | Keyword::RELEASE => (
            rule::TRANSACTION_CONTROL,
            "the control plane runs each tenant's migrations in one transaction of its own; \
             BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT and RELEASE would end or split it; remove \
             the statement",
        ),
        _ => return None,
    })
}

pub(super) fn lint(script: &str, allow: Allowances, linted: &mut Linted) {
    let dialect = SQLiteDialect {};
    let tokens = match Tokenizer::new(&dialect, script).tokenize_with_location() {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut sink = Sink::new(linted, allow, 0, script);
            sink.error(
                rule::SYNTAX,
                format!("the script does not parse as SQLite: {error}"),
            );
            return;
        }
    };
    let offsets = Offsets::new(script);
    for chunk in split(&tokens) {
        let (Some(first), end) = (chunk.first(), chunk_end(&chunk, &tokens, &offsets, script))
        else {
            continue;
        };
        let start = offsets.of(first);
        let Some(text) = script.get(start..end).map(str::trim) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        let index = linted.statements.len();
        linted.statements.push(text.to_owned());
        let mut sink = Sink::new(linted, allow, index, text);
        let keyword = chunk.iter().find_map(|t| match &t.token {
            Token::Word(w) => Some(w.keyword),
            _ => None,
        });
        if let Some((rule, message)) = keyword.and_then(by_keyword) {
            sink.error(rule, message);
            continue;
        }
        match Parser::parse_sql(&dialect, text) {
            Ok(statements) => {
                for statement in &statements {
                    check(statement, &mut sink);
                }
            }
            Err(error) => sink.error(
                rule::SYNTAX,
                format!(
                    "the statement does not parse ({error}); SQLite may accept it, but the \
                     lint refuses what it cannot read: write it in plainer SQL"
                ),
            ),
        }
    }
}

/// The script's statements as runs of tokens without their `;`, whitespace and comments
/// only at the ends. A trigger's body (`BEGIN … END`) keeps its own semicolons.
fn split(tokens: &[TokenWithSpan]) -> Vec<Vec<&TokenWithSpan>> {
    let mut chunks: Vec<Vec<&TokenWithSpan>> = vec![Vec::new()];
    let mut trigger = false;
    let mut depth = 0usize;
    for token in tokens {
        let Some(current) = chunks.last_mut() else {
            continue;
        };
        match &token.token {
            Token::Whitespace(_) if current.is_empty() => continue,
            Token::SemiColon if depth == 0 => {
                chunks.push(Vec::new());
                trigger = false;
                continue;
            }
            Token::Word(w) => {
                if w.keyword == Keyword::TRIGGER && current.iter().all(|t| is_create_prefix(t)) {
                    trigger = true;
                }
                match w.keyword {
                    Keyword::BEGIN | Keyword::CASE if trigger => depth += 1,
                    Keyword::END if trigger => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            _ => {}
        }
        current.push(token);
    }
    chunks.retain(|c| c.iter().any(|t| !matches!(t.token, Token::Whitespace(_))));
    chunks
}

/// CREATE [TEMP|TEMPORARY] before TRIGGER.
fn is_create_prefix(token: &TokenWithSpan) -> bool {
    match &token.token {
        Token::Whitespace(_) => true,
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::CREATE | Keyword::TEMP | Keyword::TEMPORARY
        ),
        _ => false,
    }
}

/// Where a chunk ends in the script: at the token after its last, or the script's end.
fn chunk_end(
    chunk: &[&TokenWithSpan],
    tokens: &[TokenWithSpan],
    offsets: &Offsets,
    script: &str,
) -> usize {
    let Some(last) = chunk.last() else {
        return script.len();
    };
    let position = tokens.iter().position(|t| std::ptr::eq(t, *last));
    match position.and_then(|p| tokens.get(p + 1)) {
        Some(next) => offsets.of(next),
        None => script.len(),
    }
}

/// Byte offsets of a token's start (the tokenizer counts lines and characters).
struct Offsets {
    /// The byte offset at which each line starts.
    lines: Vec<usize>,
    script: String,
}

impl Offsets {
    fn new(script: &str) -> Self {
        let mut lines = vec![0];
        lines.extend(script.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            lines,
            script: script.to_owned(),
        }
    }

    fn of(&self, token: &TokenWithSpan) -> usize {
        let location = token.span.start;
        let line = usize::try_from(location.line.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(&start) = self.lines.get(line) else {
            return self.script.len();
        };
        let column = usize::try_from(location.column.saturating_sub(1)).unwrap_or(usize::MAX);
        self.script[start..]
            .char_indices()
            .nth(column)
            .map_or(self.script.len(), |(i, _)| start + i)
    }
}

fn check(statement: &Statement, s: &mut Sink) {
    match statement {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::CreateIndex(_)
        | Statement::DropTrigger(_)
        | Statement::Analyze(_) => {}
        Statement::CreateTable(t) => temporary(t.temporary, s),
        Statement::CreateView(v) => temporary(v.temporary, s),
        Statement::CreateTrigger(t) => temporary(t.temporary, s),
        Statement::CreateVirtualTable { module_name, .. } => {
            if DANGEROUS.contains(&module_name.value.to_ascii_lowercase().as_str()) {
                dangerous(&module_name.value, s);
            }
        }
        Statement::AlterTable(a) => {
            for operation in &a.operations {
                if let sqlparser::ast::AlterTableOperation::DropColumn { column_names, .. } =
                    operation
                {
                    let names: Vec<_> = column_names.iter().map(|c| c.value.as_str()).collect();
                    s.destructive(&format!(
                        "DROP COLUMN {} deletes the column's data in every tenant",
                        names.join(", ")
                    ));
                }
            }
        }
        Statement::Drop { object_type, .. } => match object_type {
            ObjectType::Table => {
                s.destructive("DROP TABLE deletes the table and its rows in every tenant")
            }
            ObjectType::Index | ObjectType::View => {}
            _ => unsupported(s),
        },
        Statement::AttachDatabase { .. } | Statement::DetachDuckDBDatabase { .. } => {
            if let Some((rule, message)) = by_keyword(Keyword::ATTACH) {
                s.error(rule, message);
            }
        }
        Statement::Pragma { .. } => {
            if let Some((rule, message)) = by_keyword(Keyword::PRAGMA) {
                s.error(rule, message);
            }
        }
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => {
            if let Some((rule, message)) = by_keyword(Keyword::BEGIN) {
                s.error(rule, message);
            }
        }
        _ => unsupported(s),
    }
    match serde_json::to_value(statement) {
        Ok(tree) => visit(&tree, None, s),
        Err(error) => s.error(
            rule::SYNTAX,
            format!("the statement's tree cannot be read: {error}"),
        ),
    }
}

fn unsupported(s: &mut Sink) {
    s.error(
        rule::UNSUPPORTED_STATEMENT,
        "refused: it is not among the statements a tenant migration may run on SQLite (CREATE, \
         ALTER and DROP of tables, indexes, views and triggers; INSERT, UPDATE, DELETE, SELECT; \
         ANALYZE)",
    );
}

fn temporary(temporary: bool, s: &mut Sink) {
    if temporary {
        s.error(
            rule::SCHEMA_QUALIFIED,
            "a TEMP object lives in the connection's temp schema, not in the tenant's file, and \
             outlives the migration on the connection; use an ordinary table and drop it at the \
             end",
        );
    }
}

fn dangerous(name: &str, s: &mut Sink) {
    s.error(
        rule::DANGEROUS_FUNCTION,
        format!(
            "{name} reads or writes the server's files, loads code or runs SQL the lint cannot \
             read; a migration may not use it"
        ),
    );
}

/// Walks the statement's serde form: object names (relations, indexes, functions), compound
/// column references, and the names they hold. `parent` is the object holding `value`.
fn visit(value: &Value, parent: Option<&Map<String, Value>>, s: &mut Sink) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(parts)) = map.get("CompoundIdentifier")
                && parts.len() >= 3
            {
                qualified(&idents(parts), s);
            }
            for child in map.values() {
                visit(child, Some(map), s);
            }
        }
        Value::Array(items) => {
            if let Some(names) = object_name(items) {
                // A call has `args` and `over`; a table-valued function in FROM has `args`.
                let call = parent.is_some_and(|p| p.contains_key("over") && p.contains_key("args"));
                name(&names, call, s);
            }
            for item in items {
                visit(item, parent, s);
            }
        }
        _ => {}
    }
}

/// The parts of an `ObjectName` (an array of `{"Identifier": ident}`).
fn object_name(items: &[Value]) -> Option<Vec<String>> {
    if items.is_empty() {
        return None;
    }
    items
        .iter()
        .map(|item| {
            let map = item.as_object()?;
            if map.len() != 1 {
                return None;
            }
            map.get("Identifier")?
                .get("value")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn idents(parts: &[Value]) -> Vec<String> {
    parts
        .iter()
        .filter_map(|p| p.get("value").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn name(names: &[String], call: bool, s: &mut Sink) {
    if names.len() >= 2 {
        qualified(names, s);
    }
    let Some(last) = names.last() else { return };
    let lower = last.to_ascii_lowercase();
    if DANGEROUS.contains(&lower.as_str()) {
        dangerous(last, s);
    }
    if !call && (super::reserved(&lower) || lower.starts_with("sqlite_")) {
        s.error(
            rule::RESERVED_NAME,
            format!(
                "{last}: names starting with seaql_migrations (version tables), tenant_plane_ \
                 (the control plane's own tables) or sqlite_ (SQLite's own) are not the \
                 migration's; choose another name"
            ),
        );
    }
}

fn qualified(names: &[String], s: &mut Sink) {
    s.error(
        rule::SCHEMA_QUALIFIED,
        format!(
            "{} is qualified with a schema: a tenant's SQLite migration works in the tenant's \
             own file (main), and temp or attached schemas are not its; write the name \
             unqualified",
            names.join(".")
        ),
    );
}
