//! Runs steps against the database: short lock timeouts with jittered retries for
//! statements that would block the application, CONCURRENTLY statements outside
//! transactions, idempotent re-runs, and the batched backfill.

pub mod backfill;
mod keyset;
pub mod pace;
mod scan;
pub mod throttle;

use rand::Rng;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::describe_db_error;
use crate::program::{Action, LockLevel, Step};
use crate::sql::{quote_literal, QualifiedName};

/// Where the executor reports what it is doing; implemented by the report layer.
pub trait Observer: Send + Sync {
    fn step_started(&self, _phase: &str, _index: usize, _total: usize, _step: &Step) {}
    fn step_finished(
        &self,
        _phase: &str,
        _step: &Step,
        _outcome: &StepOutcome,
        _elapsed: Duration,
    ) {
    }
    fn lock_retry(&self, _step: &Step, _retry: &LockRetry) {}
    fn backfill_started(&self, _table: &QualifiedName, _done: i64, _total: Option<i64>) {}
    fn backfill_progress(&self, _done: i64, _total: Option<i64>, _rows_per_sec: f64) {}
    fn backfill_finished(&self, _done: i64, _elapsed: Duration) {}
    fn note(&self, _message: &str) {}
}

/// An observer that ignores everything (tests, library users).
pub struct Silent;
impl Observer for Silent {}

#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    Ran,
    /// Already in effect (idempotent re-run).
    Skipped,
    Backfilled {
        rows: i64,
        batches: i64,
        /// What the application met ([`pace::Pace::summary`]), when it met anything.
        pace: Option<String>,
    },
    Verified,
}

/// One failed attempt to get a lock, and who held it.
#[derive(Clone, Debug)]
pub struct LockRetry {
    pub attempt: u32,
    pub max_attempts: u32,
    pub wait: Duration,
    pub blockers: Vec<Blocker>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    /// None when the session belongs to another role and pgphase's role lacks
    /// pg_read_all_stats (PostgreSQL hides the details).
    pub state: Option<String>,
    pub xact_age_secs: Option<f64>,
    pub query: String,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let app = if self.application_name.is_empty() {
            "no application_name"
        } else {
            &self.application_name
        };
        match (&self.state, self.xact_age_secs) {
            (Some(state), Some(age)) => write!(
                f,
                "pid {} ({app}, {state}, transaction open {age:.1}s: {})",
                self.pid, self.query
            ),
            (Some(state), None) => write!(f, "pid {} ({app}, {state}: {})", self.pid, self.query),
            (None, _) => write!(
                f,
                "pid {} ({app}; another role's session: its details are hidden without pg_read_all_stats)",
                self.pid
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("gave up after {attempts} attempts to take the {lock} lock on {table} within lock_timeout {timeout:?}; nothing was changed by this step{blockers}")]
    LockTimeout {
        attempts: u32,
        lock: LockLevel,
        table: String,
        timeout: Duration,
        blockers: String,
    },
    #[error("failpoint {0} hit (fault injected by PGPHASE_FAILPOINT)")]
    Injected(String),
    #[error("verification failed: {count} {what}")]
    Verify { count: i64, what: String },
    #[error("{context}: {}", describe_db_error(.source))]
    Db {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl ExecError {
    fn db(context: impl Into<String>, source: tokio_postgres::Error) -> ExecError {
        ExecError::Db {
            context: context.into(),
            source,
        }
    }
}

/// What a step needs from the plan.
#[derive(Clone, Debug)]
pub struct StepSettings {
    pub lock_timeout: Duration,
    pub lock_retries: u32,
    pub batch_pause: Duration,
    /// Adapt batch sizes toward this duration; zero keeps them fixed.
    pub target_batch_time: Duration,
    /// The longest a batch may aim to take (see [`pace`]); `None`: no limit.
    pub max_app_wait: Option<Duration>,
    /// Sleep after each batch in proportion to the application's load (see [`pace`]).
    pub yield_to_load: f64,
    /// The database-health limits a backfill waits on (before the operator's live
    /// overrides, read from the state tables before every batch).
    pub health: crate::health::Limits,
    /// Who runs the command, for the backfill's wait events.
    pub actor: String,
}

impl Default for StepSettings {
    fn default() -> Self {
        let plan = crate::plan::Settings::default();
        StepSettings {
            lock_timeout: plan.lock_timeout,
            lock_retries: plan.lock_retries,
            batch_pause: plan.backfill.pause,
            target_batch_time: plan.backfill.target_batch_time,
            max_app_wait: plan.backfill.max_app_wait,
            yield_to_load: plan.backfill.yield_to_load,
            health: crate::health::Limits::default(),
            actor: "pgphase".into(),
        }
    }
}

pub use crate::state::checkpoint::CheckpointKey;

/// Runs one step on `work`; `observer` hears about retries and progress.
pub async fn run_step(
    work: &mut Client,
    step: &Step,
    settings: &StepSettings,
    checkpoint: &CheckpointKey,
    observer: &dyn Observer,
) -> Result<StepOutcome, ExecError> {
    match &step.action {
        Action::Sql { sql, skip_if } => {
            if let Some(q) = skip_if {
                let done: bool = work
                    .query_one(q.as_str(), &[])
                    .await
                    .map_err(|e| ExecError::db("checking whether the step already ran", e))?
                    .get(0);
                if done {
                    return Ok(StepOutcome::Skipped);
                }
            }
            with_lock_retries(work, step, settings, observer, sql, checkpoint).await?;
            Ok(StepOutcome::Ran)
        }
        Action::CreateIndexConcurrently { index, sql } => {
            create_index_concurrently(work, step, index, sql, observer).await
        }
        Action::DropIndexConcurrently { index } => {
            work.batch_execute("SET lock_timeout = 0; SET statement_timeout = 0")
                .await
                .map_err(|e| ExecError::db("setting timeouts", e))?;
            work.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
                .await
                .map_err(|e| ExecError::db(format!("dropping index {index}"), e))?;
            Ok(StepOutcome::Ran)
        }
        Action::Backfill(spec) => backfill::run(work, spec, settings, checkpoint, observer).await,
        Action::Verify { sql, failure, scan } => {
            let count: i64 = match scan {
                Some(scan) => scan::count(work, scan, settings, observer).await?,
                None => work
                    .query_one(sql.trim_end_matches(';'), &[])
                    .await
                    .map_err(|e| ExecError::db("verifying", e))?
                    .get(0),
            };
            if count > 0 {
                Err(ExecError::Verify {
                    count,
                    what: failure.clone(),
                })
            } else {
                Ok(StepOutcome::Verified)
            }
        }
    }
}

/// Runs `sql` in one transaction under `SET LOCAL lock_timeout`; on a lock timeout or
/// deadlock rolls back, reports who holds the table, waits a jittered, growing delay and
/// tries again, up to `lock_retries` attempts.
async fn with_lock_retries(
    work: &mut Client,
    step: &Step,
    settings: &StepSettings,
    observer: &dyn Observer,
    sql: &str,
    checkpoint: &CheckpointKey,
) -> Result<(), ExecError> {
    let blocking = step.lock.blocks_application();
    let timeout_ms = if blocking {
        settings.lock_timeout.as_millis().max(1)
    } else {
        0
    };
    let max = if blocking {
        settings.lock_retries.max(1)
    } else {
        1
    };
    let mut last_blockers = Vec::new();
    for attempt in 1..=max {
        let tx = work
            .transaction()
            .await
            .map_err(|e| ExecError::db("beginning a transaction", e))?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = 0",
            quote_literal(&format!("{timeout_ms}ms"))
        ))
        .await
        .map_err(|e| ExecError::db("setting lock_timeout", e))?;
        match tx.batch_execute(sql).await {
            Ok(()) => {
                checkpoint
                    .record_step_done(&tx)
                    .await
                    .map_err(|e| ExecError::db("recording the step done", e))?;
                tx.commit()
                    .await
                    .map_err(|e| ExecError::db("committing", e))?;
                return Ok(());
            }
            Err(e) if is_lock_conflict(&e) => {
                drop(tx); // rolls back
                let blockers = match &step.table {
                    Some(t) => blockers(work, t).await,
                    None => Vec::new(),
                };
                last_blockers = blockers.clone();
                if attempt == max {
                    break;
                }
                let wait = backoff(attempt);
                observer.lock_retry(
                    step,
                    &LockRetry {
                        attempt,
                        max_attempts: max,
                        wait,
                        blockers,
                    },
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(ExecError::db(step.description.clone(), e)),
        }
    }
    Err(ExecError::LockTimeout {
        attempts: max,
        lock: step.lock,
        table: step
            .table
            .as_ref()
            .map(|t| t.display_short())
            .unwrap_or_default(),
        timeout: settings.lock_timeout,
        blockers: if last_blockers.is_empty() {
            String::new()
        } else {
            format!(
                "; blocked by {}",
                last_blockers
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    })
}

pub(crate) fn is_lock_conflict(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// 100 ms doubling to 5 s, plus up to 50 % jitter so competing retries spread out.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(6))
        .min(5_000);
    let jitter = rand::thread_rng().gen_range(0..=base / 2);
    Duration::from_millis(base + jitter)
}

/// Sessions holding a granted lock on the table (other than our own connection).
async fn blockers(work: &Client, table: &QualifiedName) -> Vec<Blocker> {
    // Without pg_read_all_stats, other roles' sessions show NULL state and times: say
    // so instead of a made-up "open 0.0s".
    let sql = "SELECT a.pid, coalesce(a.application_name, ''), a.state,
                      extract(epoch FROM now() - a.xact_start)::float8,
                      left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80)
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'relation' AND l.granted AND l.relation = to_regclass($1)
                  AND l.pid <> pg_backend_pid()
                ORDER BY a.xact_start NULLS LAST LIMIT 5";
    match work.query(sql, &[&table.to_string()]).await {
        Ok(rows) => rows
            .iter()
            .map(|r| Blocker {
                pid: r.get(0),
                application_name: r.get(1),
                state: r.get(2),
                xact_age_secs: r.get(3),
                query: r.get(4),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The sessions that keep backend `pid` waiting for a lock, whatever the lock (a
/// table, a row, or an older transaction's virtual xid, which CREATE INDEX
/// CONCURRENTLY waits for), with what it waits on (`wait_event`), if anything does.
pub async fn blockers_of(
    c: &Client,
    pid: i32,
) -> Result<(Option<String>, Vec<Blocker>), tokio_postgres::Error> {
    let waiting: Option<String> = c
        .query_opt(
            "SELECT wait_event FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
            &[&pid],
        )
        .await?
        .and_then(|r| r.get(0));
    if waiting.is_none() {
        return Ok((None, Vec::new()));
    }
    let rows = c
        .query(
            "SELECT a.pid, coalesce(a.application_name, ''), a.state,
                    extract(epoch FROM now() - a.xact_start)::float8,
                    left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80)
               FROM unnest(pg_blocking_pids($1)) AS b(pid) JOIN pg_stat_activity a ON a.pid = b.pid
              ORDER BY a.xact_start NULLS LAST LIMIT 5",
            &[&pid],
        )
        .await?;
    Ok((
        waiting,
        rows.iter()
            .map(|r| Blocker {
                pid: r.get(0),
                application_name: r.get(1),
                state: r.get(2),
                xact_age_secs: r.get(3),
                query: r.get(4),
            })
            .collect(),
    ))
}

async fn index_validity(work: &Client, index: &QualifiedName) -> Result<Option<bool>, ExecError> {
    let row = work
        .query_opt(
            "SELECT i.indisvalid AND i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            &[&index.schema.as_str(), &index.name.as_str()],
        )
        .await
        .map_err(|e| ExecError::db("looking up the index", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// CREATE INDEX CONCURRENTLY with recovery: a valid index of that name means done; an
/// invalid one (from an interrupted or failed build) is dropped concurrently and built
/// again. A failed build never leaves its invalid index behind.
async fn create_index_concurrently(
    work: &mut Client,
    step: &Step,
    index: &QualifiedName,
    sql: &str,
    observer: &dyn Observer,
) -> Result<StepOutcome, ExecError> {
    match index_validity(work, index).await? {
        Some(true) => return Ok(StepOutcome::Skipped),
        Some(false) => {
            observer.note(&format!(
                "dropping the invalid index {index} left by an earlier attempt"
            ));
            drop_index_concurrently(work, index).await?;
        }
        None => {}
    }
    // SHARE UPDATE EXCLUSIVE does not block reads or writes: no lock_timeout, and no
    // statement_timeout (the build scans the table twice and waits out older
    // transactions). pgphase's sessions have both off already (pooler::apply_settings);
    // not a RESET afterwards, which would bring back the role's own values.
    work.batch_execute("SET lock_timeout = 0; SET statement_timeout = 0")
        .await
        .map_err(|e| ExecError::db("setting timeouts", e))?;
    let result = work.batch_execute(sql).await;
    match result {
        Ok(()) => Ok(StepOutcome::Ran),
        Err(e) => {
            if index_validity(work, index).await? == Some(false) {
                drop_index_concurrently(work, index).await?;
            }
            Err(ExecError::db(
                format!("{} (the invalid index was removed)", step.description),
                e,
            ))
        }
    }
}

async fn drop_index_concurrently(work: &Client, index: &QualifiedName) -> Result<(), ExecError> {
    // separate statements: several in one simple query form an implicit transaction
    // block, where CONCURRENTLY is refused
    work.batch_execute("SET lock_timeout = 0")
        .await
        .and(work.batch_execute("SET statement_timeout = 0").await)
        .map_err(|e| ExecError::db("setting timeouts", e))?;
    work.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
        .await
        .map_err(|e| ExecError::db(format!("dropping invalid index {index}"), e))
}

/// Measures how long `f` takes.
pub async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}
