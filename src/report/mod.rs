//! The only part that prints: plan listings, status, history, progress.
//! Results go to stdout; progress and logs to stderr.

pub mod progress;

use chrono::{DateTime, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde::Serialize;
use serde_json::json;
use std::fmt::Write;
use std::io::IsTerminal;

use crate::program::{Action, Program};
use crate::run::Outcome;
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
        "  lock_timeout {}, {} lock attempts, backfill batches of {} rows, pause {}",
        humantime::format_duration(p.settings.lock_timeout),
        p.settings.lock_retries,
        p.settings.backfill.batch_size,
        humantime::format_duration(p.settings.backfill.pause)
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
        }
        if let Some(g) = &phase.gate {
            let _ = writeln!(o, "  ⏸ GATE — before the next phase:");
            for item in &g.items {
                let _ = writeln!(o, "       • {item}");
            }
            let _ = writeln!(
                o,
                "       then: pgphase phase advance {} --deployed <REF>",
                p.plan
            );
        }
        if !phase.rollback.is_empty() {
            let _ = writeln!(o, "  rollback of this phase:");
            for step in &phase.rollback {
                for line in step.display_sql().lines() {
                    let _ = writeln!(o, "       {line}");
                }
            }
        }
    }
    o
}

pub fn plan_json(p: &Program) -> serde_json::Value {
    json!({ "plan": p.plan, "description": p.description, "settings": p.settings, "notes": p.notes,
        "phases": p.phases.iter().map(|ph| json!({
            "phase": ph.kind, "point_of_no_return": ph.point_of_no_return,
            "gate": ph.gate.as_ref().map(|g| g.text()),
            "steps": ph.steps.iter().map(|s| json!({"description": s.description, "lock": s.lock,
                "transactional": s.runs_in_transaction(), "sql": s.display_sql()})).collect::<Vec<_>>(),
            "rollback": ph.rollback.iter().map(|s| s.display_sql()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>() })
}

/// The result of start / advance / rollback.
pub fn outcome_text(plan: &str, o: &Outcome) -> String {
    match o {
        Outcome::AwaitingDeploy { phase, gate } => format!(
            "plan {plan}: phase {phase} done; waiting at a deploy gate.\n  next: {gate}\n  then: pgphase phase advance {plan} --deployed <REF>\n"
        ),
        Outcome::Completed => format!("plan {plan}: completed.\n"),
        Outcome::RolledBack => format!("plan {plan}: rolled back; the schema is as it was before the plan.\n"),
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
    pub backfill: Vec<Progress>,
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
        PlanStatus::AwaitingDeploy => {
            Some(format!("pgphase phase advance {} --deployed <REF>", p.name))
        }
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
        backfill,
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn status_label(v: &PlanView) -> String {
    if v.interrupted {
        format!("{} (interrupted)", v.status)
    } else {
        v.status.to_string()
    }
}

fn progress_label(b: &[Progress]) -> String {
    b.iter()
        .filter(|p| p.finished_at.is_none())
        .map(|p| match p.rows_total {
            Some(t) if t > 0 => format!(
                "{}/{} rows ({:.0}%)",
                p.rows_done,
                t,
                100.0 * p.rows_done as f64 / t as f64
            ),
            _ => format!("{} rows", p.rows_done),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pgphase status` for all plans.
pub fn status_table(views: &[PlanView]) -> String {
    if views.is_empty() {
        return "no plans in this database yet (start one with `pgphase start FILE`)\n".into();
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if !std::io::stdout().is_terminal() {
        // no terminal width to fit: wrap long gate texts at a readable width
        t.set_width(120);
    }
    t.set_header(vec![
        "plan",
        "status",
        "phase",
        "waiting for",
        "backfill",
        "last gate",
    ]);
    for v in views {
        let last_gate = v
            .phases
            .iter()
            .rev()
            .find(|p| p.gate_confirmed_at.is_some())
            .map(|p| {
                format!(
                    "{} by {} at {}",
                    p.gate_deployed_ref.clone().unwrap_or_default(),
                    p.gate_confirmed_by.clone().unwrap_or_default(),
                    p.gate_confirmed_at.as_ref().map(ts).unwrap_or_default()
                )
            })
            .unwrap_or_default();
        t.add_row(vec![
            v.plan.clone(),
            status_label(v),
            v.current_phase.clone().unwrap_or_default(),
            v.waiting_for.clone().unwrap_or_default(),
            progress_label(&v.backfill),
            last_gate,
        ]);
    }
    // names and statuses never wrap; the gate text does
    for i in 0..3 {
        if let Some(c) = t.column_mut(i) {
            c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
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
    if let Some(c) = &v.next_command {
        let _ = writeln!(o, "  next: {c}");
    }
    o
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
