//! `pgphase lint --trace`: runs a migration inside one transaction that is rolled back,
//! and after each statement reads what it really did: the relation locks its backend
//! took (`pg_locks`) and the relations whose storage it replaced (`relfilenode`, a
//! rewrite). Observed, not guessed.
//!
//! On a database the user gives, everything runs in one transaction that is rolled back
//! ([`TraceMode::RolledBack`]); locks are held until it ends, so a statement shows the
//! locks it added to those earlier statements hold. Each statement runs under a
//! savepoint: a failing one (e.g. CONCURRENTLY, which cannot run in a transaction block)
//! is reported and the trace goes on. On a throwaway server each statement commits on
//! its own ([`TraceMode::Committed`]), so each shows its own locks. Transaction control
//! in the file (BEGIN, COMMIT…) is skipped: the trace owns the transactions.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

use super::lexer::Statement;
use super::stmt::{classify, Kind};

#[derive(Clone, Debug, Serialize)]
pub struct TraceReport {
    /// Where it ran: the database (redacted URL) or "a throwaway PostgreSQL N".
    pub target: String,
    pub statements: Vec<TracedStatement>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TracedStatement {
    pub file: String,
    pub line: usize,
    pub statement: String,
    /// Why it was not run (transaction control).
    pub skipped: Option<String>,
    pub error: Option<String>,
    /// How it ran, when not as the others (outside a transaction block).
    pub note: Option<String>,
    pub locks: Vec<ObservedLock>,
    /// Relations whose storage the statement replaced (`relfilenode` changed).
    pub rewrote: Vec<String>,
    pub duration_ms: u64,
    /// The lint findings on this statement (rule names).
    pub findings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ObservedLock {
    pub relation: String,
    /// table, index, sequence, view, materialized view, …
    pub relkind: String,
    /// PostgreSQL's name: `ACCESS EXCLUSIVE`, `SHARE`, …
    pub mode: String,
    /// The relation did not exist before the statement.
    pub created: bool,
    /// The mode conflicts with ROW EXCLUSIVE (writes) or ACCESS SHARE (reads).
    pub blocks_reads_or_writes: bool,
}

/// `AccessExclusiveLock` → `ACCESS EXCLUSIVE`.
pub fn mode_name(mode: &str) -> String {
    let base = mode.strip_suffix("Lock").unwrap_or(mode);
    let mut out = String::new();
    for (i, ch) in base.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn blocks(mode: &str) -> bool {
    matches!(
        mode,
        "ShareLock" | "ShareRowExclusiveLock" | "ExclusiveLock" | "AccessExclusiveLock"
    )
}

const RELATIONS: &str =
    "SELECT c.oid::int8, format('%s.%s', quote_ident(n.nspname), quote_ident(c.relname)),
        c.relkind::text, pg_relation_filenode(c.oid)::int8
   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
    AND n.nspname NOT LIKE 'pg_temp%'";

const LOCKS: &str = "SELECT l.relation::int8, l.mode FROM pg_locks l
  WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

struct Snapshot {
    /// oid → (name, relkind, filenode)
    rels: BTreeMap<i64, (String, String, Option<i64>)>,
    locks: BTreeSet<(i64, String)>,
}

async fn snapshot<C: tokio_postgres::GenericClient>(
    c: &C,
) -> Result<Snapshot, tokio_postgres::Error> {
    let rels = c
        .query(RELATIONS, &[])
        .await?
        .iter()
        .map(|r| (r.get::<_, i64>(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let locks = c
        .query(LOCKS, &[])
        .await?
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
        .collect();
    Ok(Snapshot { rels, locks })
}

fn relkind(k: &str) -> &'static str {
    match k {
        "r" => "table",
        "p" => "partitioned table",
        "i" | "I" => "index",
        "S" => "sequence",
        "v" => "view",
        "m" => "materialized view",
        "t" => "toast table",
        "f" => "foreign table",
        "c" => "type",
        _ => "relation",
    }
}

/// How the statements run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceMode {
    /// All in one transaction that is rolled back (a database the user gave): a
    /// statement shows only the locks it added to those earlier statements hold.
    RolledBack,
    /// Each statement in its own transaction, committed (a throwaway server): every
    /// statement's own locks; statements that cannot run in a transaction block
    /// (CONCURRENTLY) run outside one.
    Committed,
}

/// [`trace`] on a throwaway local PostgreSQL server (an empty database, so the files must
/// create their own tables), committed; the server is removed afterwards.
pub async fn trace_on_throwaway_server(
    files: &[(String, Vec<Statement>)],
    lock_timeout: Duration,
    findings: impl Fn(&str, usize) -> Vec<String>,
) -> Result<TraceReport, crate::error::CmdError> {
    use crate::conn::ConnInfo;
    use crate::error::CmdError;
    use crate::pgserver::{PgServer, ServerOptions};
    let server = tokio::task::spawn_blocking(|| PgServer::start(&ServerOptions::default()))
        .await
        .map_err(|e| CmdError::Failed(e.into()))??;
    let admin = ConnInfo::parse(&server.url("postgres"))?.connect().await?;
    admin.batch_execute("CREATE DATABASE pgphase_trace").await?;
    let mut client = ConnInfo::parse(&server.url("pgphase_trace"))?
        .connect()
        .await?;
    let target = format!(
        "a throwaway PostgreSQL {} (empty database)",
        server.major_version()
    );
    let r = trace(
        &mut client,
        &target,
        TraceMode::Committed,
        files,
        lock_timeout,
        findings,
    )
    .await;
    drop(client);
    drop(admin);
    drop(server);
    Ok(r?)
}

/// Runs the files' statements, in order, on `client` (later files see what earlier ones
/// created). `findings(file, line)` names the lint rules that fired on a statement.
pub async fn trace(
    client: &mut Client,
    target: &str,
    mode: TraceMode,
    files: &[(String, Vec<Statement>)],
    lock_timeout: Duration,
    findings: impl Fn(&str, usize) -> Vec<String>,
) -> Result<TraceReport, tokio_postgres::Error> {
    let set_timeout = format!("SET lock_timeout = '{}ms'", lock_timeout.as_millis().max(1));
    let (begin, end) = match mode {
        TraceMode::RolledBack => {
            client.batch_execute("BEGIN").await?;
            ("SAVEPOINT pgphase_trace", "RELEASE SAVEPOINT pgphase_trace")
        }
        TraceMode::Committed => ("BEGIN", "COMMIT"),
    };
    let undo = match mode {
        TraceMode::RolledBack => "ROLLBACK TO SAVEPOINT pgphase_trace",
        TraceMode::Committed => "ROLLBACK",
    };
    // session-level in Committed mode; undone with the transaction in RolledBack mode
    client.batch_execute(&set_timeout).await?;
    let mut out = Vec::new();
    for (file, s) in files
        .iter()
        .flat_map(|(f, st)| st.iter().map(move |s| (f.as_str(), s)))
    {
        let mut t = TracedStatement {
            file: file.to_string(),
            line: s.line,
            statement: s.excerpt(100),
            skipped: None,
            error: None,
            note: None,
            locks: Vec::new(),
            rewrote: Vec::new(),
            duration_ms: 0,
            findings: findings(file, s.line),
        };
        let kind = classify(s);
        let first = s.tokens.first().and_then(|t| t.word()).unwrap_or("");
        if matches!(kind, Kind::Begin | Kind::EndTransaction)
            || matches!(
                first,
                "savepoint" | "release" | "prepare" | "rollback" | "commit"
            )
        {
            t.skipped = Some(match mode {
                TraceMode::RolledBack => "transaction control (the trace runs the whole file in one transaction that is rolled back)".into(),
                TraceMode::Committed => "transaction control (the trace runs each statement in its own transaction)".into(),
            });
            out.push(t);
            continue;
        }
        client.batch_execute(begin).await?;
        let before = snapshot(&*client).await?;
        let t0 = Instant::now();
        let result = client.batch_execute(&s.text).await;
        t.duration_ms = t0.elapsed().as_millis() as u64;
        if let Err(e) = result {
            client.batch_execute(undo).await?;
            let outside =
                e.code() == Some(&tokio_postgres::error::SqlState::ACTIVE_SQL_TRANSACTION);
            if outside && mode == TraceMode::Committed {
                // CONCURRENTLY & co. must run outside a transaction block: run it so, and
                // compare storage; its locks are gone before they can be read
                let before = snapshot(&*client).await?;
                let t0 = Instant::now();
                let r = client.batch_execute(&s.text).await;
                t.duration_ms = t0.elapsed().as_millis() as u64;
                match r {
                    Ok(()) => {
                        t.skipped = None;
                        let after = snapshot(&*client).await?;
                        t.rewrote = rewrites(&before, &after);
                        t.error = None;
                        t.locks.clear();
                        t.note = Some("ran outside a transaction block, as it must; its locks end with it, before they can be read".into());
                    }
                    Err(e) => t.error = Some(crate::error::describe_db_error(&e)),
                }
                out.push(t);
                continue;
            }
            t.error = Some(crate::error::describe_db_error(&e));
            out.push(t);
            continue;
        }
        let after = snapshot(&*client).await?;
        client.batch_execute(end).await?;
        for (oid, mode) in after.locks.difference(&before.locks) {
            let Some((name, kind, _)) = after.rels.get(oid) else {
                continue; // a catalog or a relation the statement dropped again
            };
            t.locks.push(ObservedLock {
                relation: name.clone(),
                relkind: relkind(kind).into(),
                mode: mode_name(mode),
                created: !before.rels.contains_key(oid),
                blocks_reads_or_writes: blocks(mode),
            });
        }
        t.rewrote = rewrites(&before, &after);
        out.push(t);
    }
    if mode == TraceMode::RolledBack {
        client.batch_execute("ROLLBACK").await?;
    }
    Ok(TraceReport {
        target: target.to_string(),
        statements: out,
    })
}

fn rewrites(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (oid, (name, kind, node)) in &after.rels {
        if let Some((_, _, old)) = before.rels.get(oid) {
            if old != node && old.is_some() {
                out.push(format!("{name} ({})", relkind(kind)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn mode_names() {
        assert_eq!(super::mode_name("AccessExclusiveLock"), "ACCESS EXCLUSIVE");
        assert_eq!(
            super::mode_name("ShareUpdateExclusiveLock"),
            "SHARE UPDATE EXCLUSIVE"
        );
        assert_eq!(super::mode_name("ShareLock"), "SHARE");
    }
}
