//! The `pgphase` schema in the target database: plans, phases, the append-only event
//! log and backfill checkpoints. Thin and guarded: the plan's advisory lock is held on
//! a dedicated connection, and every status write is a compare-and-set on `revision`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::machine::{PhaseState, PhaseStatus, PlanState, PlanStatus, Refusal};
use crate::program::Program;

/// Current version of the `pgphase` schema. Each entry of [`MIGRATIONS`] moves it by one.
pub const SCHEMA_VERSION: i32 = 4;

const MIGRATIONS: &[&str] = &[
    // 1: initial
    r#"
CREATE TABLE pgphase.plans (
    name         text PRIMARY KEY,
    checksum     text NOT NULL,
    source_path  text,
    source       text NOT NULL,
    program      jsonb NOT NULL,
    status       text NOT NULL CHECK (status IN ('running','awaiting_deploy','completed','rolling_back','rolled_back','failed')),
    current_phase int NOT NULL DEFAULT 0,
    revision     bigint NOT NULL DEFAULT 0,
    started_by   text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    last_error   text
);
CREATE TABLE pgphase.phases (
    plan_name    text NOT NULL REFERENCES pgphase.plans (name),
    position     int NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending','running','completed','failed','rolled_back')),
    steps_total  int NOT NULL,
    steps_done   int NOT NULL DEFAULT 0,
    started_at   timestamptz,
    finished_at  timestamptz,
    gate         text,
    gate_confirmed_by  text,
    gate_deployed_ref  text,
    gate_confirmed_at  timestamptz,
    PRIMARY KEY (plan_name, position)
);
CREATE TABLE pgphase.events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    plan_name   text NOT NULL,
    phase       text,
    actor       text NOT NULL,
    kind        text NOT NULL,
    message     text NOT NULL,
    deployed_ref text,
    duration_ms bigint,
    detail      jsonb
);
CREATE INDEX ON pgphase.events (plan_name, id);
CREATE FUNCTION pgphase.events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'pgphase.events is append-only';
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON pgphase.events
  FOR EACH ROW EXECUTE FUNCTION pgphase.events_append_only();
CREATE TABLE pgphase.backfill_progress (
    plan_name   text NOT NULL,
    phase       int NOT NULL,
    step        int NOT NULL,
    last_key    jsonb,
    rows_done   bigint NOT NULL DEFAULT 0,
    rows_total  bigint,
    batches     bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (plan_name, phase, step)
);
"#,
    // 2: the catalog of what the plan touches, as it was when the plan started: a full
    // rollback compares the schema with it before saying it is as before
    r#"
ALTER TABLE pgphase.plans ADD COLUMN schema_before jsonb;
"#,
    // 3: counters of what a contract drops (statements, index and table usage), taken
    // when a plan reaches the gate before its contract and at every check since: the
    // next check counts only what ran after the latest one (see `crate::evidence`)
    r#"
CREATE TABLE pgphase.evidence_snapshots (
    id          bigserial PRIMARY KEY,
    plan_name   text NOT NULL,
    taken_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason      text NOT NULL,
    counters    jsonb NOT NULL,
    clean       boolean,
    summary     text
);
CREATE INDEX ON pgphase.evidence_snapshots (plan_name, id);
"#,
    // 4: backfills that watch the database's health: why a backfill waits and since
    // when, the time it waited, the standbys it watches, and the operator's live
    // controls (NULL: the plan's value; -1: not watched)
    r#"
ALTER TABLE pgphase.backfill_progress
    ADD COLUMN waiting jsonb,
    ADD COLUMN waiting_since timestamptz,
    ADD COLUMN waited_ms bigint NOT NULL DEFAULT 0,
    ADD COLUMN standbys jsonb;
CREATE TABLE pgphase.backfill_controls (
    plan_name           text PRIMARY KEY,
    paused              boolean NOT NULL DEFAULT false,
    paused_by           text,
    paused_at           timestamptz,
    batch_time_ms       bigint,
    pause_ms            bigint,
    max_replica_lag_ms  bigint,
    max_slot_lag_bytes  bigint,
    max_active_sessions bigint,
    forget_standbys_at  timestamptz,
    updated_by          text NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
"#,
];

/// The `pgphase` schema was upgraded by a newer pgphase than this one.
#[derive(Debug, thiserror::Error)]
#[error("the pgphase schema in this database is version {found}, newer than this pgphase knows (version {SCHEMA_VERSION}): a newer pgphase has worked here, and this one could misread or damage its state; nothing was changed")]
pub struct NewerSchema {
    pub found: i32,
}

impl From<NewerSchema> for crate::error::CmdError {
    fn from(e: NewerSchema) -> Self {
        crate::error::CmdError::refused(
            e.to_string(),
            "upgrade pgphase to the version that last worked on this database (or newer), and run it instead",
        )
    }
}

/// Creates or upgrades the `pgphase` schema. Safe to call concurrently. Refuses a
/// schema a newer pgphase upgraded ([`NewerSchema`]).
pub async fn ensure_schema(client: &mut Client) -> Result<(), crate::error::CmdError> {
    let tx = client.transaction().await?;
    // serialize installers; transaction-scoped, released at commit
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_CLASS])
        .await?;
    // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
    // exists: a schema a DBA created for the migration role must be enough.
    let exists: bool = tx
        .query_one("SELECT to_regnamespace('pgphase') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        tx.batch_execute("CREATE SCHEMA pgphase").await?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS pgphase.schema_version (
             version int NOT NULL, installed_at timestamptz NOT NULL DEFAULT now());",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM pgphase.schema_version",
            &[],
        )
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        // a newer pgphase upgraded it: what this one would read or write is unknown
        return Err(NewerSchema { found: current }.into());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let v = i as i32 + 1;
        if v > current {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO pgphase.schema_version (version) VALUES ($1)",
                &[&v],
            )
            .await?;
        }
    }
    Ok(tx.commit().await?)
}

/// Whether the schema exists at all (read-only commands do not create it); refuses one
/// a newer pgphase upgraded ([`NewerSchema`]).
pub async fn schema_exists<C: GenericClient>(c: &C) -> Result<bool, crate::error::CmdError> {
    let row = c
        .query_one(
            "SELECT to_regclass('pgphase.plans') IS NOT NULL,
                    to_regclass('pgphase.schema_version') IS NOT NULL",
            &[],
        )
        .await?;
    let (plans, versioned): (bool, bool) = (row.get(0), row.get(1));
    if versioned {
        let found: i32 = c
            .query_one(
                "SELECT coalesce(max(version), 0) FROM pgphase.schema_version",
                &[],
            )
            .await?
            .get(0);
        if found > SCHEMA_VERSION {
            return Err(NewerSchema { found }.into());
        }
    }
    Ok(plans)
}

#[derive(Clone, Debug, Serialize)]
pub struct StoredPhase {
    pub position: i32,
    pub kind: String,
    pub status: PhaseStatus,
    pub steps_total: i32,
    pub steps_done: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub gate: Option<String>,
    pub gate_confirmed_by: Option<String>,
    pub gate_deployed_ref: Option<String>,
    pub gate_confirmed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct StoredPlan {
    pub name: String,
    pub checksum: String,
    pub source_path: Option<String>,
    /// The plan file's text as started (what the checksum covers).
    pub source: String,
    pub program: Program,
    pub status: PlanStatus,
    pub current_phase: i32,
    pub revision: i64,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The catalog of what the plan touches, taken when it started (a plan started by
    /// a pgphase without snapshots has none).
    pub schema_before: Option<serde_json::Value>,
    pub phases: Vec<StoredPhase>,
}

impl StoredPlan {
    pub fn state(&self) -> PlanState {
        PlanState {
            status: self.status,
            phases: self
                .phases
                .iter()
                .zip(&self.program.phases)
                .map(|(s, p)| PhaseState {
                    name: s.kind.clone(),
                    status: s.status,
                    has_gate: p.gate.is_some(),
                    gate_confirmed: s.gate_confirmed_at.is_some(),
                    point_of_no_return: p.point_of_no_return,
                })
                .collect(),
        }
    }
}

/// The stored plan, checked for consistency: a plan whose rows were deleted or edited
/// by hand is an error naming what is wrong, never a state pgphase would act on.
pub async fn load_plan<C: GenericClient>(c: &C, name: &str) -> anyhow::Result<Option<StoredPlan>> {
    let Some(r) = c
        .query_opt(
            "SELECT name, checksum, source_path, program, status, current_phase, revision, started_by,
                    started_at, updated_at, finished_at, last_error, source, schema_before
               FROM pgphase.plans WHERE name = $1",
            &[&name],
        )
        .await?
    else {
        let logged: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pgphase.events WHERE plan_name = $1)",
                &[&name],
            )
            .await?
            .get(0);
        if logged {
            return Err(inconsistent(
                name,
                "the event log records it, but pgphase.plans has no row for it",
            ));
        }
        return Ok(None);
    };
    let program: Program = serde_json::from_value(r.get(3)).map_err(|e| {
        inconsistent(
            name,
            &format!("its program (pgphase.plans.program) cannot be read: {e}"),
        )
    })?;
    let status: String = r.get(4);
    let status = PlanStatus::parse(&status).ok_or_else(|| {
        inconsistent(
            name,
            &format!("its status `{status}` is not one pgphase writes"),
        )
    })?;
    let mut phases = Vec::new();
    for p in c
        .query(
            "SELECT position, kind, status, steps_total, steps_done, started_at, finished_at, gate,
                    gate_confirmed_by, gate_deployed_ref, gate_confirmed_at
               FROM pgphase.phases WHERE plan_name = $1 ORDER BY position",
            &[&name],
        )
        .await?
    {
        let position: i32 = p.get(0);
        let phase_status: String = p.get(2);
        phases.push(StoredPhase {
            position,
            kind: p.get(1),
            status: PhaseStatus::parse(&phase_status).ok_or_else(|| {
                inconsistent(
                    name,
                    &format!("phase {position} has the status `{phase_status}`, which pgphase never writes"),
                )
            })?,
            steps_total: p.get(3),
            steps_done: p.get(4),
            started_at: p.get(5),
            finished_at: p.get(6),
            gate: p.get(7),
            gate_confirmed_by: p.get(8),
            gate_deployed_ref: p.get(9),
            gate_confirmed_at: p.get(10),
        });
    }
    let plan = StoredPlan {
        name: r.get(0),
        checksum: r.get(1),
        source_path: r.get(2),
        program,
        status,
        current_phase: r.get(5),
        revision: r.get(6),
        started_by: r.get(7),
        started_at: r.get(8),
        updated_at: r.get(9),
        finished_at: r.get(10),
        last_error: r.get(11),
        source: r.get(12),
        schema_before: r.get(13),
        phases,
    };
    if let Some(problem) = plan.inconsistency() {
        return Err(inconsistent(name, &problem));
    }
    Ok(Some(plan))
}

fn inconsistent(plan: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the state of plan `{plan}` in the pgphase tables is inconsistent: {what}. It was changed outside pgphase (rows edited or deleted by hand, or only some tables restored), so pgphase cannot tell what ran, and changes nothing. Restore the pgphase schema from the backup it came from, or repair its rows (`pgphase history {plan}` shows what ran)"
    )
}

impl StoredPlan {
    /// What does not fit between the plan's row, its phase rows and its program.
    fn inconsistency(&self) -> Option<String> {
        let program = &self.program.phases;
        if program.is_empty() {
            return Some("its program has no phase".into());
        }
        if self.phases.len() != program.len() {
            return Some(format!(
                "its program has {} phases, pgphase.phases holds {} rows for it",
                program.len(),
                self.phases.len()
            ));
        }
        for (i, (row, phase)) in self.phases.iter().zip(program).enumerate() {
            if row.position != i as i32 {
                return Some(format!("phase {i} has no row in pgphase.phases"));
            }
            if row.kind != phase.kind.as_str() {
                return Some(format!(
                    "phase {i} is `{}` in its program but `{}` in pgphase.phases",
                    phase.kind, row.kind
                ));
            }
            if row.steps_total != phase.steps.len() as i32
                || !(0..=row.steps_total).contains(&row.steps_done)
            {
                return Some(format!(
                    "phase {i} ({}) has {} steps, pgphase.phases says {} of {} are done",
                    row.kind,
                    phase.steps.len(),
                    row.steps_done,
                    row.steps_total
                ));
            }
        }
        if !(0..program.len() as i32).contains(&self.current_phase) {
            return Some(format!(
                "its current phase is {}, of {} phases",
                self.current_phase,
                program.len()
            ));
        }
        None
    }
}

/// Every started plan's status, by name.
pub async fn plan_statuses<C: GenericClient>(
    c: &C,
) -> Result<std::collections::BTreeMap<String, String>, tokio_postgres::Error> {
    Ok(c.query("SELECT name, status FROM pgphase.plans", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A plan's status, None when it was never started.
pub async fn plan_status<C: GenericClient>(
    c: &C,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(
        c.query_opt("SELECT status FROM pgphase.plans WHERE name = $1", &[&name])
            .await?
            .map(|r| r.get(0)),
    )
}

/// Every plan the database knows: those of pgphase.plans, oldest first, then any the
/// event log names without a row there (a row deleted by hand: [`load_plan`] says so).
pub async fn plan_names<C: GenericClient>(c: &C) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT name FROM (
             SELECT name, started_at FROM pgphase.plans
             UNION ALL
             SELECT DISTINCT plan_name, NULL::timestamptz FROM pgphase.events e
              WHERE NOT EXISTS (SELECT 1 FROM pgphase.plans p WHERE p.name = e.plan_name)
         ) known ORDER BY started_at NULLS LAST, name",
        &[],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// The plans that are started and neither completed nor rolled back (a failed plan
/// is still active: it left changes in place), except `except`.
pub async fn active_plans<C: GenericClient>(
    c: &C,
    except: &str,
) -> anyhow::Result<Vec<StoredPlan>> {
    let names: Vec<String> = c
        .query(
            "SELECT name FROM pgphase.plans
              WHERE status NOT IN ('completed', 'rolled_back') AND name <> $1
              ORDER BY started_at, name",
            &[&except],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for n in names {
        if let Some(p) = load_plan(c, &n).await? {
            out.push(p);
        }
    }
    Ok(out)
}

/// What [`create_plan`] records.
pub struct NewPlan<'a> {
    pub name: &'a str,
    pub checksum: &'a str,
    pub source_path: Option<&'a str>,
    pub source: &'a str,
    pub program: &'a Program,
    pub actor: &'a str,
    /// The catalog of what the plan touches, now.
    pub schema_before: &'a serde_json::Value,
}

/// Records a new plan, or resets a rolled-back one (read at `restart_from_revision`)
/// for a fresh start, in one transaction. Takes `&Client` (the control connection is
/// shared with the plan lock's watcher), so the transaction is spelled out.
pub async fn create_plan(
    client: &Client,
    plan: &NewPlan<'_>,
    restart_from_revision: Option<i64>,
) -> anyhow::Result<Result<(), Refusal>> {
    client.batch_execute("BEGIN").await?;
    let result = create_plan_in_transaction(client, plan, restart_from_revision).await;
    match result {
        Ok(Ok(())) => {
            client.batch_execute("COMMIT").await?;
            Ok(Ok(()))
        }
        other => {
            let _ = client.batch_execute("ROLLBACK").await;
            other
        }
    }
}

async fn create_plan_in_transaction(
    tx: &Client,
    p: &NewPlan<'_>,
    restart_from_revision: Option<i64>,
) -> anyhow::Result<Result<(), Refusal>> {
    let name = p.name;
    let json = serde_json::to_value(p.program)?;
    let n = match restart_from_revision {
        None => {
            tx.execute(
                "INSERT INTO pgphase.plans (name, checksum, source_path, source, program, status, started_by, schema_before)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6, $7) ON CONFLICT (name) DO NOTHING",
                &[&name, &p.checksum, &p.source_path, &p.source, &json, &p.actor, p.schema_before],
            )
            .await?
        }
        Some(rev) => {
            let n = tx
                .execute(
                    "UPDATE pgphase.plans SET checksum = $2, source_path = $3, source = $4, program = $5,
                            status = 'running', current_phase = 0, revision = revision + 1, started_by = $6,
                            started_at = now(), updated_at = now(), finished_at = NULL, last_error = NULL,
                            schema_before = $8
                      WHERE name = $1 AND revision = $7 AND status = 'rolled_back'",
                    &[&name, &p.checksum, &p.source_path, &p.source, &json, &p.actor, &rev, p.schema_before],
                )
                .await?;
            tx.execute("DELETE FROM pgphase.phases WHERE plan_name = $1", &[&name])
                .await?;
            tx.execute("DELETE FROM pgphase.backfill_progress WHERE plan_name = $1", &[&name])
                .await?;
            n
        }
    };
    if n == 0 {
        return Ok(Err(Refusal {
            reason: format!(
                "plan `{name}` was started or changed by another operator at the same moment"
            ),
            fix: "run `pgphase status` to see where it stands".into(),
        }));
    }
    for (i, ph) in p.program.phases.iter().enumerate() {
        let gate = ph.gate.as_ref().map(|g| g.text());
        tx.execute(
            "INSERT INTO pgphase.phases (plan_name, position, kind, status, steps_total, gate)
             VALUES ($1, $2, $3, 'pending', $4, $5)",
            &[
                &name,
                &(i as i32),
                &ph.kind.as_str(),
                &(ph.steps.len() as i32),
                &gate,
            ],
        )
        .await?;
    }
    Ok(Ok(()))
}

/// Compare-and-set of the plan's status; returns the new revision, or a refusal if
/// someone else changed the plan since `revision` was read.
pub async fn set_plan_status<C: GenericClient>(
    c: &C,
    name: &str,
    revision: i64,
    status: PlanStatus,
    current_phase: Option<i32>,
    last_error: Option<&str>,
) -> anyhow::Result<i64> {
    let finished = matches!(status, PlanStatus::Completed | PlanStatus::RolledBack);
    let row = c
        .query_opt(
            "UPDATE pgphase.plans SET status = $3, current_phase = coalesce($4, current_phase),
                    last_error = $5, revision = revision + 1, updated_at = now(),
                    finished_at = CASE WHEN $6 THEN now() END
              WHERE name = $1 AND revision = $2 RETURNING revision",
            &[
                &name,
                &revision,
                &status.as_str(),
                &current_phase,
                &last_error,
                &finished,
            ],
        )
        .await?;
    match row {
        Some(r) => Ok(r.get(0)),
        None => anyhow::bail!(
            "plan `{name}` was changed by another process while this command held its lock (revision {revision} is stale); run `pgphase status`"
        ),
    }
}

pub async fn set_phase<C: GenericClient>(
    c: &C,
    name: &str,
    position: usize,
    status: PhaseStatus,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE pgphase.phases SET status = $3,
                started_at = CASE WHEN $3 = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
                finished_at = CASE WHEN $3 IN ('completed', 'rolled_back') THEN now() ELSE NULL END,
                steps_done = CASE WHEN $3 = 'rolled_back' THEN 0 ELSE steps_done END
          WHERE plan_name = $1 AND position = $2",
        &[&name, &(position as i32), &status.as_str()],
    )
    .await?;
    Ok(())
}

pub async fn set_steps_done<C: GenericClient>(
    c: &C,
    name: &str,
    position: usize,
    done: usize,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE pgphase.phases SET steps_done = $3 WHERE plan_name = $1 AND position = $2",
        &[&name, &(position as i32), &(done as i32)],
    )
    .await?;
    Ok(())
}

pub async fn confirm_gate<C: GenericClient>(
    c: &C,
    name: &str,
    position: usize,
    actor: &str,
    deployed: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE pgphase.phases SET gate_confirmed_by = $3, gate_deployed_ref = $4, gate_confirmed_at = now()
          WHERE plan_name = $1 AND position = $2",
        &[&name, &(position as i32), &actor, &deployed],
    )
    .await?;
    Ok(())
}

/// Clears gate confirmations of rolled-back phases (the event log keeps them).
pub async fn clear_gate<C: GenericClient>(
    c: &C,
    name: &str,
    position: usize,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE pgphase.phases SET gate_confirmed_by = NULL, gate_deployed_ref = NULL, gate_confirmed_at = NULL
          WHERE plan_name = $1 AND position = $2",
        &[&name, &(position as i32)],
    )
    .await?;
    Ok(())
}

pub async fn delete_progress<C: GenericClient>(
    c: &C,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "DELETE FROM pgphase.backfill_progress WHERE plan_name = $1",
        &[&name],
    )
    .await?;
    Ok(())
}

/// What an entry of the event log records. Its text form ([`EventKind::as_str`]) is what
/// `pgphase.events.kind` stores and `history` shows: stable, never renamed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventKind {
    /// A command's end: its outcome or the error that stopped it (the default).
    #[default]
    Command,
    /// A command the plan's state, a check or a confirmation refused.
    Refused,
    /// A phase started or finished.
    Phase,
    /// A step ran.
    Step,
    /// An undo step ran.
    Rollback,
    /// A step failed.
    Error,
    /// A step retried after a lock timeout.
    Retry,
    /// A step waited for sessions or locks to go.
    Wait,
    /// A deploy gate confirmed.
    Gate,
    /// A deploy fence checked (and what it let through).
    Fence,
    /// A command stopped by a signal or the loss of its lock.
    Interrupted,
    /// The check before contract: what still used what it drops (or an override).
    Evidence,
    /// A backfill started waiting on the database's health or a pause (and why).
    BackfillWaiting,
    /// A backfill went on after a wait (and how long it waited).
    BackfillResumed,
    /// An operator changed a plan's live backfill controls (pause, resume, set).
    BackfillControl,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::Command,
        EventKind::Refused,
        EventKind::Phase,
        EventKind::Step,
        EventKind::Rollback,
        EventKind::Error,
        EventKind::Retry,
        EventKind::Wait,
        EventKind::Gate,
        EventKind::Fence,
        EventKind::Interrupted,
        EventKind::Evidence,
        EventKind::BackfillWaiting,
        EventKind::BackfillResumed,
        EventKind::BackfillControl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Command => "command",
            EventKind::Refused => "refused",
            EventKind::Phase => "phase",
            EventKind::Step => "step",
            EventKind::Rollback => "rollback",
            EventKind::Error => "error",
            EventKind::Retry => "retry",
            EventKind::Wait => "wait",
            EventKind::Gate => "gate",
            EventKind::Fence => "fence",
            EventKind::Interrupted => "interrupted",
            EventKind::Evidence => "evidence",
            EventKind::BackfillWaiting => "backfill_waiting",
            EventKind::BackfillResumed => "backfill_resumed",
            EventKind::BackfillControl => "backfill_control",
        }
    }
}

/// One entry of the event log.
#[derive(Clone, Debug, Default)]
pub struct Event<'a> {
    pub phase: Option<&'a str>,
    pub kind: EventKind,
    pub message: String,
    pub deployed_ref: Option<&'a str>,
    pub duration_ms: Option<i64>,
    pub detail: Option<serde_json::Value>,
}

pub async fn record<C: GenericClient>(
    c: &C,
    plan: &str,
    actor: &str,
    e: Event<'_>,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO pgphase.events (plan_name, phase, actor, kind, message, deployed_ref, duration_ms, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[&plan, &e.phase, &actor, &e.kind.as_str(), &e.message, &e.deployed_ref, &e.duration_ms, &e.detail],
    )
    .await?;
    Ok(())
}

#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub plan: String,
    pub phase: Option<String>,
    pub actor: String,
    pub kind: String,
    pub message: String,
    pub deployed_ref: Option<String>,
    pub duration_ms: Option<i64>,
    /// Structured detail (e.g. the sessions a `--force` let through a deploy fence).
    pub detail: Option<serde_json::Value>,
}

pub async fn events<C: GenericClient>(
    c: &C,
    plan: Option<&str>,
) -> Result<Vec<EventRow>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT id, at, plan_name, phase, actor, kind, message, deployed_ref, duration_ms, detail
           FROM pgphase.events WHERE $1::text IS NULL OR plan_name = $1 ORDER BY id",
        &[&plan],
    )
    .await?
    .iter()
    .map(event_row)
    .collect())
}

/// The last `limit` events of a plan, oldest first.
pub async fn recent_events<C: GenericClient>(
    c: &C,
    plan: &str,
    limit: i64,
) -> Result<Vec<EventRow>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT id, at, plan_name, phase, actor, kind, message, deployed_ref, duration_ms, detail
           FROM (SELECT * FROM pgphase.events WHERE plan_name = $1 ORDER BY id DESC LIMIT $2) e
          ORDER BY id",
        &[&plan, &limit],
    )
    .await?
    .iter()
    .map(event_row)
    .collect())
}

fn event_row(r: &tokio_postgres::Row) -> EventRow {
    EventRow {
        id: r.get(0),
        at: r.get(1),
        plan: r.get(2),
        phase: r.get(3),
        actor: r.get(4),
        kind: r.get(5),
        message: r.get(6),
        deployed_ref: r.get(7),
        duration_ms: r.get(8),
        detail: r.get(9),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub phase: i32,
    pub step: i32,
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    pub batches: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the backfill waits now (a list of holds), while it does.
    pub waiting: Option<serde_json::Value>,
    pub waiting_since: Option<DateTime<Utc>>,
    /// Time spent waiting in earlier, finished waits.
    pub waited_ms: i64,
}

pub async fn progress<C: GenericClient>(
    c: &C,
    plan: &str,
) -> Result<Vec<Progress>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT phase, step, rows_done, rows_total, batches, started_at, updated_at, finished_at,
                waiting, waiting_since, waited_ms
           FROM pgphase.backfill_progress WHERE plan_name = $1 ORDER BY phase, step",
        &[&plan],
    )
    .await?
    .iter()
    .map(|r| Progress {
        phase: r.get(0),
        step: r.get(1),
        rows_done: r.get(2),
        rows_total: r.get(3),
        batches: r.get(4),
        started_at: r.get(5),
        updated_at: r.get(6),
        finished_at: r.get(7),
        waiting: r.get(8),
        waiting_since: r.get(9),
        waited_ms: r.get(10),
    })
    .collect())
}

/// Advisory-lock keys: a fixed class and a hash of the plan name (both positive, so
/// they compare directly with `pg_locks.classid/objid`).
pub const LOCK_CLASS: i32 = 0x7067_7068; // "pgph"

pub fn lock_key(plan: &str) -> i32 {
    // FNV-1a, stable across releases (the key must match between versions of the tool)
    let mut h: u32 = 0x811c_9dc5;
    for b in plan.as_bytes() {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) as i32
}

/// Takes the plan's session advisory lock on `c`, or says who holds it.
pub async fn try_lock_plan(c: &Client, plan: &str) -> anyhow::Result<Result<(), Refusal>> {
    let got: bool = c
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &lock_key(plan)],
        )
        .await?
        .get(0);
    if got {
        return Ok(Ok(()));
    }
    let holder = lock_holder(c, plan).await?;
    Ok(Err(Refusal {
        reason: format!(
            "another pgphase command is working on plan `{plan}` right now{}",
            holder.map(|h| format!(" ({h})")).unwrap_or_default()
        ),
        fix: "wait for it to finish (`pgphase status` shows progress), then re-run this command"
            .into(),
    }))
}

/// Describes the session holding the plan's lock, if any.
pub async fn lock_holder<C: GenericClient>(
    c: &C,
    plan: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
                    coalesce(host(a.client_addr), 'local'), to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.classid = $1::int8::oid
                AND l.objid = $2::int8::oid AND l.objsubid = 2",
            &[&(LOCK_CLASS as i64), &(lock_key(plan) as i64)],
        )
        .await?;
    Ok(row.map(|r| {
        let pid: i32 = r.get(0);
        let app: String = r.get(1);
        let user: String = r.get(2);
        let host: String = r.get(3);
        let since: String = r.get(4);
        format!("held by pid {pid}, {app} as {user} from {host}, connected since {since}")
    }))
}

pub async fn unlock_plan(c: &Client, plan: &str) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "SELECT pg_advisory_unlock($1, $2)",
        &[&LOCK_CLASS, &lock_key(plan)],
    )
    .await?;
    Ok(())
}

/// A session of the target database that a deploy fence matched.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Straggler {
    pub pid: i32,
    pub application_name: String,
    pub user: Option<String>,
    /// `host(client_addr)`; None for a Unix-socket session or when the role may not see it.
    pub client_addr: Option<String>,
    pub backend_start: Option<DateTime<Utc>>,
    pub state: Option<String>,
}

impl std::fmt::Display for Straggler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.backend_start.is_none() {
            // another role's session, seen without pg_read_all_stats
            return write!(
                f,
                "pid {} {} (address and start hidden: this role lacks pg_read_all_stats)",
                self.pid, self.application_name
            );
        }
        write!(
            f,
            "pid {} {} from {}, connected since {}{}",
            self.pid,
            self.application_name,
            self.client_addr.as_deref().unwrap_or("local socket"),
            self.backend_start
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "?".into()),
            match (&self.user, &self.state) {
                (Some(u), Some(s)) => format!(" (user {u}, {s})"),
                (Some(u), None) => format!(" (user {u})"),
                _ => String::new(),
            }
        )
    }
}

/// Client sessions of the current database, other than this one, whose
/// `application_name` is `LIKE pattern`, oldest first.
pub async fn fence_stragglers<C: GenericClient>(
    c: &C,
    pattern: &str,
) -> Result<Vec<Straggler>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT pid, application_name, usename::text, host(client_addr), backend_start, state
           FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            -- backend_type is NULL for other roles' sessions without pg_read_all_stats;
            -- application_name is visible to every role
            AND coalesce(backend_type, 'client backend') = 'client backend'
            AND application_name LIKE $1
          ORDER BY backend_start, pid",
        &[&pattern],
    )
    .await?
    .iter()
    .map(|r| Straggler {
        pid: r.get(0),
        application_name: r.get(1),
        user: r.get(2),
        client_addr: r.get(3),
        backend_start: r.get(4),
        state: r.get(5),
    })
    .collect())
}

/// The latest evidence snapshot of a plan: when it was taken and its counters.
pub async fn latest_evidence_snapshot<C: GenericClient>(
    c: &C,
    plan: &str,
) -> Result<Option<(DateTime<Utc>, serde_json::Value)>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT taken_at, counters FROM pgphase.evidence_snapshots
              WHERE plan_name = $1 ORDER BY id DESC LIMIT 1",
        &[&plan],
    )
    .await?
    .map(|r| (r.get(0), r.get(1))))
}

/// Stores an evidence snapshot (`reason`: why it was taken) with what the check found
/// (`clean`, a one-line `summary`); returns when.
pub async fn save_evidence_snapshot<C: GenericClient>(
    c: &C,
    plan: &str,
    reason: &str,
    counters: &serde_json::Value,
    clean: bool,
    summary: &str,
) -> Result<DateTime<Utc>, tokio_postgres::Error> {
    Ok(c.query_one(
        "INSERT INTO pgphase.evidence_snapshots (plan_name, reason, counters, clean, summary)
             VALUES ($1, $2, $3, $4, $5) RETURNING taken_at",
        &[&plan, &reason, counters, &clean, &summary],
    )
    .await?
    .get(0))
}

/// How long ago the plan's latest evidence snapshot taken for one of `reasons` was
/// taken, by the server's clock (None: there is none).
pub async fn latest_evidence_age<C: GenericClient>(
    c: &C,
    plan: &str,
    reasons: &[&str],
) -> Result<Option<std::time::Duration>, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT (extract(epoch FROM clock_timestamp() - max(taken_at)) * 1000)::bigint
           FROM pgphase.evidence_snapshots WHERE plan_name = $1 AND reason = ANY($2)",
        &[&plan, &reasons],
    )
    .await?
    .get::<_, Option<i64>>(0)
    .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)))
}

/// The latest check before contract of a plan, as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct EvidenceCheck {
    pub checked_at: DateTime<Utc>,
    /// Why it ran: `drain gate reached`, `phase advance`, `check-drain`.
    pub reason: String,
    /// Nothing used what contract drops since the check before it.
    pub clean: Option<bool>,
    pub summary: Option<String>,
}

/// [`EvidenceCheck`] of the plan's latest snapshot (None: never checked).
pub async fn latest_evidence_check<C: GenericClient>(
    c: &C,
    plan: &str,
) -> Result<Option<EvidenceCheck>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT taken_at, reason, clean, summary FROM pgphase.evidence_snapshots
              WHERE plan_name = $1 ORDER BY id DESC LIMIT 1",
        &[&plan],
    )
    .await?
    .map(|r| EvidenceCheck {
        checked_at: r.get(0),
        reason: r.get(1),
        clean: r.get(2),
        summary: r.get(3),
    }))
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    /// `pgphase.events.kind` keeps the text earlier versions stored.
    #[test]
    fn event_kinds_keep_their_stored_text() {
        let text: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            text,
            [
                "command",
                "refused",
                "phase",
                "step",
                "rollback",
                "error",
                "retry",
                "wait",
                "gate",
                "fence",
                "interrupted",
                "evidence",
                "backfill_waiting",
                "backfill_resumed",
                "backfill_control"
            ]
        );
    }
}
