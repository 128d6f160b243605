//! pgphase's command sessions: each connection must keep one server session for the
//! whole command, and runs under pgphase's own limits rather than the role's.
//!
//! pgphase keeps session state: the plan's advisory lock on the control connection,
//! `SET`s on both, tokio-postgres' named prepared statements. A pooler in transaction
//! (or statement) mode hands each transaction to whichever server session is free, so
//! none of that holds: the lock would belong to a server session other clients then
//! use, and a prepared statement would meet another client's (`42P05`) or be missing
//! (`26000`). [`check_dedicated`] detects such a pooler before anything else runs,
//! using only the simple query protocol (no prepared statement is created on a pooled
//! server session), and refuses.
//!
//! The check: both connections ask `SELECT pg_backend_pid()`, alternately, three times.
//! Connected directly or through a session pooler, each connection always reports the
//! same backend and the two report different ones. A transaction pooler is caught when
//! it serves both connections from one server session, or one connection from two.
//! PgBouncer reuses the server session released last, so with its pool otherwise idle
//! the second connection's first query lands on the session the first one just
//! released: caught on the first round. Under a busy pool it can happen that every
//! round lands on distinct, stable sessions; then the plan lock's watcher (which
//! checks that the control connection's backend still holds the lock) stops the
//! command at its next check, and a prepared statement that meets another session
//! fails naming this cause ([`crate::error::describe_db_error`]).

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::CmdError;

/// The server sessions (backend pids) behind pgphase's two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pids {
    pub control: i32,
    pub work: i32,
}

const ROUNDS: usize = 3;

/// The start of the refusal's reason, to recognise it (nothing may be written through
/// such a pooler, not even the audit event).
const REFUSAL_START: &str = "the database URL leads to a connection pooler in transaction";

/// Refuses, before anything else runs on them, when `control` and `work` do not each
/// keep one server session of their own.
pub async fn check_dedicated(control: &Client, work: &Client) -> Result<Pids, CmdError> {
    let mut seen: Option<Pids> = None;
    for _ in 0..ROUNDS {
        let c = backend_pid(control).await?;
        let w = backend_pid(work).await?;
        let finding = if c == w {
            Some(format!(
                "two of pgphase's connections were served by the same server session (pid {c})"
            ))
        } else {
            match seen {
                Some(p) if p.control != c => Some(format!(
                    "one connection was served by two server sessions (pids {} and {c})",
                    p.control
                )),
                Some(p) if p.work != w => Some(format!(
                    "one connection was served by two server sessions (pids {} and {w})",
                    p.work
                )),
                _ => None,
            }
        };
        if let Some(finding) = finding {
            return Err(refusal(&finding));
        }
        seen = Some(Pids {
            control: c,
            work: w,
        });
    }
    Ok(seen.expect("ROUNDS > 0"))
}

fn refusal(finding: &str) -> CmdError {
    CmdError::refused(
        format!(
            "{REFUSAL_START} (or statement) pooling mode: {finding}. pgphase keeps session state for the whole command (the plan's advisory lock, its own timeouts, prepared statements), which such a pooler does not keep; nothing was changed"
        ),
        "connect pgphase directly to PostgreSQL (the server's host and port, not the pooler's), or through a pool in session mode (PgBouncer: `pool_mode = session` for the database or user pgphase uses); the application may keep using transaction pooling",
    )
}

/// Whether a refusal is [`check_dedicated`]'s.
pub fn is_pooler_refusal(e: &CmdError) -> bool {
    matches!(e, CmdError::Refused(r) if r.reason.starts_with(REFUSAL_START))
}

/// The backend pid of the server session behind `c`, by a simple query.
pub async fn backend_pid(c: &Client) -> Result<i32, tokio_postgres::Error> {
    let rows = c.simple_query("SELECT pg_backend_pid()").await?;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .unwrap_or(0))
}

/// pgphase's own limits for its sessions, whatever the role or database sets: no
/// `statement_timeout` (a backfill's bookkeeping, a verify over a large table and a
/// CONCURRENTLY build take as long as they take; steps that could queue the
/// application set `lock_timeout` themselves), no `lock_timeout` outside those steps,
/// and no idle timeouts (the control connection idles while it holds the plan's lock
/// during a long step). `idle_session_timeout` (PostgreSQL 14) and
/// `transaction_timeout` (17) only where the server has them.
pub async fn apply_settings(c: &Client) -> Result<(), tokio_postgres::Error> {
    c.batch_execute(SETTINGS_SQL).await
}

/// The statements of [`apply_settings`]: `statement_timeout` first, so a tiny role
/// setting cannot cut the rest short.
pub const SETTINGS_SQL: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; \
     SELECT set_config(name, '0', false) FROM pg_settings \
      WHERE name IN ('idle_session_timeout', 'transaction_timeout')";
