//! The start-up check that the catalog URL reaches PostgreSQL sessions of the control plane's
//! own, not a transaction-pooling connection pooler (PgBouncer with `pool_mode = transaction` or
//! `statement`, RDS Proxy and alike) that hands one server session to many client connections.
//!
//! The control plane needs its sessions: it LISTENs for other replicas' catalog changes on one
//! connection (through such a pooler the LISTEN lands on a session that then serves other
//! clients, and the notifications are lost: caches go stale without a word), and its queries
//! are prepared statements cached per connection (two connections on one session collide:
//! "prepared statement \"sqlx_s_1\" already exists").
//!
//! **How it tells.** Two new connections each ask for their server session's process id, in
//! turns, a few times. Connected directly, each connection is one PostgreSQL session for its
//! whole life: the two ids differ and never change. A transaction pooler gives each statement
//! whichever server session is free, so, with sessions idle, the second connection's statement
//! runs on the session the first one just released (PgBouncer reuses the most recent one), or
//! one connection's id changes. Either is proof; nothing a direct connection or a session-mode
//! pool does can produce it, so the check never refuses a direct connection. (A check that sets
//! a session setting and reads it back in a later transaction proves nothing: an idle pooler
//! gives the same session back.) The statements go as simple queries, which no pooler can break.

use sea_orm::sqlx::{Connection, Row, postgres::PgConnection, raw_sql};

use crate::domain::Error;

/// Turns of the two connections. With idle server sessions the first turn tells; more turns
/// give other clients' traffic through the pooler chances to let one through.
const TURNS: usize = 4;

/// Refuses, with a message that says what to change, a PostgreSQL `url` that goes through a
/// transaction-pooling connection pooler; anything else (SQLite, a direct connection, a
/// session-mode pool) passes.
pub async fn refuse_transaction_pooler(url: &str) -> Result<(), Error> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok(());
    }
    let (mut first, mut second) = (connect(url).await?, connect(url).await?);
    let mut seen: [Option<String>; 2] = [None, None];
    let mut shared = None;
    for _ in 0..TURNS {
        for (which, conn) in [&mut first, &mut second].into_iter().enumerate() {
            let pid = backend_pid(conn).await?;
            let other = &seen[1 - which];
            let moved = seen[which].as_ref().is_some_and(|own| *own != pid);
            if moved || other.as_ref() == Some(&pid) {
                shared = Some(pid.clone());
            }
            seen[which] = Some(pid);
        }
        if shared.is_some() {
            break;
        }
    }
    let _ = first.close().await;
    let _ = second.close().await;
    match shared {
        None => Ok(()),
        Some(pid) => Err(Error::FailedPrecondition {
            subject: "DATABASE_URL".into(),
            message: format!(
                "DATABASE_URL goes through a transaction-pooling connection pooler (such as \
                 PgBouncer with pool_mode=transaction): two connections of the control plane \
                 ran on one PostgreSQL session (backend pid {pid}). The control plane needs \
                 sessions of its own (LISTEN for other replicas' catalog changes, prepared \
                 statements): point DATABASE_URL at PostgreSQL directly or at a pool in \
                 pool_mode=session. Applications' tenant transactions may use the pooler \
                 (see docs/security.md, Connection poolers)."
            ),
        }),
    }
}

async fn connect(url: &str) -> Result<PgConnection, Error> {
    PgConnection::connect(url)
        .await
        .map_err(|e| Error::Unavailable(format!("checking the catalog connection: {e}")))
}

/// The process id of the server session `conn`'s next statement runs on, sent as a simple
/// query (no prepared statement).
async fn backend_pid(conn: &mut PgConnection) -> Result<String, Error> {
    let row = raw_sql("SELECT pg_backend_pid()::text")
        .fetch_one(conn)
        .await
        .map_err(|e| Error::Unavailable(format!("checking the catalog connection: {e}")))?;
    row.try_get::<String, _>(0)
        .map_err(|e| Error::Internal(format!("checking the catalog connection: {e}")))
}
