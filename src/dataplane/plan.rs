//! Tenant migrations sent as one batch, so that applying several costs one round trip.
//!
//! sea-orm-migration sends each statement of a migration on its own: provisioning the sample
//! schema would be six round trips of DDL. A migration whose `up` only changes the schema —
//! `CREATE`, `ALTER`, `DROP`, `COMMENT`, `GRANT`, `REVOKE`, without bound values — can go as one
//! batch instead: the same statements, in the same order, in the same transaction, so a failure
//! still rolls the tenant back to where it was.
//!
//! Just before a run, each migration's `up` is asked once against a recording connection
//! (sea-orm's mock connection, which reaches no database). Such statements tell their sender
//! nothing back (no rows; no count, but for `CREATE TABLE ... AS`), so the migration's `up` would
//! have sent the same ones to the database. Anything else is refused — a read, a bound value, a
//! data change, a transaction of its own — and that migration runs as before, statement by
//! statement (its `up` is then asked a second time, for real). Batching is for PostgreSQL;
//! SQLite runs migrations one by one.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use migration::sea_orm_migration::{MigrationTrait, SchemaManager};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseConnectionType, DatabaseTransaction, DbBackend,
    DbErr, ExecResult, MockDatabaseConnection, MockDatabaseTrait, QueryResult, Statement,
    Transaction, sqlx::postgres::PgQueryResult,
};

/// Between two statements of a batch: on a line of its own, so that a statement ending in a
/// `--` comment still ends.
pub const SEPARATOR: &str = "\n;\n";

/// Statements gathered to be sent in one round trip.
#[derive(Debug, Default)]
pub struct Batch(String);

impl Batch {
    /// Adds `statement` (nothing, if it is empty).
    pub fn push(&mut self, statement: &str) {
        if statement.is_empty() {
            return;
        }
        if !self.0.is_empty() {
            self.0.push_str(SEPARATOR);
        }
        self.0.push_str(statement);
    }

    /// Sends the statements gathered, if any, and starts afresh.
    pub async fn send(&mut self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        if self.0.is_empty() {
            return Ok(());
        }
        let sql = std::mem::take(&mut self.0);
        txn.execute_unprepared(&sql).await.map(|_| ())
    }
}

/// The statements `migration`'s `up` sends, recorded without reaching a database, when it only
/// changes the schema; `None` when it must run statement by statement.
pub async fn record(migration: &dyn MigrationTrait) -> Option<Vec<String>> {
    record_step(migration, Step::Up).await
}

/// Which half of a migration to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Up,
    Down,
}

/// [`record`] of `migration`'s `up` or `down`: the dry run shows a revert's statements too.
pub async fn record_step(migration: &dyn MigrationTrait, step: Step) -> Option<Vec<String>> {
    let recording = Arc::new(Recording::default());
    let conn = DatabaseConnection::from(DatabaseConnectionType::MockDatabaseConnection(Arc::new(
        MockDatabaseConnection::new(Recorder(Arc::clone(&recording))),
    )));
    let manager = SchemaManager::new(&conn);
    let ran = match step {
        Step::Up => migration.up(&manager).await,
        Step::Down => migration.down(&manager).await,
    };
    let statements = recording.take().filter(|_| ran.is_ok());
    if statements.is_none() {
        tracing::debug!(
            migration = migration.name(),
            "tenant migration runs statement by statement"
        );
    }
    statements
}

/// Whether `sql` changes the schema only: its execution reports nothing back.
fn changes_schema_only(sql: &str) -> bool {
    let verb = sql
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or_default();
    ["CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE"]
        .iter()
        .any(|ddl| verb.eq_ignore_ascii_case(ddl))
}

/// The statements a [`Recorder`] was sent, and whether it refused any.
#[derive(Debug, Default)]
struct Recording {
    sent: Mutex<Vec<String>>,
    refused: AtomicBool,
}

impl Recording {
    /// The statements sent, unless something was refused.
    fn take(&self) -> Option<Vec<String>> {
        if self.refused.load(Ordering::SeqCst) {
            return None;
        }
        self.sent
            .lock()
            .ok()
            .map(|mut sent| std::mem::take(&mut *sent))
    }

    fn refuse<T>(&self, what: &str) -> Result<T, DbErr> {
        self.refuse_quietly();
        Err(DbErr::Custom(format!("a planned migration cannot {what}")))
    }

    fn refuse_quietly(&self) {
        self.refused.store(true, Ordering::SeqCst);
    }
}

/// A connection that reaches no database: it writes down the statements it is sent, and refuses
/// anything but a schema change: a read, a bound value, a data change, a transaction of its own.
/// (sea-orm's mock connection, driven by a recorder of our own.)
#[derive(Debug)]
struct Recorder(Arc<Recording>);

impl MockDatabaseTrait for Recorder {
    fn execute(&mut self, _counter: usize, statement: Statement) -> Result<ExecResult, DbErr> {
        if statement
            .values
            .as_ref()
            .is_some_and(|values| !values.0.is_empty())
        {
            return self.0.refuse("bind values");
        }
        let sql = statement.sql.trim().trim_end_matches(';').trim_end();
        if !changes_schema_only(sql) {
            return self.0.refuse("change data");
        }
        match self.0.sent.lock() {
            Ok(mut sent) => {
                sent.push(sql.to_owned());
                Ok(ExecResult::from(PgQueryResult::default()))
            }
            Err(_) => self.0.refuse("record"),
        }
    }

    fn query(&mut self, _counter: usize, _statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.0.refuse("read")
    }

    fn begin(&mut self) {
        self.0.refuse_quietly();
    }

    fn commit(&mut self) {
        self.0.refuse_quietly();
    }

    fn rollback(&mut self) {
        self.0.refuse_quietly();
    }

    fn drain_transaction_log(&mut self) -> Vec<Transaction> {
        Vec::new()
    }

    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    fn ping(&self) -> Result<(), DbErr> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use migration::sea_orm_migration::{MigrationName, async_trait::async_trait};
    use sea_orm::sea_query::{Alias, Table};

    use super::*;

    /// A migration that does `what` with its manager.
    struct Doing(&'static str);

    impl MigrationName for Doing {
        fn name(&self) -> &str {
            self.0
        }
    }

    #[async_trait]
    impl MigrationTrait for Doing {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let conn = manager.get_connection();
            let table = Table::create()
                .table(Alias::new("t"))
                .col(sea_orm::sea_query::ColumnDef::new(Alias::new("id")).integer())
                .to_owned();
            match self.0 {
                "create" => manager.create_table(table).await,
                "read" => manager.has_table("t").await.map(|_| ()),
                "insert" => conn
                    .execute_unprepared("INSERT INTO t VALUES (1)")
                    .await
                    .map(|_| ()),
                "bind" => conn
                    .execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "CREATE TABLE t (id INTEGER DEFAULT $1)",
                        [1.into()],
                    ))
                    .await
                    .map(|_| ()),
                "transaction" => {
                    let own = manager.begin().await?;
                    own.create_table(table).await?;
                    own.commit().await
                }
                // A read whose refusal the migration ignores is refused all the same.
                "swallow" => {
                    let _ = manager.has_table("t").await;
                    manager.create_table(table).await
                }
                _ => Err(DbErr::Custom("fails before sending anything".into())),
            }
        }
    }

    #[tokio::test]
    async fn schema_changes_are_recorded_as_sent() {
        let recorded = record(&Doing("create")).await;

        assert_eq!(
            recorded,
            Some(vec![r#"CREATE TABLE "t" ( "id" integer )"#.to_owned()])
        );
    }

    #[tokio::test]
    async fn the_sample_schema_is_recorded_whole() {
        let mut statements = Vec::new();
        for migration in migration::tenant::migrations() {
            let recorded = record(migration.as_ref()).await;
            statements.extend(recorded.unwrap_or_else(|| panic!("{} refused", migration.name())));
        }

        assert_eq!(statements.len(), 6, "{statements:#?}");
        assert_eq!(
            statements
                .iter()
                .filter(|s| s.starts_with("CREATE TABLE"))
                .count(),
            4
        );
    }

    #[tokio::test]
    async fn the_sample_keys_are_re_keyed_on_the_tenant_only_in_the_shared_schema() {
        let last = migration::tenant::migrations().pop().expect("a migration");

        let own = record(last.as_ref()).await;
        let shared = migration::tenant::shared_schema(record(last.as_ref())).await;

        assert_eq!(
            own,
            Some(Vec::new()),
            "a tenant's own storage is left as it is"
        );
        let shared = shared.expect("recorded");
        assert!(
            shared
                .iter()
                .any(|s| s.contains("FOREIGN KEY (tenant_id, owner_id)")),
            "{shared:#?}"
        );
    }

    #[tokio::test]
    async fn anything_but_a_schema_change_is_refused() {
        for what in ["read", "insert", "bind", "transaction", "swallow", "fail"] {
            assert_eq!(record(&Doing(what)).await, None, "{what}");
        }
    }

    #[test]
    fn only_schema_statements_pass() {
        for ddl in [
            "CREATE TABLE t (id int)",
            "create index i on t (id)",
            "ALTER TABLE t ADD COLUMN c int",
            "DROP TABLE t",
            "COMMENT ON TABLE t IS 'x'",
            "GRANT SELECT ON t TO r",
            "REVOKE SELECT ON t FROM r",
        ] {
            assert!(changes_schema_only(ddl), "{ddl}");
        }
        for other in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET id = 2",
            "DELETE FROM t",
            "SELECT 1",
            "WITH x AS (DELETE FROM t) SELECT 1",
            "-- CREATE\nDELETE FROM t",
            "CREATED",
            "",
        ] {
            assert!(!changes_schema_only(other), "{other}");
        }
    }

    #[test]
    fn a_batch_separates_statements_on_lines_of_their_own() {
        let mut batch = Batch::default();
        batch.push("CREATE TABLE a (id int) -- a comment");
        batch.push("CREATE TABLE b (id int)");

        assert_eq!(
            batch.0,
            "CREATE TABLE a (id int) -- a comment\n;\nCREATE TABLE b (id int)"
        );
    }
}
