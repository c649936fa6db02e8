//! PushMigrations: a component's migrations, checked and registered all together or not at
//! all.
//!
//! ## The order of the checks, and why
//! 1. The caller's allowances (PERMISSION_DENIED) and the request's shape (INVALID_ARGUMENT):
//!    nothing is read before the request is known to be well formed.
//! 2. The history, read without a lock: a changed, early or missing version is refused
//!    (FAILED_PRECONDITION) before any statement is parsed.
//! 3. The lint of the migrations that are new by that reading. Only new ones: a registered
//!    migration is history, and a rule added later must not make its directory unpushable.
//!    The lint runs outside the transaction, so a push of a thousand scripts holds no lock
//!    (and on SQLite, not the database's one write lock) while it parses. It runs on a
//!    blocking thread, one push at a time ([`lint_in_turn`]): a MiB of SQL keeps a core busy
//!    for about a second, and pushes come from pipelines that can wait, while the hot path on
//!    the other cores cannot.
//! 4. One catalog transaction: lock the component's row, read the history again, check it
//!    again, insert the new migrations, the component's `update_time` and the audit row,
//!    commit. Histories only grow, so what is new now was new at step 3 and has been linted;
//!    a concurrent push can only have made some of it unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::domain::{
    CallContext, Component, ComponentMigration, Error, FieldViolation, LintNote, MigrationBody,
    MigrationVersion, NoteSeverity, Script, component,
};
use crate::lint::{self, Allowances, Dialect, Severity};
use crate::store::components as registry;

use super::{Components, LintServer, not_found, parse_component_name};

/// Migrations in one push: a whole directory's history, with room to grow.
pub const MAX_MIGRATIONS: usize = 1000;
/// Bytes in one script: a migration is DDL, not a data load.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
/// Characters in a migration's description: a sentence.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A migration as sent.
#[derive(Debug, Clone, Default)]
pub struct PushedMigration {
    pub version: String,
    pub description: String,
    pub up_sql: String,
    pub down_sql: String,
    pub sqlite_up_sql: String,
    pub sqlite_down_sql: String,
}

/// A push, as sent.
#[derive(Debug, Clone, Default)]
pub struct PushInput {
    /// `components/{component_id}`.
    pub component: String,
    pub migrations: Vec<PushedMigration>,
    pub allow: Allowances,
    pub validate_only: bool,
    /// Whether the caller holds the admin role: only an admin may allow dynamic SQL and
    /// extensions.
    pub admin: bool,
}

/// What a push did (or, with `validate_only`, would do).
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// Oldest first.
    pub registered: Vec<ComponentMigration>,
    /// Versions sent that were registered with the same checksum, oldest first.
    pub unchanged: Vec<String>,
    pub component: Component,
}

/// A migration whose lint passed: its destructiveness and its notes.
#[derive(Debug, Clone, Default)]
struct Linted {
    destructive: bool,
    notes: Vec<LintNote>,
}

impl Components {
    #[tracing::instrument(skip_all, fields(component = %input.component, migrations = input.migrations.len()))]
    pub async fn push(&self, ctx: &CallContext, input: PushInput) -> Result<PushOutcome, Error> {
        if !input.admin && (input.allow.dynamic_sql || input.allow.extensions) {
            return Err(Error::PermissionDenied(
                "only the admin role may allow dynamic SQL or extensions in a push".into(),
            ));
        }
        let id = parse_component_name(&input.component, "component")?;
        if id.is_compiled() {
            return Err(Error::FailedPrecondition {
                subject: id.name(),
                message: format!(
                    "component {id} is compiled into the server: its migrations ship with it \
                     and cannot be pushed"
                ),
            });
        }
        let bodies = check_shape(&input.migrations)?;
        let sums: Vec<(MigrationVersion, String)> = bodies
            .iter()
            .map(|b| (b.version.clone(), b.checksum()))
            .collect();

        if self.catalog.get_component(&id).await?.is_none() {
            return Err(not_found(&id));
        }
        let seen = self.catalog.component_history(&id).await?;
        let first = component::classify(&id, &seen, &sums)?;
        let to_lint: Vec<(usize, MigrationBody)> =
            first.new.iter().map(|i| (*i, bodies[*i].clone())).collect();
        let allow = input.allow;
        let server = self.server.clone();
        let linted = in_turn(&self.lints, move || lint_all(&to_lint, allow, &server)).await??;

        if first.new.is_empty() {
            return Ok(PushOutcome {
                registered: Vec::new(),
                unchanged: strings(&first.unchanged),
                component: self.get(&id).await?,
            });
        }

        let unit = self.catalog.begin(ctx).await?;
        if !registry::lock_component(unit.txn(), &id).await? {
            return Err(not_found(&id));
        }
        let history = registry::history(unit.txn(), &id).await?;
        let classified = component::classify(&id, &history, &sums)?;
        let mut registered = Vec::with_capacity(classified.new.len());
        for (k, i) in classified.new.iter().enumerate() {
            let Some(lint) = linted.get(i) else {
                // Histories only grow, so this cannot happen; refuse rather than register a
                // migration the lint has not read.
                return Err(Error::Aborted {
                    reason: "CONCURRENT_PUSH",
                    message: format!(
                        "the history of component {id} changed during the push; push again"
                    ),
                });
            };
            registered.push(ComponentMigration {
                component: id.clone(),
                body: bodies[*i].clone(),
                checksum: sums[*i].1.clone(),
                index: history.len() + k,
                destructive: lint.destructive,
                findings: lint.notes.clone(),
                create_time: None,
            });
        }
        if input.validate_only || registered.is_empty() {
            unit.rollback().await?;
        } else {
            let now = self.catalog.now();
            registry::register(unit.txn(), unit.ctx(), &id, &registered, now).await?;
            unit.commit().await?;
            for m in &mut registered {
                m.create_time = Some(now);
            }
            tracing::info!(
                registered = registered.len(),
                latest = %registered.last().map_or("", |m| m.body.version.as_str()),
                "migrations registered"
            );
        }
        Ok(PushOutcome {
            registered,
            unchanged: strings(&classified.unchanged),
            component: self.get(&id).await?,
        })
    }
}

fn strings(versions: &[MigrationVersion]) -> Vec<String> {
    versions.iter().map(ToString::to_string).collect()
}

/// The migrations as bodies, or every malformed field.
fn check_shape(migrations: &[PushedMigration]) -> Result<Vec<MigrationBody>, Error> {
    let mut violations = Vec::new();
    if migrations.is_empty() {
        return Err(Error::invalid(
            "migrations",
            "at least one migration is required",
        ));
    }
    if migrations.len() > MAX_MIGRATIONS {
        return Err(Error::invalid(
            "migrations",
            format!(
                "at most {MAX_MIGRATIONS} migrations in one push, got {}",
                migrations.len()
            ),
        ));
    }
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut bodies = Vec::with_capacity(migrations.len());
    for (i, m) in migrations.iter().enumerate() {
        let field = |name: &str| format!("migrations[{i}].{name}");
        let version = match MigrationVersion::parse(&m.version) {
            Ok(v) => Some(v),
            Err(why) => {
                violations.push(FieldViolation::new(field("version"), why));
                None
            }
        };
        if let Some(earlier) = first_of.insert(&m.version, i) {
            first_of.insert(&m.version, earlier);
            violations.push(FieldViolation::new(
                field("version"),
                format!("{} is sent twice (also migrations[{earlier}])", m.version),
            ));
        }
        if m.description.chars().count() > MAX_DESCRIPTION_CHARS {
            violations.push(FieldViolation::new(
                field("description"),
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if m.up_sql.trim().is_empty() {
            violations.push(FieldViolation::new(field("up_sql"), "is required"));
        }
        for (script, text) in [
            (Script::UpSql, &m.up_sql),
            (Script::DownSql, &m.down_sql),
            (Script::SqliteUpSql, &m.sqlite_up_sql),
            (Script::SqliteDownSql, &m.sqlite_down_sql),
        ] {
            if text.len() > MAX_SCRIPT_BYTES {
                violations.push(FieldViolation::new(
                    field(script.as_str()),
                    format!("must be at most {MAX_SCRIPT_BYTES} bytes"),
                ));
            }
        }
        if let Some(version) = version {
            bodies.push(MigrationBody {
                version,
                description: m.description.clone(),
                up_sql: m.up_sql.clone(),
                down_sql: m.down_sql.clone(),
                sqlite_up_sql: m.sqlite_up_sql.clone(),
                sqlite_down_sql: m.sqlite_down_sql.clone(),
            });
        }
    }
    Error::check(violations)?;
    Ok(bodies)
}

/// Lints every script of each `(position in the push, body)`; refuses with one violation per
/// error finding, naming the migration, the script and the statement.
/// Runs `lint` on a blocking thread once `turn` has a permit for it. The permit is held until
/// the lint ends, even when the push is abandoned meanwhile, since the core is busy until then.
async fn in_turn<T: Send + 'static>(
    turn: &Arc<Semaphore>,
    lint: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let permit = turn
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| Error::Internal(format!("the lint queue is closed: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let done = lint();
        drop(permit);
        done
    })
    .await
    .map_err(|e| Error::Internal(format!("the lint stopped: {e}")))
}

fn lint_all(
    migrations: &[(usize, MigrationBody)],
    allow: Allowances,
    server: &LintServer,
) -> Result<HashMap<usize, Linted>, Error> {
    let mut violations = Vec::new();
    let mut linted = HashMap::new();
    for (i, body) in migrations {
        let mut result = Linted::default();
        for (script, dialect) in scripts_to_lint(body, server) {
            let text = body.script(script);
            // A down script reverts its migration: undoing a CREATE TABLE is a DROP TABLE by
            // nature, so the destructive rule guards only what runs forward.
            let allow = Allowances {
                destructive: allow.destructive || script.is_down(),
                ..allow
            };
            let found = lint::lint(text, dialect, allow);
            if !script.is_down() && found.destructive {
                result.destructive = true;
            }
            for grantee in found.grantees.iter().filter(|g| tenant_role(g, server)) {
                violations.push(FieldViolation::new(
                    format!("migrations[{i}].{}", script.as_str()),
                    format!(
                        "{}: {}: '{grantee}' is a tenant's role: a migration runs in every \
                         tenant, so the grant would hand every tenant's tables to that one tenant",
                        body.version,
                        lint::rule::PRIVILEGES,
                    ),
                ));
            }
            for finding in found.findings {
                match finding.severity {
                    Severity::Error => {
                        violations.push(FieldViolation::new(
                            format!("migrations[{i}].{}", script.as_str()),
                            format!(
                                "{}: statement {}: {}: {}",
                                body.version,
                                finding.statement_index,
                                finding.rule,
                                finding.message
                            ),
                        ));
                    }
                    Severity::Note => result.notes.push(LintNote {
                        version: body.version.to_string(),
                        script,
                        statement_index: finding.statement_index,
                        rule: finding.rule.to_owned(),
                        severity: NoteSeverity::Note,
                        message: finding.message,
                        statement: finding.statement,
                    }),
                }
            }
        }
        linted.insert(*i, result);
    }
    Error::check(violations)?;
    Ok(linted)
}

/// The scripts of `body` to lint, each with the dialect it runs in: the PostgreSQL ones as
/// PostgreSQL, the SQLite ones as SQLite, and, on a server whose tenants are SQLite files, a
/// PostgreSQL script without its SQLite twin as SQLite too (it is what runs there).
fn scripts_to_lint(body: &MigrationBody, server: &LintServer) -> Vec<(Script, Dialect)> {
    let mut scripts = Vec::new();
    for script in Script::ALL {
        if body.script(script).trim().is_empty() {
            continue;
        }
        if script.is_sqlite() {
            scripts.push((script, Dialect::Sqlite));
            continue;
        }
        scripts.push((script, Dialect::Postgres));
        let twin = if script.is_down() {
            Script::SqliteDownSql
        } else {
            Script::SqliteUpSql
        };
        if server.sqlite && body.script(twin).trim().is_empty() {
            scripts.push((script, Dialect::Sqlite));
        }
    }
    scripts
}

/// Whether `grantee` names a tenant's role (or the control plane's connect role).
fn tenant_role(grantee: &str, server: &LintServer) -> bool {
    let grantee = grantee.to_ascii_lowercase();
    (!server.tenant_role_prefix.is_empty() && grantee.starts_with(&server.tenant_role_prefix))
        || grantee.starts_with("tenant-plane")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(version: &str, up: &str) -> PushedMigration {
        PushedMigration {
            version: version.into(),
            up_sql: up.into(),
            ..Default::default()
        }
    }

    fn fields(error: Error) -> Vec<String> {
        error
            .into_violations()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn malformed_pushes_name_every_field() {
        let error = check_shape(&[
            pushed("0001_a", "SELECT 1"),
            pushed("0001_a", "SELECT 1"),
            pushed("x", "SELECT 1"),
            pushed("0003_c", "  "),
            PushedMigration {
                down_sql: "x".repeat(MAX_SCRIPT_BYTES + 1),
                ..pushed("0004_d", "SELECT 1")
            },
        ])
        .unwrap_err();
        assert_eq!(
            fields(error),
            [
                "migrations[1].version",
                "migrations[2].version",
                "migrations[3].up_sql",
                "migrations[4].down_sql",
            ]
        );
        assert_eq!(fields(check_shape(&[]).unwrap_err()), ["migrations"]);
        let many: Vec<_> = (0..=MAX_MIGRATIONS)
            .map(|i| pushed(&format!("{i:05}"), "SELECT 1"))
            .collect();
        assert_eq!(fields(check_shape(&many).unwrap_err()), ["migrations"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_push_is_linted_once_the_one_before_it_is_done() {
        let turn = Arc::new(Semaphore::new(1));
        let held = turn.clone().acquire_owned().await.unwrap();
        let (started, start) = std::sync::mpsc::channel();
        let waiting = tokio::spawn({
            let turn = turn.clone();
            async move { in_turn(&turn, move || started.send(()).is_ok()).await }
        });
        assert_eq!(
            start.recv_timeout(std::time::Duration::from_millis(300)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout),
            "a lint started while another held the turn"
        );
        drop(held);
        assert!(
            waiting.await.unwrap().unwrap(),
            "it ran once given the turn"
        );
        assert_eq!(turn.available_permits(), 1, "the turn is given back");
    }
}
