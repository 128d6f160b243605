//! What the fleet commands print: each target's result, the fleet's status (counts per
//! phase and status, the databases behind or failed), the fleet's release checklist.

use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::fleet::{outcome_words, TargetReport, TargetResult, TargetStatus};
use crate::program::Program;

/// One target's result in words.
pub fn result_words(r: &TargetResult) -> String {
    match r {
        TargetResult::Done { outcome } => outcome_words(outcome),
        TargetResult::Already { detail } => format!("nothing to do: {detail}"),
        TargetResult::Behind { detail } => format!("behind, left as it is: {detail}"),
        TargetResult::Failed { error } => format!("FAILED: {error}"),
        TargetResult::Interrupted { error } => format!("INTERRUPTED: {error}"),
        TargetResult::Skipped { detail } => format!("skipped: {detail}"),
    }
}

/// The result of `fleet start|advance|rollback`: a line per target, then the count.
pub fn results_text(command: &str, plan: &str, reports: &[TargetReport]) -> String {
    let mut o = String::new();
    let width = reports.iter().map(|r| r.target.len()).max().unwrap_or(0);
    for r in reports {
        let _ = writeln!(
            o,
            "wave {}  {:width$}  {}",
            r.wave,
            r.target,
            result_words(&r.result).replace('\n', "\n        ")
        );
    }
    let ok = reports.iter().filter(|r| r.result.ok()).count();
    let _ = writeln!(
        o,
        "fleet {command} {plan}: {ok} of {} databases done{}",
        reports.len(),
        if ok == reports.len() {
            String::new()
        } else {
            "; re-run the same command to resume the rest (each database's own state says what is done)"
                .to_string()
        }
    );
    o
}

/// Where a target stands, as one key: `completed`, `awaiting_deploy after expand`, …
fn position(s: &TargetStatus) -> String {
    match (&s.waiting_at_gate, s.status.as_str()) {
        (Some(g), _) => format!("awaiting_deploy after {g}"),
        (None, "completed" | "rolled_back" | "not_started" | "unreachable") => s.status.clone(),
        (None, st) => format!("{st} in {}", s.phase.clone().unwrap_or_else(|| "?".into())),
    }
}

/// `fleet status`: how many databases stand where, then those behind the furthest or
/// failed, with why.
pub fn status_text(plan: &str, statuses: &[TargetStatus]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "plan {plan} across {} databases", statuses.len());
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in statuses {
        *counts.entry(position(s)).or_default() += 1;
    }
    let width = counts.keys().map(String::len).max().unwrap_or(0);
    for (k, n) in &counts {
        let _ = writeln!(o, "  {k:width$}  {n}");
    }
    let furthest = statuses.iter().map(|s| s.phases_done).max().unwrap_or(0);
    let lagging: Vec<&TargetStatus> = statuses
        .iter()
        .filter(|s| {
            s.phases_done < furthest
                || matches!(s.status.as_str(), "failed" | "unreachable")
                || (s.error.is_some() && s.status != "completed")
        })
        .collect();
    if !lagging.is_empty() {
        let _ = writeln!(o, "behind or failed:");
        for s in lagging {
            let _ = writeln!(
                o,
                "  wave {}  {}  {}{}",
                s.wave,
                s.target,
                position(s),
                s.error
                    .as_ref()
                    .map(|e| format!(": {}", e.replace('\n', " ")))
                    .unwrap_or_default()
            );
        }
    }
    o
}

/// What `fleet checklist` needs.
pub struct Checklist<'a> {
    pub plan: &'a str,
    /// The plan as the operator named it (file or name), for the commands.
    pub plan_arg: &'a str,
    /// The arguments that name the fleet (`--targets T`, `--targets-from-query 'Q'`).
    pub targets: &'a str,
    pub program: &'a Program,
    pub statuses: &'a [TargetStatus],
}

struct GateLine {
    phase: String,
    deploy: String,
    confirmed: usize,
    waiting: usize,
    point_of_no_return_next: bool,
}

fn gate_lines(c: &Checklist<'_>) -> Vec<GateLine> {
    let n = c.program.phases.len();
    c.program
        .phases
        .iter()
        .enumerate()
        .filter(|(i, p)| p.gate.is_some() && i + 1 < n)
        .map(|(i, p)| {
            let phase = p.kind.as_str().to_string();
            GateLine {
                deploy: p.gate.as_ref().map(|g| g.text()).unwrap_or_default(),
                confirmed: c
                    .statuses
                    .iter()
                    .filter(|s| s.gates_confirmed.contains(&phase))
                    .count(),
                waiting: c
                    .statuses
                    .iter()
                    .filter(|s| s.waiting_at_gate.as_deref() == Some(phase.as_str()))
                    .count(),
                point_of_no_return_next: c.program.phases[i + 1].point_of_no_return,
                phase,
            }
        })
        .collect()
}

/// `fleet checklist` as markdown: start, then each gate's deploy and the fleet command
/// after it, with how many databases are past it.
pub fn checklist_text(c: &Checklist<'_>) -> String {
    let total = c.statuses.len();
    let started = c
        .statuses
        .iter()
        .filter(|s| !matches!(s.status.as_str(), "not_started" | "unreachable"))
        .count();
    let tick = |done: bool| if done { "x" } else { " " };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Fleet release checklist: {} ({total} databases)\n",
        c.plan
    );
    let _ = writeln!(
        o,
        "- [{}] `pgphase fleet start {} {}` — started on {started}/{total}",
        tick(started == total),
        c.plan_arg,
        c.targets
    );
    for g in gate_lines(c) {
        let _ = writeln!(
            o,
            "- [{}] deploy, once for the fleet: {}",
            tick(g.confirmed == total),
            g.deploy
        );
        if g.point_of_no_return_next {
            let _ = writeln!(
                o,
                "  - point of no return next: after this gate no database can be rolled back"
            );
        }
        let _ = writeln!(
            o,
            "  - then `pgphase fleet advance {} --gate {} --deployed REF {}` — confirmed on {}/{total}, waiting at it: {}",
            c.plan_arg, g.phase, c.targets, g.confirmed, g.waiting
        );
    }
    let completed = c
        .statuses
        .iter()
        .filter(|s| s.status == "completed")
        .count();
    let _ = writeln!(
        o,
        "- [{}] completed on {completed}/{total}; `pgphase fleet status {} {}` lists the databases behind",
        tick(completed == total),
        c.plan,
        c.targets
    );
    let _ = writeln!(
        o,
        "\nTo roll back before the point of no return: `pgphase fleet rollback {} {} --to PHASE|start` (last wave first), after rolling the application back.",
        c.plan, c.targets
    );
    o
}

pub fn checklist_json(c: &Checklist<'_>) -> serde_json::Value {
    json!({
        "plan": c.plan,
        "databases": c.statuses.len(),
        "gates": gate_lines(c).iter().map(|g| json!({
            "after_phase": g.phase,
            "deploy": g.deploy,
            "confirmed_on": g.confirmed,
            "waiting_at_it": g.waiting,
            "point_of_no_return_next": g.point_of_no_return_next,
        })).collect::<Vec<_>>(),
        "completed_on": c.statuses.iter().filter(|s| s.status == "completed").count(),
    })
}
