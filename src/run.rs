//! The operator commands as library functions: `start`, `advance`, `rollback`.
//!
//! Each one: connect, install/upgrade the `pgphase` schema, take the plan's advisory
//! lock on a dedicated connection, load the state, ask the state machine what to do,
//! then run phases on a separate work connection, recording every step in the event log.

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
use crate::runner::{guarded, run_step_reporting_waits, Locked, StepFailed, WaitReport};
use crate::state::machine::{
    check_gate, check_rollback_target, decide, rollback_target, Command, Decision, GateCheck,
    PhaseStatus, PlanStatus, Refusal, RollbackCheck, BEFORE_THE_PLAN,
};
use crate::state::store::{self, Event, StoredPlan};

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

/// Where a command left the plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    AwaitingDeploy {
        phase: String,
        gate: String,
    },
    Completed,
    RolledBack,
    /// A rollback went back to the deploy gate after `phase` and reopened it: the
    /// application deployed there (`deployed`) must be rolled back before the next
    /// rollback undoes the phases before it.
    RolledBackToGate {
        phase: String,
        deployed: Option<String>,
        /// Where the next rollback goes back to (its `--to`): an earlier gate, or
        /// `start`.
        next_to: String,
    },
    /// A full rollback of a plan started by a pgphase that took no catalog snapshot:
    /// every undo step ran, but the schema could not be compared with before.
    RolledBackUnchecked,
    /// `start` again with the same file, once the plan is past its first deploy gate
    /// and stopped (failed or interrupted) in `phase`: nothing to do for `start`.
    Underway {
        status: String,
        phase: String,
        next_command: String,
    },
}

/// Expands a plan file against the live catalog (or offline when `conn` is None).
pub async fn expand(conn: Option<&ConnInfo>, file: &PlanFile) -> Result<Program, CmdError> {
    match conn {
        None => expand_with(None, file),
        Some(c) => {
            let client = c.connect().await?;
            let cat = load_catalog(&client, file).await?;
            expand_with(Some(&cat), file)
        }
    }
}

async fn load_catalog(client: &Client, file: &PlanFile) -> Result<Catalog, CmdError> {
    load_catalog_of(client, &file.plan).await
}

/// The catalog of everything `plan` touches: its tables (an index's by lookup),
/// relations and types.
async fn load_catalog_of(client: &Client, plan: &crate::plan::Plan) -> Result<Catalog, CmdError> {
    let mut tables: Vec<_> = plan
        .changes
        .iter()
        .flat_map(|c| recipe::tables_of(&c.value))
        .collect();
    for index in plan
        .changes
        .iter()
        .flat_map(|c| recipe::indexes_of(&c.value))
    {
        let table = client
            .query_opt(
                "SELECT tn.nspname::text, t.relname::text FROM pg_index i
                   JOIN pg_class ic ON ic.oid = i.indexrelid
                   JOIN pg_namespace n ON n.oid = ic.relnamespace
                   JOIN pg_class t ON t.oid = i.indrelid
                   JOIN pg_namespace tn ON tn.oid = t.relnamespace
                  WHERE n.nspname = $1 AND ic.relname = $2",
                &[&index.schema.as_str(), &index.name.as_str()],
            )
            .await?;
        if let Some(r) = table {
            tables.push(crate::sql::QualifiedName::new(
                r.get::<_, String>(0),
                r.get::<_, String>(1),
            ));
        }
    }
    tables.sort();
    tables.dedup();
    let mut cat = Catalog::load(client, &tables).await?;
    let mut relations: Vec<_> = plan
        .changes
        .iter()
        .flat_map(|c| recipe::relations_of(&c.value))
        .collect();
    relations.sort();
    relations.dedup();
    cat.load_relations(client, &relations).await?;
    let mut types: Vec<_> = plan
        .changes
        .iter()
        .flat_map(|c| recipe::types_of(&c.value))
        .collect();
    types.sort();
    types.dedup();
    cat.load_types(client, &types).await?;
    let mut column_types: Vec<_> = plan
        .changes
        .iter()
        .flat_map(|c| recipe::column_types_of(&c.value))
        .collect();
    column_types.sort();
    column_types.dedup();
    cat.load_type_nullability(client, &column_types).await?;
    if cat.major_version() < 13 {
        return Err(CmdError::Invalid(format!(
            "the server runs PostgreSQL {}; pgphase supports 13 and later",
            cat.major_version()
        )));
    }
    Ok(cat)
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

/// The deploy fences of a stored plan, read back from the plan file it was started with.
pub fn stored_fences(stored: &StoredPlan) -> Result<Vec<crate::plan::Fence>, CmdError> {
    let path = stored
        .source_path
        .clone()
        .unwrap_or_else(|| format!("{}.yaml", stored.name));
    crate::plan::parse(&stored.source, &path, &stored.name)
        .map(|p| p.fences.into_iter().map(|f| f.value).collect())
        .map_err(|e| {
            CmdError::Failed(anyhow::anyhow!(
                "cannot read the deploy fences of the stored plan `{}`: {e}",
                stored.name
            ))
        })
}

fn settings_of(program: &Program) -> StepSettings {
    StepSettings {
        lock_timeout: program.settings.lock_timeout,
        lock_retries: program.settings.lock_retries,
        batch_pause: program.settings.backfill.pause,
        target_batch_time: program.settings.backfill.target_batch_time,
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

/// `pgphase start FILE`: records the plan and runs phases up to the first gate;
/// resumes a plan that stopped before its first confirmed gate.
pub async fn start(s: &Session, file: &PlanFile) -> Result<Outcome, CmdError> {
    let name = file.plan.name.clone();
    // A plan in a depends_on cycle with the plans beside it can never start in order.
    if let Some(e) = crate::plan::set::cycle_through(file) {
        return Err(CmdError::Invalid(format!("{e}\nnothing was changed")));
    }
    let t0 = Instant::now();
    let result = async {
        let mut l = Locked::acquire(s, &name, Command::Start).await?;
        l.resume = format!("pgphase start {}", file.path.display());
        let result = start_locked(s, &mut l, file).await;
        l.release().await;
        result
    }
    .await;
    audit(s, &name, Command::Start, None, t0, result).await
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
            "refused",
            format!("{} refused: {}", command.as_str(), r.reason),
            None,
        ),
        Err(CmdError::Invalid(_)) => return result,
        Err(CmdError::Failed(e)) => (
            "command",
            format!(
                "{} stopped by an error: {}",
                command.as_str(),
                e.to_string().lines().next().unwrap_or_default()
            ),
            Some(t0.elapsed().as_millis() as i64),
        ),
        Ok(o) => (
            "command",
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

/// Refuses, before anything runs, when this role could not finish the program: it must
/// own (or inherit the owner of) every existing table a DDL step changes, and have
/// CREATE on the schema of every index it builds and table or view it creates.
/// Without this a plan would stop halfway, at the first statement that needs it.
async fn check_privileges(client: &Client, program: &Program) -> Result<(), CmdError> {
    use crate::program::Action;
    use std::collections::BTreeSet;
    let mut tables = BTreeSet::new();
    let mut schemas = BTreeSet::new();
    for st in program
        .phases
        .iter()
        .flat_map(|p| p.steps.iter().chain(&p.rollback))
    {
        match &st.action {
            Action::CreateIndexConcurrently { index, .. } => {
                schemas.insert(index.schema.as_str().to_string());
            }
            Action::Sql { .. } | Action::DropIndexConcurrently { .. } => {}
            Action::Backfill(_) | Action::Verify { .. } => continue,
        }
        if let Some(t) = &st.table {
            tables.insert(t.clone());
        }
    }
    let mut missing = Vec::new();
    let mut fixes = Vec::new();
    let role: String = client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0);
    for t in &tables {
        let row = client
            .query_opt(
                "SELECT pg_get_userbyid(c.relowner)::text, pg_has_role(c.relowner, 'USAGE')
                   FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&t.to_string()],
            )
            .await?;
        match row {
            Some(r) if !r.get::<_, bool>(1) => {
                let owner: String = r.get(0);
                missing.push(format!(
                    "`{role}` does not own {t} (its owner is `{owner}`)"
                ));
                fixes.push(format!(
                    "GRANT {} TO {};",
                    crate::sql::quote_ident(&owner),
                    crate::sql::quote_ident(&role)
                ));
            }
            Some(_) => {}
            // created by the plan: needs CREATE on its schema
            None => {
                schemas.insert(t.schema.as_str().to_string());
            }
        }
    }
    for schema in &schemas {
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[schema],
            )
            .await?
            .get(0);
        if !exists {
            continue; // the plan's own refusal says so
        }
        let ok: bool = client
            .query_one("SELECT has_schema_privilege($1, 'CREATE')", &[schema])
            .await?
            .get(0);
        if !ok {
            missing.push(format!(
                "`{role}` has no CREATE on schema {} (index builds and new tables or views need it)",
                crate::sql::quote_ident(schema)
            ));
            fixes.push(format!(
                "GRANT CREATE ON SCHEMA {} TO {};",
                crate::sql::quote_ident(schema),
                crate::sql::quote_ident(&role)
            ));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(CmdError::refused(
        format!(
            "this role could not finish the plan, so nothing was started: {}",
            missing.join("; ")
        ),
        format!(
            "run pgphase as the tables' owner, or have an administrator run: {}",
            fixes.join(" ")
        ),
    ))
}

async fn start_locked(s: &Session, l: &mut Locked, file: &PlanFile) -> Result<Outcome, CmdError> {
    let name = &file.plan.name;
    let stored = store::load_plan(&*l.control, name).await?;
    if let Some(st) = &stored {
        if st.status != PlanStatus::RolledBack {
            if let Some(r) = checksum_refusal(st, file) {
                return Err(r.into());
            }
            if let Some(out) = already_started(s, st) {
                return Ok(out);
            }
        }
    }
    check_dependencies(&l.control, &file.plan.depends_on, name).await?;
    let decision = decide(
        stored.as_ref().map(|p| p.state()).as_ref(),
        Command::Start,
        name,
    )?;
    let Decision::Run { from, restart, .. } = decision else {
        unreachable!("start never rolls back")
    };
    let stored = match stored {
        Some(st) if !restart => st,
        prior => {
            // New (or restarted after rollback): expand against the live catalog now.
            let cat = load_catalog(&l.work, file).await?;
            let program = expand_with(Some(&cat), file)?;
            check_privileges(&l.work, &program).await?;
            crate::catalog_guard::check_overlap(&l.control, name, &program).await?;
            let path = file.path.display().to_string();
            let before = serde_json::to_value(crate::catalog::compare::restorable(&cat))
                .map_err(anyhow::Error::from)?;
            let new = store::NewPlan {
                name,
                checksum: &file.checksum,
                source_path: Some(&path),
                source: &file.source,
                program: &program,
                actor: &s.actor,
                schema_before: &before,
            };
            if let Err(r) =
                store::create_plan(&l.control, &new, prior.as_ref().map(|p| p.revision)).await?
            {
                return Err(r.into());
            }
            store::record(
                &*l.control,
                name,
                &s.actor,
                Event {
                    kind: "command",
                    message: format!(
                        "start {} ({}){}",
                        path,
                        short_checksum(&file.checksum),
                        if restart { ", after rollback" } else { "" }
                    ),
                    ..Default::default()
                },
            )
            .await?;
            store::load_plan(&*l.control, name).await?.ok_or_else(|| {
                anyhow::anyhow!(
                    "plan `{name}` vanished from pgphase.plans right after it was recorded"
                )
            })?
        }
    };
    check_contract_ahead(l, &stored, from).await?;
    if from > 0 {
        store::record(
            &*l.control,
            name,
            &s.actor,
            Event {
                kind: "command",
                message: format!(
                    "start: resuming at phase {}",
                    stored.program.phases[from].kind
                ),
                ..Default::default()
            },
        )
        .await?;
    }
    run_phases(s, l, stored, from, None).await
}

/// `start` again with the file a plan was started from, once the plan reached its
/// first deploy gate (or moved past it): a retried pipeline job. Changes nothing and
/// reports where the plan stands.
fn already_started(s: &Session, st: &StoredPlan) -> Option<Outcome> {
    let state = st.state();
    let last = state.phases.len().saturating_sub(1);
    let first_gate = state.phases[..last].iter().position(|p| p.has_gate);
    let reached = st.status == PlanStatus::Completed
        || first_gate.is_some_and(|g| state.phases[g].status == PhaseStatus::Completed);
    if !reached || matches!(st.status, PlanStatus::RollingBack | PlanStatus::RolledBack) {
        return None;
    }
    s.observer.note(&format!(
        "plan `{}` was started with this file by {} at {} and has reached its first deploy gate: nothing for `start` to do",
        st.name,
        st.started_by,
        st.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    if st.status == PlanStatus::Completed {
        return Some(Outcome::Completed);
    }
    if let (PlanStatus::AwaitingDeploy, Some(g)) = (st.status, state.open_gate()) {
        return Some(Outcome::AwaitingDeploy {
            phase: st.program.phases[g].kind.to_string(),
            gate: st.program.phases[g]
                .gate
                .as_ref()
                .map(|g| g.text())
                .unwrap_or_default(),
        });
    }
    let phase = state
        .next_phase()
        .map(|i| st.program.phases[i].kind.to_string())
        .unwrap_or_default();
    Some(Outcome::Underway {
        status: st.status.as_str().to_string(),
        phase,
        next_command: format!("pgphase phase advance {} --deployed <REF>", st.name),
    })
}

/// Options of `phase advance`.
#[derive(Clone, Debug, Default)]
pub struct AdvanceOptions {
    /// Confirm the gate even while a deploy fence matches connected sessions; the
    /// override and the sessions are recorded in the event log.
    pub force: bool,
    /// `--gate PHASE`: the gate this command means to confirm (the phase it follows).
    /// Refused when the plan waits elsewhere; a no-op when that gate was confirmed
    /// already and the plan moved on, so a retried pipeline job cannot confirm the next.
    pub gate: Option<String>,
}

/// `pgphase phase advance PLAN --deployed REF`: confirms the open gate and runs on.
pub async fn advance(
    s: &Session,
    plan: &str,
    deployed: &str,
    file: Option<&PlanFile>,
) -> Result<Outcome, CmdError> {
    advance_with(s, plan, deployed, file, AdvanceOptions::default()).await
}

/// [`advance`] with options (`--force`).
pub async fn advance_with(
    s: &Session,
    plan: &str,
    deployed: &str,
    file: Option<&PlanFile>,
    opts: AdvanceOptions,
) -> Result<Outcome, CmdError> {
    let t0 = Instant::now();
    if deployed.trim().is_empty() {
        return Err(CmdError::Invalid(
            "--deployed needs the deploy's reference (a version, tag or commit)".into(),
        ));
    }
    let result = async {
        let mut l = Locked::acquire(s, plan, Command::Advance).await?;
        l.resume = format!(
            "pgphase phase advance {plan}{} --deployed {deployed}",
            opts.gate
                .as_ref()
                .map(|g| format!(" --gate {g}"))
                .unwrap_or_default()
        );
        let result = advance_locked(s, &mut l, plan, deployed, file, opts).await;
        l.release().await;
        result
    }
    .await;
    audit(s, plan, Command::Advance, Some(deployed), t0, result).await
}

async fn advance_locked(
    s: &Session,
    l: &mut Locked,
    plan: &str,
    deployed: &str,
    file: Option<&PlanFile>,
    opts: AdvanceOptions,
) -> Result<Outcome, CmdError> {
    let stored = store::load_plan(&*l.control, plan).await?;
    if let Some(st) = &stored {
        // Given only the name, check the file the plan was started from, when it is here.
        let found;
        let file = match file {
            Some(f) => Some(f),
            None => {
                found = st
                    .source_path
                    .as_deref()
                    .map(std::path::Path::new)
                    .filter(|p| p.is_file())
                    .and_then(|p| PlanFile::load(p).ok())
                    .filter(|f| f.plan.name == st.name);
                found.as_ref()
            }
        };
        if let Some(r) = file.and_then(|f| checksum_refusal(st, f)) {
            return Err(r.into());
        }
    }
    if let (Some(phase), Some(st)) = (&opts.gate, &stored) {
        if check_gate(&st.state(), phase, plan)? == GateCheck::AlreadyConfirmed {
            return already_confirmed(s, st, phase);
        }
    }
    let decision = decide(
        stored.as_ref().map(|p| p.state()).as_ref(),
        Command::Advance,
        plan,
    )?;
    let stored = stored.expect("decide refuses unknown plans");
    let Decision::Run {
        from, confirm_gate, ..
    } = decision
    else {
        unreachable!()
    };
    // Deploy fences first, then ask before the point of no return, before recording anything.
    let fence_events = match confirm_gate {
        Some(g) => check_fences(l, &stored, g, opts.force).await?,
        None => Vec::new(),
    };
    let evidence_event = if check_contract_ahead(l, &stored, from).await? {
        crate::evidence::before_contract(&l.control, &stored, opts.force).await?
    } else {
        None
    };
    confirm_destructive(s, &stored.program, from)?;
    if let Some((message, detail)) = evidence_event {
        record_evidence(s, l, &stored, plan, deployed, message, detail).await?;
    }
    for (kind, message, detail) in fence_events {
        if message.contains("OVERRIDDEN") {
            s.observer.note(&message);
        }
        store::record(
            &*l.control,
            plan,
            &s.actor,
            Event {
                phase: Some(kind.as_str()),
                kind: "fence",
                message,
                deployed_ref: Some(deployed),
                detail: Some(detail),
                ..Default::default()
            },
        )
        .await?;
    }
    if let Some(g) = confirm_gate {
        store::confirm_gate(&*l.control, plan, g, &s.actor, deployed).await?;
        store::record(
            &*l.control,
            plan,
            &s.actor,
            Event {
                phase: Some(stored.program.phases[g].kind.as_str()),
                kind: "gate",
                message: format!(
                    "gate confirmed: {}",
                    stored.program.phases[g]
                        .gate
                        .as_ref()
                        .map(|g| g.text())
                        .unwrap_or_default()
                ),
                deployed_ref: Some(deployed),
                ..Default::default()
            },
        )
        .await?;
    } else {
        store::record(
            &*l.control,
            plan,
            &s.actor,
            Event {
                kind: "command",
                message: format!(
                    "phase advance: resuming at phase {}",
                    stored.program.phases[from].kind
                ),
                deployed_ref: Some(deployed),
                ..Default::default()
            },
        )
        .await?;
    }
    let stored = store::load_plan(&*l.control, plan)
        .await?
        .ok_or_else(|| anyhow::anyhow!("plan `{plan}` vanished from pgphase.plans"))?;
    run_phases(s, l, stored, from, Some(deployed)).await
}

/// A repeated `phase advance --gate PHASE`: that gate was confirmed earlier. Reports
/// where the plan is now and changes nothing.
fn already_confirmed(s: &Session, st: &StoredPlan, phase: &str) -> Result<Outcome, CmdError> {
    let by = st
        .phases
        .iter()
        .find(|p| p.kind == phase)
        .map(|p| {
            format!(
                " by {} (deploy {})",
                p.gate_confirmed_by.as_deref().unwrap_or("?"),
                p.gate_deployed_ref.as_deref().unwrap_or("?")
            )
        })
        .unwrap_or_default();
    s.observer.note(&format!(
        "the gate after `{phase}` was already confirmed{by}; nothing to do"
    ));
    let state = st.state();
    if st.status == PlanStatus::Completed {
        return Ok(Outcome::Completed);
    }
    if let Some(g) = state.open_gate() {
        return Ok(Outcome::AwaitingDeploy {
            phase: st.program.phases[g].kind.to_string(),
            gate: st.program.phases[g]
                .gate
                .as_ref()
                .map(|g| g.text())
                .unwrap_or_default(),
        });
    }
    Err(CmdError::refused(
        format!(
            "the gate after `{phase}` was already confirmed{by}, and plan `{}` has moved on to a later gate and is now `{}`",
            st.name,
            st.status.as_str()
        ),
        format!("see `pgphase status {}`", st.name),
    ))
}

/// How long sessions that are already disconnecting get to leave `pg_stat_activity`
/// before a fence counts them as still connected.
const FENCE_SETTLE: std::time::Duration = std::time::Duration::from_millis(1000);

/// Checks the deploy fences at the gate after phase `g`: refuses while a matching
/// session is connected, unless `force`. Returns the `fence` events to record once the
/// command is confirmed: (phase, message, detail with the sessions).
async fn check_fences(
    l: &Locked,
    stored: &StoredPlan,
    g: usize,
    force: bool,
) -> Result<Vec<(String, String, serde_json::Value)>, CmdError> {
    let kind = stored.program.phases[g].kind.as_str();
    let mut events = Vec::new();
    for fence in stored_fences(stored)?
        .iter()
        .filter(|f| f.at_gate_after.value == kind)
    {
        let pattern = fence.no_application_name_like.value.as_str();
        let mut found = store::fence_stragglers(&*l.control, pattern).await?;
        if !found.is_empty() {
            // a rolling deploy may have just stopped them: give closing sessions a moment
            tokio::time::sleep(FENCE_SETTLE).await;
            found = store::fence_stragglers(&*l.control, pattern).await?;
        }
        let detail = serde_json::json!({
            "at_gate_after": kind, "no_application_name_like": pattern, "sessions": found,
        });
        if found.is_empty() {
            events.push((
                kind.to_string(),
                format!("deploy fence passed: no session has an application_name like '{pattern}'"),
                detail,
            ));
        } else if force {
            events.push((
                kind.to_string(),
                format!(
                    "deploy fence OVERRIDDEN with --force: {} session(s) with an application_name like '{pattern}' still connected: {}",
                    found.len(),
                    found.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ")
                ),
                detail,
            ));
        } else {
            let listing: Vec<String> = found.iter().map(|x| format!("    {x}")).collect();
            return Err(CmdError::refused(
                format!(
                    "deploy fence at the gate after `{kind}`: {} session(s) of this database with an application_name like '{pattern}' are still connected:\n{}",
                    found.len(),
                    listing.join("\n")
                ),
                "drain the old application version (those sessions must disconnect), then re-run this command; `--force` confirms anyway and is recorded in the event log",
            ));
        }
    }
    Ok(events)
}

/// Asks before running a point-of-no-return phase between `from` and the next gate.
fn confirm_destructive(s: &Session, program: &Program, from: usize) -> Result<(), CmdError> {
    for p in phases_until_gate(program, from) {
        if p.point_of_no_return {
            let what: Vec<String> = p.steps.iter().map(|st| st.description.clone()).collect();
            let msg = format!(
                "Phase `{}` is the point of no return: {}. After it, `phase rollback` is no longer possible.",
                p.kind,
                what.join("; ")
            );
            if !(s.confirm)(&msg) {
                return Err(CmdError::refused(
                    "not confirmed: nothing was run",
                    "re-run and confirm, or pass --yes in a pipeline",
                ));
            }
        }
    }
    Ok(())
}

/// When the phases this command would run reach a point of no return not begun yet:
/// re-reads the catalog and refuses (nothing run) if something has come to depend on
/// what that contract drops since the plan started (see `catalog_guard::check_contract`).
async fn check_contract_ahead(
    l: &Locked,
    stored: &StoredPlan,
    from: usize,
) -> Result<bool, CmdError> {
    let ahead = phases_until_gate(&stored.program, from)
        .enumerate()
        .any(|(k, p)| {
            p.point_of_no_return
                && stored
                    .phases
                    .get(from + k)
                    .is_some_and(|ph| ph.status == PhaseStatus::Pending)
        });
    if ahead {
        crate::catalog_guard::check_contract(&l.control, stored).await?;
    }
    Ok(ahead)
}

/// Records the `evidence` event of the check before contract (an override is also told).
async fn record_evidence(
    s: &Session,
    l: &Locked,
    stored: &StoredPlan,
    plan: &str,
    deployed: &str,
    message: String,
    detail: serde_json::Value,
) -> Result<(), CmdError> {
    if message.contains("OVERRIDDEN") {
        s.observer.note(&message);
    }
    let phase = stored
        .state()
        .open_gate()
        .map(|g| stored.program.phases[g].kind.as_str());
    store::record(
        &*l.control,
        plan,
        &s.actor,
        Event {
            phase,
            kind: "evidence",
            message,
            deployed_ref: Some(deployed),
            detail: Some(detail),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

fn phases_until_gate(program: &Program, from: usize) -> impl Iterator<Item = &Phase> {
    let mut stop = false;
    program.phases[from.min(program.phases.len())..]
        .iter()
        .take_while(move |p| {
            if stop {
                return false;
            }
            stop = p.gate.is_some();
            true
        })
}

async fn check_dependencies(
    control: &Client,
    deps: &[crate::plan::At<String>],
    name: &str,
) -> Result<(), CmdError> {
    for dep in deps.iter().map(|d| &d.value) {
        let status: Option<String> = control
            .query_opt("SELECT status FROM pgphase.plans WHERE name = $1", &[dep])
            .await?
            .map(|r| r.get(0));
        if status.as_deref() != Some("completed") {
            return Err(CmdError::refused(
                format!(
                    "plan `{name}` depends on `{dep}`, which is {}",
                    status
                        .map(|s| format!("`{s}`"))
                        .unwrap_or_else(|| "not started in this database".into())
                ),
                format!("complete `{dep}` first (`pgphase status {dep}`)"),
            ));
        }
    }
    Ok(())
}

/// Runs phases from `from` until a gate or the end; stops at once, cancelling the
/// running statement, on a signal or when the plan's lock is lost.
async fn run_phases(
    s: &Session,
    l: &mut Locked,
    stored: StoredPlan,
    from: usize,
    deployed: Option<&str>,
) -> Result<Outcome, CmdError> {
    // A start may run straight into a point of no return when a plan has no gate before it.
    if from == 0
        || stored
            .phases
            .get(from)
            .is_some_and(|p| p.status == PhaseStatus::Pending)
    {
        confirm_destructive(s, &stored.program, from)?;
    }
    let lock = l.lock_stop();
    match guarded(&lock, run_phases_from(s, l, stored, from, deployed)).await {
        Ok(r) => r.map_err(|e| l.locate(e)),
        Err(reason) => Err(l.stopped(s, reason).await),
    }
}

async fn run_phases_from(
    s: &Session,
    l: &mut Locked,
    mut stored: StoredPlan,
    from: usize,
    deployed: Option<&str>,
) -> Result<Outcome, CmdError> {
    let name = stored.name.clone();
    let program = stored.program.clone();
    let settings = settings_of(&program);
    let obs = Recording::new(s.observer.clone());
    for i in from..program.phases.len() {
        let phase = &program.phases[i];
        let kind = phase.kind.as_str();
        stored.revision = store::set_plan_status(
            &*l.control,
            &name,
            stored.revision,
            PlanStatus::Running,
            Some(i as i32),
            None,
        )
        .await?;
        store::set_phase(&*l.control, &name, i, PhaseStatus::Running).await?;
        store::record(
            &*l.control,
            &name,
            &s.actor,
            Event {
                phase: Some(kind),
                kind: "phase",
                message: format!("phase {kind} started"),
                deployed_ref: deployed,
                ..Default::default()
            },
        )
        .await?;
        let phase_start = Instant::now();
        let done_before = stored.phases[i].steps_done.max(0) as usize;
        for (j, step) in phase.steps.iter().enumerate().skip(done_before) {
            s.observer.step_started(kind, j, phase.steps.len(), step);
            l.step_started(kind, kind, j, phase.steps.len(), step);
            let t0 = Instant::now();
            let cp = CheckpointKey {
                plan: name.clone(),
                phase: i as i32,
                step: j as i32,
                record_done: true,
            };
            let result = if s.failpoint_hit(kind, j).await {
                Err(exec::ExecError::Injected(format!("{kind}.{}", j + 1)))
            } else {
                let report = WaitReport {
                    plan: &name,
                    actor: &s.actor,
                    phase: kind,
                    deployed,
                };
                run_step_reporting_waits(l, step, &settings, &cp, &obs, report).await
            };
            let elapsed = t0.elapsed();
            record_retries(&l.control, &name, &s.actor, kind, deployed, &obs).await?;
            match result {
                Ok(outcome) => {
                    s.observer.step_finished(kind, step, &outcome, elapsed);
                    let msg = match &outcome {
                        StepOutcome::Ran => format!("ran: {}", step.description),
                        StepOutcome::Skipped => {
                            format!("already in effect, skipped: {}", step.description)
                        }
                        StepOutcome::Backfilled { rows, batches } => format!(
                            "backfilled {rows} rows in {batches} batches: {}",
                            step.description
                        ),
                        StepOutcome::Verified => format!("verified: {}", step.description),
                    };
                    store::set_steps_done(&*l.control, &name, i, j + 1).await?;
                    store::record(
                        &*l.control,
                        &name,
                        &s.actor,
                        Event {
                            phase: Some(kind),
                            kind: "step",
                            message: msg,
                            duration_ms: Some(elapsed.as_millis() as i64),
                            deployed_ref: deployed,
                            ..Default::default()
                        },
                    )
                    .await?;
                    l.step_done();
                }
                Err(e) => {
                    let text = e.to_string();
                    // The message is made first: when the server went away, the state
                    // cannot be written, and the operator must still learn where it
                    // stopped and how to resume.
                    let recorded = async {
                        store::set_phase(&*l.control, &name, i, PhaseStatus::Failed).await?;
                        store::set_plan_status(
                            &*l.control,
                            &name,
                            stored.revision,
                            PlanStatus::Failed,
                            Some(i as i32),
                            Some(&text),
                        )
                        .await?;
                        store::record(
                            &*l.control,
                            &name,
                            &s.actor,
                            Event {
                                phase: Some(kind),
                                kind: "error",
                                message: format!("step failed: {}: {text}", step.description),
                                duration_ms: Some(elapsed.as_millis() as i64),
                                deployed_ref: deployed,
                                ..Default::default()
                            },
                        )
                        .await?;
                        anyhow::Ok(())
                    }
                    .await;
                    let state = match recorded {
                        Ok(()) => "the plan is marked failed".to_string(),
                        Err(e) => format!(
                            "the failure could not be recorded in the pgphase tables ({e:#}); `pgphase status` shows the plan interrupted"
                        ),
                    };
                    return Err(CmdError::Failed(anyhow::Error::new(StepFailed(format!(
                        "phase {kind}, step {}/{} ({}) failed: {text}\n{state}; fix the cause and re-run `{}` to resume (completed steps are skipped), or `pgphase phase rollback {name}`",
                        j + 1,
                        phase.steps.len(),
                        step.description,
                        l.resume
                    )))));
                }
            }
        }
        store::set_phase(&*l.control, &name, i, PhaseStatus::Completed).await?;
        store::record(
            &*l.control,
            &name,
            &s.actor,
            Event {
                phase: Some(kind),
                kind: "phase",
                message: format!("phase {kind} completed"),
                duration_ms: Some(phase_start.elapsed().as_millis() as i64),
                deployed_ref: deployed,
                ..Default::default()
            },
        )
        .await?;
        if let Some(gate) = &phase.gate {
            if i + 1 < program.phases.len() {
                store::set_plan_status(
                    &*l.control,
                    &name,
                    stored.revision,
                    PlanStatus::AwaitingDeploy,
                    Some(i as i32),
                    None,
                )
                .await?;
                if program.phases[i + 1].point_of_no_return {
                    note_drain_gate(s, l, &stored).await;
                }
                return Ok(Outcome::AwaitingDeploy {
                    phase: kind.to_string(),
                    gate: gate.text(),
                });
            }
        }
    }
    store::set_plan_status(
        &*l.control,
        &name,
        stored.revision,
        PlanStatus::Completed,
        Some(program.phases.len() as i32 - 1),
        None,
    )
    .await?;
    store::record(
        &*l.control,
        &name,
        &s.actor,
        Event {
            kind: "command",
            message: "plan completed".into(),
            deployed_ref: deployed,
            ..Default::default()
        },
    )
    .await?;
    Ok(Outcome::Completed)
}

/// At the gate before contract: the first evidence snapshot (see [`crate::evidence`]).
/// The phase is done whatever happens here: a problem is told, never an error.
async fn note_drain_gate(s: &Session, l: &Locked, stored: &StoredPlan) {
    match crate::evidence::at_drain_gate(&l.control, stored).await {
        Ok(Some(note)) => s.observer.note(&note),
        Ok(None) => {}
        Err(e) => s.observer.note(&format!(
            "evidence before contract: no snapshot at the gate ({e}); the check before contract counts from its own"
        )),
    }
}

async fn record_retries(
    control: &Client,
    plan: &str,
    actor: &str,
    phase: &str,
    deployed: Option<&str>,
    obs: &Recording,
) -> Result<(), CmdError> {
    for message in obs.take_retries() {
        store::record(
            control,
            plan,
            actor,
            Event {
                phase: Some(phase),
                kind: "retry",
                message,
                deployed_ref: deployed,
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(())
}

/// `pgphase phase rollback PLAN`: undoes the phases since the last confirmed deploy
/// gate, last first, and reopens that gate (or, with none, restores the schema as it
/// was before the plan).
pub async fn rollback(s: &Session, plan: &str) -> Result<Outcome, CmdError> {
    rollback_to(s, plan, None).await
}

/// [`rollback`] that names where it goes back to (`--to`: a gated phase, or `start`):
/// refused when the rollback would go elsewhere, a no-op when the plan is there already
/// (a retried pipeline job must not roll back past the gate it meant).
pub async fn rollback_to(s: &Session, plan: &str, to: Option<&str>) -> Result<Outcome, CmdError> {
    let t0 = Instant::now();
    let result = async {
        let mut l = Locked::acquire(s, plan, Command::Rollback).await?;
        l.resume = format!(
            "pgphase phase rollback {plan}{}",
            to.map(|t| format!(" --to {t}")).unwrap_or_default()
        );
        let result = rollback_locked(s, &mut l, plan, to).await;
        l.release().await;
        result
    }
    .await;
    audit(s, plan, Command::Rollback, None, t0, result).await
}

async fn rollback_locked(
    s: &Session,
    l: &mut Locked,
    plan: &str,
    to: Option<&str>,
) -> Result<Outcome, CmdError> {
    let stored = store::load_plan(&*l.control, plan).await?;
    if let (Some(to), Some(st)) = (to, &stored) {
        let state = st.state();
        if check_rollback_target(&state, to, plan)? == RollbackCheck::AlreadyThere {
            s.observer.note(&format!(
                "plan `{plan}` is rolled back to {} already; nothing to do",
                if to == BEFORE_THE_PLAN {
                    "before the plan".to_string()
                } else {
                    format!("the deploy gate after `{to}`")
                }
            ));
            return match (st.status, state.open_gate()) {
                (PlanStatus::AwaitingDeploy, Some(g)) => Ok(Outcome::RolledBackToGate {
                    phase: st.program.phases[g].kind.to_string(),
                    deployed: None,
                    next_to: rollback_target(&state, plan)?,
                }),
                // say only what is checked now
                _ => schema_outcome(plan, compare_with_snapshot(l, st).await?),
            };
        }
    }
    let decision = decide(
        stored.as_ref().map(|p| p.state()).as_ref(),
        Command::Rollback,
        plan,
    )?;
    let stored = stored.expect("decide refuses unknown plans");
    let Decision::Rollback {
        phases,
        reopen_gate,
    } = decision
    else {
        unreachable!()
    };
    let undo = phases
        .iter()
        .map(|&i| stored.program.phases[i].kind.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let undo = if undo.is_empty() {
        "none".to_string()
    } else {
        undo
    };
    let msg = match reopen_gate {
        Some(g) => format!(
            "Roll back plan `{plan}` to the deploy gate after `{}`: undo phases {undo}, back to the schema the application deployed there ({}) works with; it keeps working. Then roll the application back to the version before that deploy and run `pgphase phase rollback {plan}` again to undo the rest.",
            stored.program.phases[g].kind,
            stored.phases[g].gate_deployed_ref.as_deref().unwrap_or("?")
        ),
        None => format!(
            "Roll back plan `{plan}`: undo phases {undo} (the original schema is restored; data written through the new names is kept in the old ones). Only the application version from before the plan works with it: if a newer one is already deployed, roll it back first."
        ),
    };
    if !(s.confirm)(&msg) {
        return Err(CmdError::refused(
            "not confirmed: nothing was rolled back",
            "re-run and confirm, or pass --yes in a pipeline",
        ));
    }
    let revision = store::set_plan_status(
        &*l.control,
        plan,
        stored.revision,
        PlanStatus::RollingBack,
        None,
        None,
    )
    .await?;
    store::record(
        &*l.control,
        plan,
        &s.actor,
        Event {
            kind: "command",
            message: "rollback started".into(),
            ..Default::default()
        },
    )
    .await?;
    let lock = l.lock_stop();
    let undo = undo_phases(s, l, &stored, &phases, revision, reopen_gate);
    match guarded(&lock, undo).await {
        Ok(r) => r.map_err(|e| l.locate(e)),
        Err(reason) => Err(l.stopped(s, reason).await),
    }
}

/// Runs the undo steps of `phases` (last first) and records where the rollback ends:
/// the reopened gate, or before the plan, where the schema is compared with the
/// snapshot taken at start.
async fn undo_phases(
    s: &Session,
    l: &mut Locked,
    stored: &StoredPlan,
    phases: &[usize],
    mut revision: i64,
    reopen_gate: Option<usize>,
) -> Result<Outcome, CmdError> {
    let plan = stored.name.as_str();
    let settings = settings_of(&stored.program);
    let obs = Recording::new(s.observer.clone());
    for &i in phases {
        let phase = &stored.program.phases[i];
        let kind = phase.kind.as_str();
        let label = format!("rollback {kind}");
        for (j, step) in phase.rollback.iter().enumerate() {
            s.observer
                .step_started(&label, j, phase.rollback.len(), step);
            l.step_started(kind, &label, j, phase.rollback.len(), step);
            let t0 = Instant::now();
            let cp = CheckpointKey {
                plan: plan.to_string(),
                phase: i as i32,
                step: -1 - j as i32,
                record_done: false,
            };
            let result = if s.failpoint_hit(&format!("rollback-{kind}"), j).await {
                Err(exec::ExecError::Injected(format!(
                    "rollback-{kind}.{}",
                    j + 1
                )))
            } else {
                let report = WaitReport {
                    plan,
                    actor: &s.actor,
                    phase: kind,
                    deployed: None,
                };
                run_step_reporting_waits(l, step, &settings, &cp, &obs, report).await
            };
            record_retries(&l.control, plan, &s.actor, kind, None, &obs).await?;
            match result {
                Ok(outcome) => {
                    s.observer.step_finished(kind, step, &outcome, t0.elapsed());
                    store::record(
                        &*l.control,
                        plan,
                        &s.actor,
                        Event {
                            phase: Some(kind),
                            kind: "rollback",
                            message: format!("undid: {}", step.description),
                            duration_ms: Some(t0.elapsed().as_millis() as i64),
                            ..Default::default()
                        },
                    )
                    .await?;
                    l.step_done();
                }
                Err(e) => {
                    let text = e.to_string();
                    let recorded = async {
                        store::record(
                            &*l.control,
                            plan,
                            &s.actor,
                            Event {
                                phase: Some(kind),
                                kind: "error",
                                message: format!(
                                    "rollback step failed: {}: {text}",
                                    step.description
                                ),
                                duration_ms: Some(t0.elapsed().as_millis() as i64),
                                ..Default::default()
                            },
                        )
                        .await?;
                        store::set_plan_status(
                            &*l.control,
                            plan,
                            revision,
                            PlanStatus::RollingBack,
                            None,
                            Some(&text),
                        )
                        .await?;
                        anyhow::Ok(())
                    }
                    .await;
                    let note = match recorded {
                        Ok(()) => String::new(),
                        Err(e) => format!(
                            " (the failure could not be recorded in the pgphase tables: {e:#})"
                        ),
                    };
                    return Err(CmdError::Failed(anyhow::Error::new(StepFailed(format!(
                        "rollback of phase {kind}, step {}/{} ({}) failed: {text}{note}\nfix the cause and re-run `pgphase phase rollback {plan}` (undo steps are idempotent)",
                        j + 1,
                        phase.rollback.len(),
                        step.description
                    )))));
                }
            }
        }
        store::set_phase(&*l.control, plan, i, PhaseStatus::RolledBack).await?;
        store::clear_gate(&*l.control, plan, i).await?;
    }
    if let Some(g) = reopen_gate {
        let deployed = stored.phases[g].gate_deployed_ref.clone();
        store::clear_gate(&*l.control, plan, g).await?;
        store::set_plan_status(
            &*l.control,
            plan,
            revision,
            PlanStatus::AwaitingDeploy,
            Some(g as i32),
            None,
        )
        .await?;
        let phase = stored.program.phases[g].kind.to_string();
        store::record(
            &*l.control,
            plan,
            &s.actor,
            Event {
                phase: Some(&phase),
                kind: "command",
                message: format!(
                    "rolled back to the deploy gate after {phase}, reopened: roll the application back to the version before {}, then `pgphase phase rollback {plan}` again (or `phase advance` to go forward)",
                    deployed.as_deref().unwrap_or("that deploy")
                ),
                ..Default::default()
            },
        )
        .await?;
        let next_to = match stored.phases[..g]
            .iter()
            .rposition(|p| p.gate_confirmed_at.is_some())
        {
            Some(earlier) => stored.program.phases[earlier].kind.to_string(),
            None => BEFORE_THE_PLAN.to_string(),
        };
        return Ok(Outcome::RolledBackToGate {
            phase,
            deployed,
            next_to,
        });
    }
    let check = compare_with_snapshot(l, stored).await?;
    store::delete_progress(&*l.control, plan).await?;
    revision = store::set_plan_status(
        &*l.control,
        plan,
        revision,
        PlanStatus::RolledBack,
        Some(0),
        None,
    )
    .await?;
    let _ = revision;
    let message = match &check {
        SchemaCheck::Same => {
            "rollback completed: the schema is as before the plan (compared with the catalog snapshot taken at start)".to_string()
        }
        SchemaCheck::NoSnapshot => "rollback completed: every undo step ran; the schema was not compared with the state before the plan (the plan was started by a pgphase that took no snapshot)".to_string(),
        SchemaCheck::Differs(d) => format!(
            "rollback completed, but the schema differs from the catalog snapshot taken at start:\n    {}",
            d.join("\n    ")
        ),
    };
    store::record(
        &*l.control,
        plan,
        &s.actor,
        Event {
            kind: "command",
            message: message.clone(),
            ..Default::default()
        },
    )
    .await?;
    schema_outcome(plan, check)
}

/// The outcome of a full rollback, by what the comparison with the snapshot found.
fn schema_outcome(plan: &str, check: SchemaCheck) -> Result<Outcome, CmdError> {
    match check {
        SchemaCheck::Same => Ok(Outcome::RolledBack),
        SchemaCheck::NoSnapshot => Ok(Outcome::RolledBackUnchecked),
        SchemaCheck::Differs(d) => Err(CmdError::Failed(anyhow::Error::new(StepFailed(format!(
            "plan `{plan}`: every undo step ran and the plan is rolled back, but the schema is not as before the plan: it differs from the catalog snapshot taken at start:\n    {}\nsomething else changed these objects since the plan started (or pgphase missed something: please report it); compare with `pgphase history {plan}` and your own migrations",
            d.join("\n    ")
        ))))),
    }
}

/// What a full rollback found when it compared the schema with the snapshot taken when
/// the plan started.
enum SchemaCheck {
    Same,
    /// The plan was started by a pgphase that took no snapshot.
    NoSnapshot,
    Differs(Vec<String>),
}

async fn compare_with_snapshot(l: &Locked, stored: &StoredPlan) -> Result<SchemaCheck, CmdError> {
    let Some(before) = &stored.schema_before else {
        return Ok(SchemaCheck::NoSnapshot);
    };
    let before: Catalog = serde_json::from_value(before.clone()).map_err(|e| {
        anyhow::anyhow!(
            "the catalog snapshot of plan `{}` (pgphase.plans.schema_before) cannot be read: {e}",
            stored.name
        )
    })?;
    let path = stored
        .source_path
        .clone()
        .unwrap_or_else(|| format!("{}.yaml", stored.name));
    let plan = crate::plan::parse(&stored.source, &path, &stored.name)
        .map_err(|e| anyhow::anyhow!("cannot read the stored plan `{}`: {e}", stored.name))?;
    let now = crate::catalog::compare::restorable(&load_catalog_of(&l.work, &plan).await?);
    let before = crate::catalog::compare::restorable(&before);
    let d = crate::catalog::compare::differences(&before, &now);
    Ok(if d.is_empty() {
        SchemaCheck::Same
    } else {
        SchemaCheck::Differs(d)
    })
}
