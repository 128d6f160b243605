//! The only part that prints: plan listings, status, history, progress.
//! Results go to stdout; progress and logs to stderr.

pub mod checklist;
pub mod convert;
pub mod fleet;
pub mod lint;
pub mod progress;
pub mod rate;
mod status;
pub mod style;
pub mod watch;

pub use status::status_views;

use chrono::{DateTime, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, ContentArrangement, Table};
use serde::Serialize;
use serde_json::json;
use std::fmt::Write;
use std::io::IsTerminal;

use crate::outcome::Outcome;
use crate::program::{Action, Program};
use crate::state::machine::{PhaseStatus, PlanStatus};
use crate::state::store::{EventRow, Progress, StoredPlan};

/// `pgphase plan`: phases, steps with lock level and SQL, gates.
pub fn plan_text(p: &Program) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "plan {}", p.plan);
    if let Some(d) = &p.description {
        let _ = writeln!(o, "  {d}");
    }
    let _ = writeln!(
        o,
        "  lock_timeout {}, {} lock attempts",
        humantime::format_duration(p.settings.lock_timeout),
        p.settings.lock_retries,
    );
    let b = &p.settings.backfill;
    let _ = writeln!(
        o,
        "  backfill batches of {} rows{}, max_app_wait {}, pause {}, yield_to_load {}",
        b.batch_size,
        if b.target_batch_time.is_zero() {
            " (fixed)".to_string()
        } else {
            format!(
                " adapting to {}",
                humantime::format_duration(b.target_batch_time)
            )
        },
        b.max_app_wait
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|| "off".into()),
        humantime::format_duration(b.pause),
        b.yield_to_load,
    );
    let _ = writeln!(
        o,
        "  backfill waits above: replica lag {}, slot lag {}, active sessions {}",
        b.max_replica_lag
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|| "off".into()),
        b.max_slot_lag
            .map(crate::health::fmt_bytes)
            .unwrap_or_else(|| "off".into()),
        b.max_active_sessions
            .map(|n| n.to_string())
            .unwrap_or_else(|| "off".into()),
    );
    for n in &p.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    for (i, phase) in p.phases.iter().enumerate() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "phase {}/{}: {}{}",
            i + 1,
            p.phases.len(),
            phase.kind,
            if phase.point_of_no_return {
                "  (POINT OF NO RETURN: no rollback after this phase begins)"
            } else {
                ""
            }
        );
        for (j, step) in phase.steps.iter().enumerate() {
            let _ = writeln!(
                o,
                "  {}.{} {}  [{}{}]",
                i + 1,
                j + 1,
                step.description,
                step.lock,
                match &step.action {
                    Action::Sql { .. } if step.lock.blocks_application() =>
                        ", under lock_timeout with retries",
                    Action::CreateIndexConcurrently { .. }
                    | Action::DropIndexConcurrently { .. } => ", outside a transaction",
                    Action::Backfill(_) => ", batched, resumable",
                    _ => "",
                }
            );
            for line in step.display_sql().lines() {
                let _ = writeln!(o, "       {line}");
            }
            if let Some(w) = step.row_type_warning() {
                let _ = writeln!(o, "       ⚠ {w}");
            }
        }
        if let Some(g) = &phase.gate {
            let _ = writeln!(o, "  ⏸ GATE — before the next phase:");
            for item in &g.items {
                let _ = writeln!(o, "       • {item}");
            }
            for w in &g.warnings {
                let _ = writeln!(o, "       ⚠ {w}");
            }
            let _ = writeln!(
                o,
                "       then: pgphase phase advance {} --gate {} --deployed <REF>",
                p.plan, phase.kind
            );
        }
        if !phase.rollback.is_empty() {
            let _ = writeln!(o, "  rollback of this phase:");
            for step in &phase.rollback {
                for line in step.display_sql().lines() {
                    let _ = writeln!(o, "       {line}");
                }
                if let Some(w) = step.row_type_warning() {
                    let _ = writeln!(o, "       ⚠ {w}");
                }
            }
        }
    }
    o
}

pub fn plan_json(p: &Program) -> serde_json::Value {
    let row_type_changes: Vec<serde_json::Value> = [false, true]
        .into_iter()
        .flat_map(|rollback| {
            p.row_type_steps(rollback)
                .into_iter()
                .map(move |(phase, s)| {
                    json!({"phase": phase, "rollback": rollback, "table": s.table,
                        "step": s.description, "message": s.row_type_warning()})
                })
        })
        .collect();
    json!({ "plan": p.plan, "description": p.description, "settings": p.settings, "notes": p.notes,
        "row_type_changes": row_type_changes,
        "phases": p.phases.iter().map(|ph| json!({
            "phase": ph.kind, "point_of_no_return": ph.point_of_no_return,
            "gate": ph.gate.as_ref().map(|g| g.text()),
            "steps": ph.steps.iter().map(|s| json!({"description": s.description, "lock": s.lock,
                "transactional": s.runs_in_transaction(), "sql": s.display_sql(),
                "changes_row_type": s.changes_row_type})).collect::<Vec<_>>(),
            "rollback": ph.rollback.iter().map(|s| s.display_sql()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>() })
}

/// The result of start / advance / rollback.
pub fn outcome_text(plan: &str, o: &Outcome) -> String {
    match o {
        Outcome::AwaitingDeploy { phase, gate } => format!(
            "plan {plan}: phase {phase} done; waiting at a deploy gate.\n  next: {gate}\n  then: pgphase phase advance {plan} --gate {phase} --deployed <REF>\n"
        ),
        Outcome::Completed => format!("plan {plan}: completed.\n"),
        Outcome::RolledBack => format!("plan {plan}: rolled back; the schema is as it was before the plan (compared with the catalog snapshot taken at start).\n"),
        Outcome::RolledBackUnchecked => format!("plan {plan}: rolled back; every undo step ran, but the schema was not compared with before the plan (it was started by a pgphase that took no catalog snapshot).\n"),
        Outcome::RolledBackToGate { phase, deployed, next_to } => format!(
            "plan {plan}: rolled back to the deploy gate after {phase}; the application deployed there{} still works with the schema.\n  next: roll the application back to the version before that deploy (drain the newer one)\n  then: pgphase phase rollback {plan} --to {next_to}   (undoes the rest; or `pgphase phase advance {plan} --gate {phase} --deployed <REF>` to go forward again)\n",
            deployed.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        Outcome::Underway { status, phase, next_command } => format!(
            "plan {plan}: already past its first deploy gate, {status} in phase {phase}; nothing to do for start.\n  next: {next_command}\n"
        ),
    }
}

pub fn outcome_json(plan: &str, o: &Outcome) -> serde_json::Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    v["plan"] = json!(plan);
    v
}

/// One plan as shown by `status`.
#[derive(Clone, Debug, Serialize)]
pub struct PlanView {
    pub plan: String,
    pub status: PlanStatus,
    /// The process running it died: a phase is `running` but nobody holds its lock.
    pub interrupted: bool,
    pub current_phase: Option<String>,
    pub waiting_for: Option<String>,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub next_command: Option<String>,
    pub phases: Vec<PhaseView>,
    pub backfill: Vec<BackfillView>,
    /// The most recent gate confirmation, if any.
    pub last_gate: Option<GateConfirmation>,
    /// The latest check before contract (see `crate::evidence`), if any ran.
    pub evidence: Option<crate::state::store::EvidenceCheck>,
}

/// A backfill's checkpoint with what it means: rate and ETA.
#[derive(Clone, Debug, Serialize)]
pub struct BackfillView {
    #[serde(flatten)]
    pub progress: Progress,
    /// The phase's name (`progress.phase` is its index).
    pub phase_name: Option<String>,
    /// The step's description.
    pub step_description: Option<String>,
    /// Not finished, and a live pgphase process is working on the plan.
    pub running: bool,
    /// Average rate since the backfill started (`rows_done` over `updated_at - started_at`).
    pub rows_per_sec: Option<f64>,
    /// Seconds left at that rate, while running (rows_total is an estimate).
    pub eta_seconds: Option<f64>,
}

impl BackfillView {
    pub fn percent(&self) -> Option<f64> {
        match self.progress.rows_total {
            Some(t) if t > 0 => {
                Some((100.0 * self.progress.rows_done as f64 / t as f64).min(100.0))
            }
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GateConfirmation {
    /// The phase the gate follows.
    pub phase: String,
    pub confirmed_by: String,
    pub deployed_ref: Option<String>,
    pub confirmed_at: DateTime<Utc>,
}

/// Rate and ETA of a backfill from its checkpoint row: the rate of its batches, the
/// time it waited on the database's health or the operator excluded.
pub fn backfill_rate(p: &Progress) -> (Option<f64>, Option<f64>) {
    // `updated_at` is the last batch's commit; a wait still going on began after it
    let secs = ((p.updated_at - p.started_at).num_milliseconds() - p.waited_ms) as f64 / 1000.0;
    if secs <= 0.0 || p.rows_done <= 0 {
        return (None, None);
    }
    let rate = p.rows_done as f64 / secs;
    let eta = p
        .rows_total
        .filter(|_| p.finished_at.is_none())
        .map(|t| ((t - p.rows_done).max(0)) as f64 / rate);
    (Some(rate), eta)
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseView {
    pub phase: String,
    pub status: PhaseStatus,
    pub steps_done: i32,
    pub steps_total: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub gate: Option<String>,
    pub gate_confirmed_by: Option<String>,
    pub gate_deployed_ref: Option<String>,
    pub gate_confirmed_at: Option<DateTime<Utc>>,
}

pub fn plan_view(p: &StoredPlan, lock_held: bool, backfill: Vec<Progress>) -> PlanView {
    let state = p.state();
    let interrupted =
        !lock_held && matches!(p.status, PlanStatus::Running | PlanStatus::RollingBack);
    let open_gate = state.open_gate();
    let waiting_for = match (p.status, open_gate) {
        (PlanStatus::AwaitingDeploy, Some(g)) => p.phases[g].gate.clone(),
        _ => None,
    };
    let current = p
        .phases
        .get(p.current_phase.max(0) as usize)
        .map(|ph| ph.kind.clone());
    let gated = p.phases.iter().any(|ph| ph.gate_confirmed_at.is_some());
    let next_command = match p.status {
        PlanStatus::AwaitingDeploy => Some(match open_gate {
            Some(g) => format!(
                "pgphase phase advance {} --gate {} --deployed <REF>",
                p.name, p.phases[g].kind
            ),
            None => format!("pgphase phase advance {} --deployed <REF>", p.name),
        }),
        PlanStatus::Failed | PlanStatus::Running
            if interrupted || p.status == PlanStatus::Failed =>
        {
            Some(if gated {
                format!("pgphase phase advance {} --deployed <REF>", p.name)
            } else {
                format!(
                    "pgphase start {}",
                    p.source_path.clone().unwrap_or_else(|| "<FILE>".into())
                )
            })
        }
        PlanStatus::RollingBack if interrupted => {
            Some(format!("pgphase phase rollback {}", p.name))
        }
        PlanStatus::RolledBack => Some(format!(
            "pgphase start {}",
            p.source_path.clone().unwrap_or_else(|| "<FILE>".into())
        )),
        _ => None,
    };
    PlanView {
        plan: p.name.clone(),
        status: p.status,
        interrupted,
        current_phase: current,
        waiting_for,
        started_by: p.started_by.clone(),
        started_at: p.started_at,
        updated_at: p.updated_at,
        last_error: p.last_error.clone(),
        next_command,
        phases: p
            .phases
            .iter()
            .map(|ph| PhaseView {
                phase: ph.kind.clone(),
                status: ph.status,
                steps_done: ph.steps_done,
                steps_total: ph.steps_total,
                started_at: ph.started_at,
                finished_at: ph.finished_at,
                gate: ph.gate.clone(),
                gate_confirmed_by: ph.gate_confirmed_by.clone(),
                gate_deployed_ref: ph.gate_deployed_ref.clone(),
                gate_confirmed_at: ph.gate_confirmed_at,
            })
            .collect(),
        backfill: backfill
            .into_iter()
            .map(|b| {
                let (rate, eta) = backfill_rate(&b);
                let running = b.finished_at.is_none()
                    && !interrupted
                    && matches!(p.status, PlanStatus::Running);
                let phase = p.program.phases.get(b.phase.max(0) as usize);
                BackfillView {
                    phase_name: phase.map(|ph| ph.kind.to_string()),
                    step_description: phase
                        .and_then(|ph| ph.steps.get(b.step.max(0) as usize))
                        .map(|st| st.description.clone()),
                    running,
                    rows_per_sec: rate,
                    eta_seconds: if running { eta } else { None },
                    progress: b,
                }
            })
            .collect(),
        last_gate: p
            .phases
            .iter()
            .filter_map(|ph| {
                ph.gate_confirmed_at.map(|at| GateConfirmation {
                    phase: ph.kind.clone(),
                    confirmed_by: ph.gate_confirmed_by.clone().unwrap_or_default(),
                    deployed_ref: ph.gate_deployed_ref.clone(),
                    confirmed_at: at,
                })
            })
            .max_by_key(|g| g.confirmed_at),
        evidence: None,
    }
}

/// Whether any plan is being worked on right now (for `status --watch`).
pub fn anything_running(views: &[PlanView]) -> bool {
    views.iter().any(|v| {
        !v.interrupted && matches!(v.status, PlanStatus::Running | PlanStatus::RollingBack)
    })
}

fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(crate) fn status_label(v: &PlanView) -> String {
    if v.interrupted {
        format!("{} (interrupted)", v.status)
    } else {
        v.status.to_string()
    }
}

/// `12.3k`, `4.1M`: short counts for rates.
pub fn short_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// `42s`, `3m10s`, `1h05m`.
pub fn short_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// One backfill as `45000/100000 rows (45%), 12k rows/s, ETA 4s`.
pub fn backfill_label(b: &BackfillView) -> String {
    let p = &b.progress;
    let mut o = match (p.rows_total, b.percent()) {
        // rounded down: 100% only once every row is done
        (Some(t), Some(pct)) => format!("{}/{} rows ({:.0}%)", p.rows_done, t, pct.floor()),
        _ => format!("{} rows", p.rows_done),
    };
    if let Some(r) = b.rows_per_sec {
        let _ = write!(o, ", {} rows/s", short_count(r));
    }
    if p.finished_at.is_some() {
        o.push_str(", done");
    } else if let (true, Some(why)) = (b.running, waiting_label(p)) {
        o.push_str(&why);
    } else if let Some(e) = b.eta_seconds {
        let _ = write!(o, ", ETA {}", short_duration(e));
    } else if !b.running {
        o.push_str(", not running");
    }
    o
}

/// `, waiting 12s: standby s1 replays 3.2s behind …` while a backfill waits.
fn waiting_label(p: &Progress) -> Option<String> {
    let holds = p.waiting.as_ref()?.as_array()?;
    let why = holds
        .iter()
        .filter_map(|h| h.get("message").and_then(|m| m.as_str()))
        .collect::<Vec<_>>()
        .join("; ");
    let since = p
        .waiting_since
        .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .map(|s| format!(" {}", short_duration(s)))
        .unwrap_or_default();
    Some(format!(", waiting{since}: {why}"))
}

fn progress_label(b: &[BackfillView]) -> String {
    b.iter()
        .filter(|p| p.progress.finished_at.is_none())
        .map(backfill_label)
        .collect::<Vec<_>>()
        .join("; ")
}

fn status_color(v: &PlanView) -> Color {
    if v.interrupted {
        return Color::Red;
    }
    match v.status {
        PlanStatus::Running => Color::Cyan,
        PlanStatus::AwaitingDeploy => Color::Yellow,
        PlanStatus::Completed => Color::Green,
        PlanStatus::RollingBack | PlanStatus::RolledBack => Color::Magenta,
        PlanStatus::Failed => Color::Red,
    }
}

fn last_gate_label(v: &PlanView) -> String {
    v.last_gate
        .as_ref()
        .map(|g| {
            format!(
                "{}\nby {}, {}\n(after {})",
                g.deployed_ref.clone().unwrap_or_default(),
                g.confirmed_by,
                g.confirmed_at.format("%Y-%m-%d %H:%M UTC"),
                g.phase
            )
        })
        .unwrap_or_default()
}

/// `pgphase status` for all plans. `color`: ANSI colours (a terminal without NO_COLOR).
pub fn status_table(views: &[PlanView], color: bool) -> String {
    if views.is_empty() {
        return "no plans in this database yet (start one with `pgphase start FILE`)\n".into();
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if !std::io::stdout().is_terminal() {
        // no terminal width to fit: wrap long gate texts at a readable width
        t.set_width(160);
    }
    let header = [
        "plan",
        "status",
        "phase",
        "waiting for",
        "backfill",
        "last gate",
    ];
    if color {
        t.enforce_styling();
        t.set_header(
            header
                .iter()
                .map(|h| Cell::new(h).add_attribute(comfy_table::Attribute::Bold)),
        );
    } else {
        t.set_header(header);
    }
    for v in views {
        let mut status = Cell::new(status_label(v));
        let mut backfill = Cell::new(progress_label(&v.backfill).replacen(", ", "\n", 1));
        if color {
            status = status.fg(status_color(v));
            if v.backfill.iter().any(|b| b.running) {
                backfill = backfill.fg(Color::Cyan);
            }
        }
        t.add_row(vec![
            Cell::new(&v.plan),
            status,
            Cell::new(v.current_phase.clone().unwrap_or_default()),
            Cell::new(v.waiting_for.clone().unwrap_or_default()),
            backfill,
            Cell::new(last_gate_label(v)),
        ]);
    }
    // names and statuses never wrap; the gate text does; progress and the last gate
    // keep a readable width
    for i in 0..3 {
        if let Some(c) = t.column_mut(i) {
            c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
        }
    }
    let busy = views
        .iter()
        .any(|v| !progress_label(&v.backfill).is_empty());
    for (i, min) in [(4, if busy { 24 } else { 0 }), (5, 22)] {
        if let Some(c) = t.column_mut(i) {
            c.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(
                comfy_table::Width::Fixed(min),
            ));
        }
    }
    format!("{t}\n")
}

/// `pgphase status PLAN`: the phase timeline.
pub fn status_detail(v: &PlanView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "plan {}: {}", v.plan, status_label(v));
    let _ = writeln!(o, "  started by {} at {}", v.started_by, ts(&v.started_at));
    if let Some(e) = &v.last_error {
        let _ = writeln!(o, "  last error: {e}");
    }
    for p in &v.phases {
        let mark = match p.status {
            PhaseStatus::Completed => "✔",
            PhaseStatus::Running => "▶",
            PhaseStatus::Failed => "✘",
            PhaseStatus::RolledBack => "↺",
            PhaseStatus::Pending => "·",
        };
        let _ = writeln!(
            o,
            "  {mark} {:<13} {:<11} steps {}/{}{}",
            p.phase,
            p.status.as_str(),
            p.steps_done,
            p.steps_total,
            p.finished_at
                .as_ref()
                .map(|t| format!("  finished {}", ts(t)))
                .unwrap_or_default()
        );
        if let Some(g) = &p.gate {
            match &p.gate_confirmed_at {
                Some(at) => {
                    let _ = writeln!(
                        o,
                        "      gate ✔ {} — deployed {} by {} at {}",
                        g,
                        p.gate_deployed_ref.clone().unwrap_or_default(),
                        p.gate_confirmed_by.clone().unwrap_or_default(),
                        ts(at)
                    );
                }
                None => {
                    let _ = writeln!(o, "      gate ⏸ {g}");
                }
            }
        }
    }
    let bf = progress_label(&v.backfill);
    if !bf.is_empty() {
        let _ = writeln!(o, "  backfill: {bf}");
    }
    if let Some(e) = &v.evidence {
        let _ = writeln!(o, "  evidence before contract: {}", evidence_check_label(e));
    }
    if let Some(c) = &v.next_command {
        let _ = writeln!(o, "  next: {c}");
    }
    o
}

/// The latest check before contract, on one line.
pub fn evidence_check_label(e: &crate::state::store::EvidenceCheck) -> String {
    format!(
        "{} at {} ({}){}",
        match e.clean {
            Some(true) => "clean",
            Some(false) => "STILL USED",
            None => "checked",
        },
        ts(&e.checked_at),
        e.reason,
        e.summary
            .as_deref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default()
    )
}

/// `pgphase history`.
pub fn history_text(events: &[EventRow]) -> String {
    let mut o = String::new();
    for e in events {
        let _ = writeln!(
            o,
            "{}  {:<10} {:<8} {:<13} {}{}{}",
            ts(&e.at),
            e.actor,
            e.kind,
            e.phase.clone().unwrap_or_default(),
            e.message,
            e.deployed_ref
                .as_ref()
                .map(|r| format!("  [deployed {r}]"))
                .unwrap_or_default(),
            e.duration_ms
                .map(|d| format!("  ({d} ms)"))
                .unwrap_or_default()
        );
    }
    if o.is_empty() {
        o.push_str("no events\n");
    }
    o
}

/// The answer of `pgphase check --plan NAME --at-least PHASE`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub plan: String,
    pub at_least: String,
    pub reached: bool,
    /// None when the plan was never started in this database.
    pub plan_status: Option<PlanStatus>,
    pub phase_status: Option<PhaseStatus>,
    pub current_phase: Option<String>,
    /// When the phase completed, if it did.
    pub completed_at: Option<DateTime<Utc>>,
    pub message: String,
}

impl CheckResult {
    pub fn not_started(plan: &str, phase: &str) -> CheckResult {
        CheckResult {
            plan: plan.into(),
            at_least: phase.into(),
            reached: false,
            plan_status: None,
            phase_status: None,
            current_phase: None,
            completed_at: None,
            message: format!(
                "plan `{plan}` has not been started in this database, so `{phase}` is not reached"
            ),
        }
    }

    pub fn of(p: &StoredPlan, phase: &str, reached: bool) -> CheckResult {
        let ph = p.phases.iter().find(|x| x.kind == phase);
        let current = p
            .phases
            .get(p.current_phase.max(0) as usize)
            .map(|x| x.kind.clone());
        let message = if reached && p.status == PlanStatus::Completed {
            format!("plan `{}` is completed: `{phase}` is reached", p.name)
        } else if reached {
            format!(
                "plan `{}` has reached `{phase}`: completed{} (the plan is {})",
                p.name,
                ph.and_then(|x| x.finished_at)
                    .map(|t| format!(" at {}", ts(&t)))
                    .unwrap_or_default(),
                p.status
            )
        } else {
            format!(
                "plan `{}` has not reached `{phase}`: the plan is {} at phase `{}`, and `{phase}` is {}",
                p.name,
                p.status,
                current.clone().unwrap_or_default(),
                ph.map(|x| x.status.as_str()).unwrap_or("unknown")
            )
        };
        CheckResult {
            plan: p.name.clone(),
            at_least: phase.into(),
            reached,
            plan_status: Some(p.status),
            phase_status: ph.map(|x| x.status),
            current_phase: current,
            completed_at: ph.and_then(|x| x.finished_at).filter(|_| reached),
            message,
        }
    }
}

pub fn check_text(r: &CheckResult) -> String {
    format!(
        "{}: {}\n",
        if r.reached { "reached" } else { "NOT reached" },
        r.message
    )
}

/// `pgphase check-drain`: the verdict, then each finding and limit.
pub fn evidence_text(ev: &crate::evidence::Evidence) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: {}",
        if ev.clean() { "drained" } else { "NOT drained" },
        ev.summary()
    );
    for l in ev.lines() {
        let _ = writeln!(o, "  {l}");
    }
    o
}

/// One stderr line per check of `check-drain --wait` that was not clean.
pub fn evidence_progress(ev: &crate::evidence::Evidence) -> String {
    format!("not drained yet: {}; checking again", ev.summary())
}

/// The deploy fences of a plan, after `pgphase plan`'s phases.
pub fn fences_text(fences: &[crate::plan::Fence]) -> String {
    let mut o = String::new();
    if fences.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\ndeploy fences (checked by `phase advance` when it confirms the gate):"
    );
    for f in fences {
        let _ = writeln!(
            o,
            "  at the gate after {}: no session of the database with an application_name LIKE '{}'",
            f.at_gate_after.value, f.no_application_name_like.value
        );
    }
    o
}

pub fn fences_json(fences: &[crate::plan::Fence]) -> serde_json::Value {
    json!(fences
        .iter()
        .map(|f| json!({
            "at_gate_after": f.at_gate_after.value,
            "no_application_name_like": f.no_application_name_like.value,
        }))
        .collect::<Vec<_>>())
}

/// The status a plan of `pgphase order` has, and whether it is the next to start.
fn order_rows<'a>(
    files: &'a [crate::plan::PlanFile],
    order: &crate::plan::set::Order,
    statuses: Option<&'a std::collections::BTreeMap<String, String>>,
) -> Vec<(usize, &'a crate::plan::PlanFile, Option<&'a str>, bool)> {
    let done =
        |name: &str| statuses.is_some_and(|s| s.get(name).is_some_and(|st| st == "completed"));
    let mut next_found = false;
    order
        .order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let f = &files[i];
            let status = statuses.map(|s| s.get(&f.plan.name).map_or("not started", |x| x.as_str()));
            let startable = statuses.is_some()
                && !next_found
                && matches!(status, Some("not started") | Some("rolled_back"))
                && f.plan.depends_on.iter().all(|d| done(&d.value));
            let in_flight = matches!(status, Some(s) if s != "completed" && s != "not started" && s != "rolled_back");
            if startable || in_flight {
                next_found = true;
            }
            (k + 1, f, status, startable)
        })
        .collect()
}

/// `pgphase order`: the plans, dependencies first.
pub fn order_text(
    files: &[crate::plan::PlanFile],
    order: &crate::plan::set::Order,
    statuses: Option<&std::collections::BTreeMap<String, String>>,
) -> String {
    let mut o = String::new();
    let rows = order_rows(files, order, statuses);
    let width = rows.iter().map(|r| r.1.plan.name.len()).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "{} plan(s), in the order to start them (dependencies first):",
        rows.len()
    );
    for (n, f, status, next) in &rows {
        let _ = write!(o, "  {n:>2}. {:<width$}  {}", f.plan.name, f.path.display());
        if let Some(st) = status {
            let _ = write!(o, "  [{st}]");
        }
        if *next {
            let _ = write!(o, "  ← next: pgphase start {}", f.path.display());
        }
        if !f.plan.depends_on.is_empty() {
            let deps: Vec<&str> = f.plan.depends_on.iter().map(|d| d.value.as_str()).collect();
            let _ = write!(o, "  (after {})", deps.join(", "));
        }
        let _ = writeln!(o);
    }
    for (plan, dep) in &order.outside {
        let _ = writeln!(
            o,
            "  note: `{plan}` depends on `{dep}`, which is not among these files: it must be completed in the database before `{plan}` starts"
        );
    }
    o
}

pub fn order_json(
    files: &[crate::plan::PlanFile],
    order: &crate::plan::set::Order,
    statuses: Option<&std::collections::BTreeMap<String, String>>,
) -> serde_json::Value {
    let rows = order_rows(files, order, statuses);
    json!({
        "plans": rows.iter().map(|(n, f, status, next)| json!({
            "position": n,
            "plan": f.plan.name,
            "file": f.path.display().to_string(),
            "depends_on": f.plan.depends_on.iter().map(|d| d.value.clone()).collect::<Vec<_>>(),
            "status": status,
            "next": next,
        })).collect::<Vec<_>>(),
        "outside": order.outside.iter().map(|(p, d)| json!({"plan": p, "depends_on": d})).collect::<Vec<_>>(),
    })
}
