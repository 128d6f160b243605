//! The operator commands as library functions: `start`, `advance`, `rollback`.
//!
//! Each one: connect, install/upgrade the `pgphase` schema, take the plan's advisory
//! lock on a dedicated connection, load the state, ask the state machine what to do,
//! then run phases on a separate work connection, recording every step in the event log.

mod advance;
mod phases;
mod rollback;
mod session;
mod start;

pub use crate::outcome::Outcome;
pub use advance::{advance, advance_with, AdvanceOptions};
pub use rollback::{rollback, rollback_to};
pub use start::start;

use std::sync::Arc;
use std::time::Instant;
use tokio_postgres::Client;

use crate::catalog::Catalog;
use crate::conn::ConnInfo;
use crate::error::CmdError;
use crate::exec::{self, CheckpointKey, Observer, StepOutcome, StepSettings};
use crate::plan::{short_checksum, PlanFile};
use crate::program::{Phase, Program};
use crate::recipe::{self, Knowledge};
use crate::state::machine::{
    check_gate, check_rollback_target, decide, rollback_target, Command, Decision, GateCheck,
    PhaseStatus, PlanStatus, Refusal, RollbackCheck, BEFORE_THE_PLAN,
};
use crate::state::store::{self, Event, EventKind, StoredPlan};
use session::{guarded, run_step_reporting_waits, Locked, StepFailed, WaitReport};

/// Asked before destructive phases; returns whether to go on.
pub type Confirm = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Everything a command needs besides its arguments.
#[derive(Clone)]
pub struct Session {
    pub conn: ConnInfo,
    pub actor: String,
    pub observer: Arc<dyn Observer>,
    pub confirm: Confirm,
    /// Fault injection for tests: `PHASE.STEP` (1-based, e.g. `backfill.2`, or
    /// `rollback-expand.1` for undo steps) fails that step before it runs; with a `kill:` prefix the process kills itself with SIGKILL
    /// there instead, with `term:` / `int:` it sends itself SIGTERM / SIGINT there and
    /// waits to be stopped. Set from `PGPHASE_FAILPOINT` by the CLI.
    pub failpoint: Option<String>,
}

impl Session {
    /// Whether the failpoint is set on this step; kills the process for `kill:` points
    /// and waits a second for `pause:` points (to hold the plan's lock in tests).
    async fn failpoint_hit(&self, phase: &str, step: usize) -> bool {
        let Some(fp) = &self.failpoint else {
            return false;
        };
        let here = format!("{phase}.{}", step + 1);
        if fp.strip_prefix("pause:") == Some(here.as_str()) {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            return false;
        }
        if fp.strip_prefix("kill:") == Some(here.as_str()) {
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        for (prefix, signal) in [("term:", libc::SIGTERM), ("int:", libc::SIGINT)] {
            if fp.strip_prefix(prefix) == Some(here.as_str()) {
                // SAFETY: as above.
                unsafe {
                    libc::kill(libc::getpid(), signal);
                }
                // as if the signal came right before the step: the runner stops here
                std::future::pending::<()>().await;
            }
        }
        *fp == here
    }
}

/// Forwards executor events to the session's observer and keeps the lock retries, so
/// the runner can write them to the event log.
struct Recording {
    inner: Arc<dyn Observer>,
    retries: std::sync::Mutex<Vec<String>>,
}

impl Recording {
    fn new(inner: Arc<dyn Observer>) -> Recording {
        Recording {
            inner,
            retries: std::sync::Mutex::new(Vec::new()),
        }
    }
    fn take_retries(&self) -> Vec<String> {
        std::mem::take(&mut *self.retries.lock().unwrap())
    }
}

impl Observer for Recording {
    fn step_started(&self, phase: &str, index: usize, total: usize, step: &crate::program::Step) {
        self.inner.step_started(phase, index, total, step)
    }
    fn step_finished(
        &self,
        phase: &str,
        step: &crate::program::Step,
        outcome: &StepOutcome,
        elapsed: std::time::Duration,
    ) {
        self.inner.step_finished(phase, step, outcome, elapsed)
    }
    fn lock_retry(&self, step: &crate::program::Step, retry: &exec::LockRetry) {
        let who: Vec<String> = retry.blockers.iter().map(|b| b.to_string()).collect();
        self.retries.lock().unwrap().push(format!(
            "lock_timeout waiting for {} on {} (attempt {}/{}), blocked by {}; retrying in {} ms",
            step.lock,
            step.table
                .as_ref()
                .map(|t| t.display_short())
                .unwrap_or_default(),
            retry.attempt,
            retry.max_attempts,
            if who.is_empty() {
                "another session".to_string()
            } else {
                who.join(", ")
            },
            retry.wait.as_millis()
        ));
        self.inner.lock_retry(step, retry)
    }
    fn backfill_started(&self, table: &crate::sql::QualifiedName, done: i64, total: Option<i64>) {
        self.inner.backfill_started(table, done, total)
    }
    fn backfill_progress(&self, done: i64, total: Option<i64>, rows_per_sec: f64) {
        self.inner.backfill_progress(done, total, rows_per_sec)
    }
    fn backfill_finished(&self, done: i64, elapsed: std::time::Duration) {
        self.inner.backfill_finished(done, elapsed)
    }
    fn note(&self, message: &str) {
        self.inner.note(message)
    }
}

/// Expands a plan file against the live catalog (or offline when `conn` is None).
pub async fn expand(conn: Option<&ConnInfo>, file: &PlanFile) -> Result<Program, CmdError> {
    let mut program = expand_unchecked(conn, file).await?;
    let checked = crate::evidence::checked_names(&program);
    if !checked.is_empty() {
        let what = match program.settings.contract.evidence {
            crate::plan::EvidenceMode::Warn => "reports and records, without refusing,",
            _ => "refuses while there are",
        };
        program.notes.push(format!(
            "evidence before contract: `phase advance` into contract {what} statements (pg_stat_statements), sessions or index/table usage that still name {} since the drain gate was reached (`pgphase check-drain {}` runs the same check; settings.contract.evidence: {})",
            checked.join(", "),
            program.plan,
            program.settings.contract.evidence.as_str()
        ));
    }
    Ok(program)
}

async fn expand_unchecked(conn: Option<&ConnInfo>, file: &PlanFile) -> Result<Program, CmdError> {
    match conn {
        None => expand_with(None, file),
        Some(c) => {
            let client = c.connect().await?;
            let cat = load_catalog(&client, file).await?;
            let mut program = expand_with(Some(&cat), file)?;
            // What the check before contract will not see on this database.
            if let Some(note) = crate::evidence::plan_note(&client, &program.contract_drops).await?
            {
                program.notes.push(note);
            }
            Ok(program)
        }
    }
}

async fn load_catalog(client: &Client, file: &PlanFile) -> Result<Catalog, CmdError> {
    load_catalog_of(client, &file.plan).await
}

/// The catalog of everything `plan` touches: its tables (an index's by lookup),
/// relations and types.
async fn load_catalog_of(client: &Client, plan: &crate::plan::Plan) -> Result<Catalog, CmdError> {
    Catalog::load_needed(client, &needs_of(plan)).await
}

/// What `plan`'s changes need read from the catalog.
fn needs_of(plan: &crate::plan::Plan) -> crate::catalog::Needs {
    let all = |f: fn(&crate::plan::Change) -> Vec<crate::sql::QualifiedName>| {
        plan.changes.iter().flat_map(|c| f(&c.value)).collect()
    };
    crate::catalog::Needs {
        tables: all(recipe::tables_of),
        indexes: all(recipe::indexes_of),
        relations: all(recipe::relations_of),
        types: all(recipe::types_of),
        column_types: plan
            .changes
            .iter()
            .flat_map(|c| recipe::column_types_of(&c.value))
            .collect(),
    }
}

fn expand_with(cat: Option<&Catalog>, file: &PlanFile) -> Result<Program, CmdError> {
    let knowledge = match cat {
        Some(c) => Knowledge::Live(c),
        None => Knowledge::Offline,
    };
    let program = recipe::expand(&file.plan, knowledge).map_err(|problems| {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{}:{}: {}",
                    file.path.display(),
                    p.pos.line,
                    p.pos.column,
                    p.message
                )
            })
            .collect();
        CmdError::Invalid(format!(
            "{}\nthe plan does not fit the database; nothing was changed",
            lines.join("\n")
        ))
    })?;
    check_fences_fit(&program, file)?;
    Ok(program)
}

/// Every fence must name a phase of the program that ends in a gate with a phase after it.
fn check_fences_fit(program: &Program, file: &PlanFile) -> Result<(), CmdError> {
    let gated: Vec<&str> = program
        .phases
        .iter()
        .take(program.phases.len().saturating_sub(1))
        .filter(|p| p.gate.is_some())
        .map(|p| p.kind.as_str())
        .collect();
    for f in &file.plan.fences {
        let at = &f.value.at_gate_after;
        if !gated.contains(&at.value.as_str()) {
            return Err(CmdError::Invalid(format!(
                "{}:{}:{}: this plan has no deploy gate after phase `{}`; its gates follow: {}",
                file.path.display(),
                at.pos.line,
                at.pos.column,
                at.value,
                if gated.is_empty() {
                    "none".to_string()
                } else {
                    gated.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// A stored plan's file, parsed again as it was started: a plan a fleet started on a
/// schema-per-tenant target is stored as `PLAN@SCHEMA`, its unqualified names in SCHEMA
/// (see `crate::fleet`), whichever command reads it back.
fn parse_stored(stored: &StoredPlan) -> Result<crate::plan::Plan, crate::plan::PlanError> {
    let path = stored
        .source_path
        .clone()
        .unwrap_or_else(|| format!("{}.yaml", stored.name));
    match stored.name.split_once('@') {
        Some((name, schema)) => {
            crate::sql::with_schema(schema, || crate::plan::parse(&stored.source, &path, name))
        }
        None => crate::plan::parse(&stored.source, &path, &stored.name),
    }
}

/// The deploy fences of a stored plan, read back from the plan file it was started with.
pub fn stored_fences(stored: &StoredPlan) -> Result<Vec<crate::plan::Fence>, CmdError> {
    parse_stored(stored)
        .map(|p| p.fences.into_iter().map(|f| f.value).collect())
        .map_err(|e| {
            CmdError::Failed(anyhow::anyhow!(
                "cannot read the deploy fences of the stored plan `{}`: {e}",
                stored.name
            ))
        })
}

fn settings_of(program: &Program, actor: &str) -> StepSettings {
    let b = &program.settings.backfill;
    StepSettings {
        health: crate::health::Limits {
            max_replica_lag: b.max_replica_lag,
            max_slot_lag: b.max_slot_lag,
            max_active_sessions: b.max_active_sessions,
        },
        actor: actor.to_string(),
        lock_timeout: program.settings.lock_timeout,
        lock_retries: program.settings.lock_retries,
        batch_pause: program.settings.backfill.pause,
        target_batch_time: program.settings.backfill.target_batch_time,
        max_app_wait: b.max_app_wait,
        yield_to_load: b.yield_to_load,
    }
}

fn checksum_refusal(stored: &StoredPlan, file: &PlanFile) -> Option<Refusal> {
    if stored.checksum == file.checksum {
        return None;
    }
    if let Some(other) = started_from_another_file(stored, file) {
        return Some(Refusal {
            reason: format!(
                "two plan files share the name `{}`: the plan of that name was started from {other} ({}), and {} ({}) is another file. A plan's name is unique per database (it defaults to the file name without .yaml)",
                stored.name,
                short_checksum(&stored.checksum),
                file.path.display(),
                short_checksum(&file.checksum)
            ),
            fix: format!(
                "give {} a `name:` of its own (or rename the file); if it is meant to replace `{}`, roll that plan back first (`pgphase phase rollback {}`)",
                file.path.display(),
                stored.name,
                stored.name
            ),
        });
    }
    Some(Refusal {
        reason: format!(
            "{} changed since plan `{}` started: started with {}, the file is now {}",
            file.path.display(),
            stored.name,
            short_checksum(&stored.checksum),
            short_checksum(&file.checksum)
        ),
        fix: format!(
            "restore the file as it was started (e.g. `git checkout` it); to apply the edit, `pgphase phase rollback {}` then `pgphase start` the edited file (or write a new plan)",
            stored.name
        ),
    })
}

/// The file a plan was started from, when `file` is another one: both are here and
/// are different files, or the recorded one is not here and had another file name.
fn started_from_another_file(stored: &StoredPlan, file: &PlanFile) -> Option<String> {
    let recorded = stored.source_path.as_deref()?;
    let here = std::fs::canonicalize(&file.path).ok();
    let there = std::fs::canonicalize(recorded).ok();
    let other = match (here, there) {
        (Some(a), Some(b)) => a != b,
        _ => std::path::Path::new(recorded).file_name() != file.path.file_name(),
    };
    other.then(|| recorded.to_string())
}

/// Records how a command ended in the plan's event log (when the plan exists): a
/// refusal, so the audit trail shows attempts too, or the command's outcome with its
/// whole duration. Best effort: the result is returned either way.
async fn audit(
    s: &Session,
    plan: &str,
    command: Command,
    deployed: Option<&str>,
    t0: Instant,
    result: Result<Outcome, CmdError>,
) -> Result<Outcome, CmdError> {
    let (kind, message, duration) = match &result {
        // recorded by the runner, under the plan's lock
        Err(CmdError::Interrupted(_)) => return result,
        // nothing may be written through a transaction pooler
        Err(e) if crate::pooler::is_pooler_refusal(e) => return result,
        Err(CmdError::Refused(r)) => (
            EventKind::Refused,
            format!("{} refused: {}", command.as_str(), r.reason),
            None,
        ),
        Err(CmdError::Invalid(_)) => return result,
        Err(CmdError::Failed(e)) => (
            EventKind::Command,
            format!(
                "{} stopped by an error: {}",
                command.as_str(),
                e.to_string().lines().next().unwrap_or_default()
            ),
            Some(t0.elapsed().as_millis() as i64),
        ),
        Ok(o) => (
            EventKind::Command,
            format!(
                "{} finished: {}",
                command.as_str(),
                match o {
                    Outcome::AwaitingDeploy { phase, .. } =>
                        format!("waiting at the deploy gate after {phase}"),
                    Outcome::Completed => "plan completed".into(),
                    Outcome::RolledBack => "rolled back".into(),
                    Outcome::RolledBackUnchecked => "rolled back (schema not compared)".into(),
                    Outcome::RolledBackToGate { phase, .. } =>
                        format!("rolled back to the deploy gate after {phase}"),
                    Outcome::Underway { status, phase, .. } => format!(
                        "nothing to do: the plan is past its first gate, {status} in phase {phase}"
                    ),
                }
            ),
            Some(t0.elapsed().as_millis() as i64),
        ),
    };
    if let Ok(c) = s.conn.connect().await {
        let known = store::schema_exists(&c).await.unwrap_or(false)
            && store::load_plan(&c, plan).await.ok().flatten().is_some();
        if known {
            let _ = store::record(
                &c,
                plan,
                &s.actor,
                Event {
                    kind,
                    message,
                    deployed_ref: deployed,
                    duration_ms: duration,
                    ..Default::default()
                },
            )
            .await;
        }
    }
    result
}
