//! The plan state machine as a pure function: (state, command) → decision.
//!
//! Persistence (src/state/store.rs) loads a [`PlanState`], asks [`decide`], and carries
//! out the decision under the plan's advisory lock with compare-and-set writes.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// A phase is running (or was, if its process died: see `interrupted`).
    Running,
    /// Stopped at a gate until an operator confirms the deploy.
    AwaitingDeploy,
    Completed,
    /// A rollback is running (or was interrupted).
    RollingBack,
    RolledBack,
    /// A step failed; the error is recorded. Re-running the command resumes.
    Failed,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Running => "running",
            PlanStatus::AwaitingDeploy => "awaiting_deploy",
            PlanStatus::Completed => "completed",
            PlanStatus::RollingBack => "rolling_back",
            PlanStatus::RolledBack => "rolled_back",
            PlanStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<PlanStatus> {
        Some(match s {
            "running" => PlanStatus::Running,
            "awaiting_deploy" => PlanStatus::AwaitingDeploy,
            "completed" => PlanStatus::Completed,
            "rolling_back" => PlanStatus::RollingBack,
            "rolled_back" => PlanStatus::RolledBack,
            "failed" => PlanStatus::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Pending,
    Running,
    Completed,
    Failed,
    RolledBack,
}

impl PhaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Pending => "pending",
            PhaseStatus::Running => "running",
            PhaseStatus::Completed => "completed",
            PhaseStatus::Failed => "failed",
            PhaseStatus::RolledBack => "rolled_back",
        }
    }
    pub fn parse(s: &str) -> Option<PhaseStatus> {
        Some(match s {
            "pending" => PhaseStatus::Pending,
            "running" => PhaseStatus::Running,
            "completed" => PhaseStatus::Completed,
            "failed" => PhaseStatus::Failed,
            "rolled_back" => PhaseStatus::RolledBack,
            _ => return None,
        })
    }
    /// The phase changed the schema (fully or partly) and has not been undone.
    pub fn touched(self) -> bool {
        matches!(
            self,
            PhaseStatus::Running | PhaseStatus::Completed | PhaseStatus::Failed
        )
    }
}

/// What `decide` needs to know about one phase.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseState {
    pub name: String,
    pub status: PhaseStatus,
    pub has_gate: bool,
    pub gate_confirmed: bool,
    pub point_of_no_return: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlanState {
    pub status: PlanStatus,
    pub phases: Vec<PhaseState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Advance,
    Rollback,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Advance => "phase advance",
            Command::Rollback => "phase rollback",
        }
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Run phases from `from` onward until a gate or the end. `confirm_gate` is the phase
    /// whose gate this command confirms first. `restart` resets a rolled-back plan.
    Run {
        from: usize,
        confirm_gate: Option<usize>,
        restart: bool,
    },
    /// Undo the touched phases, last first. A rollback crosses one confirmed deploy
    /// gate at a time: it undoes the phases after the last confirmed gate, back to the
    /// state the application deployed there works with, and reopens that gate
    /// (`reopen_gate`), so the operator rolls the application back before the next
    /// rollback undoes the phases before it.
    Rollback {
        phases: Vec<usize>,
        reopen_gate: Option<usize>,
    },
}

pub use crate::error::Refusal;

impl PlanState {
    /// The first phase not completed, if any.
    pub fn next_phase(&self) -> Option<usize> {
        self.phases
            .iter()
            .position(|p| p.status != PhaseStatus::Completed)
    }
    /// The completed phase whose gate is still open, directly before `next_phase`.
    pub fn open_gate(&self) -> Option<usize> {
        let next = self.next_phase().unwrap_or(self.phases.len());
        if next == 0 {
            return None;
        }
        let prev = &self.phases[next - 1];
        (prev.status == PhaseStatus::Completed && prev.has_gate && !prev.gate_confirmed)
            .then_some(next - 1)
    }
    pub fn contract_begun(&self) -> bool {
        self.phases.iter().any(|p| {
            p.point_of_no_return
                && p.status != PhaseStatus::Pending
                && p.status != PhaseStatus::RolledBack
        })
    }
}

/// The transition function. `state` is None when the plan was never started.
pub fn decide(
    state: Option<&PlanState>,
    command: Command,
    plan: &str,
) -> Result<Decision, Refusal> {
    let Some(s) = state else {
        return match command {
            Command::Start => Ok(Decision::Run { from: 0, confirm_gate: None, restart: false }),
            _ => Err(Refusal {
                reason: format!("plan `{plan}` has not been started in this database"),
                fix: "run `pgphase start <FILE>` first (`pgphase status` lists the plans this database knows)".into(),
            }),
        };
    };
    let status = s.status;
    match command {
        Command::Start => match status {
            PlanStatus::RolledBack => Ok(Decision::Run { from: 0, confirm_gate: None, restart: true }),
            PlanStatus::Completed => Err(Refusal {
                reason: format!("plan `{plan}` is already completed"),
                fix: "nothing to do; `pgphase history` shows what ran".into(),
            }),
            PlanStatus::AwaitingDeploy => Err(Refusal {
                reason: format!("plan `{plan}` is waiting at a deploy gate"),
                fix: format!("deploy, then run `pgphase phase advance {plan} --deployed <REF>`; or `pgphase phase rollback {plan}`"),
            }),
            PlanStatus::RollingBack => Err(Refusal {
                reason: format!("a rollback of `{plan}` did not finish"),
                fix: format!("re-run `pgphase phase rollback {plan}` to finish it"),
            }),
            PlanStatus::Running | PlanStatus::Failed => {
                if let Some(g) = s.open_gate() {
                    return Err(Refusal {
                        reason: format!("plan `{plan}` is waiting for the deploy after phase `{}`", s.phases[g].name),
                        fix: format!("run `pgphase phase advance {plan} --deployed <REF>`"),
                    });
                }
                let from = s.next_phase().unwrap_or(s.phases.len());
                if gated_before(s, from) {
                    return Err(Refusal {
                        reason: format!(
                            "plan `{plan}` stopped in phase `{}`, after a confirmed deploy gate",
                            s.phases[from].name
                        ),
                        fix: format!("resume it with `pgphase phase advance {plan} --deployed <REF>`, or roll back with `pgphase phase rollback {plan}`"),
                    });
                }
                Ok(Decision::Run { from, confirm_gate: None, restart: false })
            }
        },
        Command::Advance => match status {
            PlanStatus::AwaitingDeploy => {
                let g = s.open_gate().ok_or_else(|| Refusal {
                    reason: format!("plan `{plan}` is marked awaiting_deploy but no gate is open (inconsistent state)"),
                    fix: "report this; `pgphase history` shows the last events".into(),
                })?;
                Ok(Decision::Run { from: g + 1, confirm_gate: Some(g), restart: false })
            }
            PlanStatus::Running | PlanStatus::Failed => {
                if let Some(g) = s.open_gate() {
                    return Ok(Decision::Run { from: g + 1, confirm_gate: Some(g), restart: false });
                }
                let from = s.next_phase().unwrap_or(s.phases.len());
                if gated_before(s, from) {
                    Ok(Decision::Run { from, confirm_gate: None, restart: false })
                } else {
                    Err(Refusal {
                        reason: format!("plan `{plan}` stopped in phase `{}`, before any deploy gate", s.phases[from.min(s.phases.len() - 1)].name),
                        fix: "resume it with `pgphase start <FILE>` (the same file)".into(),
                    })
                }
            }
            PlanStatus::Completed => Err(Refusal {
                reason: format!("plan `{plan}` is already completed"),
                fix: "nothing to advance; `pgphase status` shows every plan".into(),
            }),
            PlanStatus::RolledBack => Err(Refusal {
                reason: format!("plan `{plan}` was rolled back"),
                fix: "start it again with `pgphase start <FILE>`".into(),
            }),
            PlanStatus::RollingBack => Err(Refusal {
                reason: format!("a rollback of `{plan}` did not finish"),
                fix: format!("re-run `pgphase phase rollback {plan}` to finish it"),
            }),
        },
        Command::Rollback => {
            if matches!(status, PlanStatus::Completed) {
                return Err(Refusal {
                    reason: format!("plan `{plan}` is completed: its contract phase removed the old schema, so there is nothing to roll back to"),
                    fix: "to undo the change, write a new plan that reverses it (for example a rename back)".into(),
                });
            }
            if s.contract_begun() {
                return Err(Refusal {
                    reason: format!("plan `{plan}` has begun its contract phase, the point of no return: the old schema no longer exists"),
                    fix: format!("finish it with `pgphase phase advance {plan} --deployed <REF>` (or `pgphase start` if it stopped before a gate); undo it with a new plan"),
                });
            }
            if matches!(status, PlanStatus::RolledBack) {
                return Err(Refusal {
                    reason: format!("plan `{plan}` is already rolled back"),
                    fix: "nothing to undo; start it again with `pgphase start <FILE>`".into(),
                });
            }
            let reopen_gate = (0..s.phases.len())
                .rev()
                .find(|&i| s.phases[i].has_gate && s.phases[i].gate_confirmed);
            let phases: Vec<usize> = (0..s.phases.len())
                .rev()
                .filter(|&i| reopen_gate.is_none_or(|g| i > g))
                .filter(|&i| s.phases[i].status.touched())
                .collect();
            Ok(Decision::Rollback {
                phases,
                reopen_gate,
            })
        }
    }
}

/// Whether a plan has reached a phase, for `pgphase check --at-least`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reached {
    /// The phase is completed (or the whole plan is).
    Yes,
    /// Not yet: the phase's own status.
    No(PhaseStatus),
    /// The plan has no phase of that name.
    NoSuchPhase,
}

impl PlanState {
    /// The phase named `phase` is completed, or the plan is. A phase that completed
    /// and was then rolled back is not reached.
    pub fn reached(&self, phase: &str) -> Reached {
        let Some(p) = self.phases.iter().find(|p| p.name == phase) else {
            return Reached::NoSuchPhase;
        };
        if self.status == PlanStatus::Completed || p.status == PhaseStatus::Completed {
            Reached::Yes
        } else {
            Reached::No(p.status)
        }
    }
}

/// What `phase advance --gate PHASE` finds when it checks that the plan waits at the
/// gate the operator means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateCheck {
    /// The plan waits at (or, after an interruption, just past) that gate: go on.
    Proceed,
    /// That gate was confirmed earlier and the plan has moved on: a repeated command
    /// (a retried pipeline job) does nothing.
    AlreadyConfirmed,
}

/// Checks an `advance` that names the gate it confirms (`--gate PHASE`, the phase the
/// gate follows) against the state, so a repeated or late command cannot confirm the
/// *next* gate. Pure; `decide` still judges the command itself.
pub fn check_gate(s: &PlanState, phase: &str, plan: &str) -> Result<GateCheck, Refusal> {
    let gated: Vec<&str> = s
        .phases
        .iter()
        .take(s.phases.len().saturating_sub(1))
        .filter(|p| p.has_gate)
        .map(|p| p.name.as_str())
        .collect();
    let Some(g) = s
        .phases
        .iter()
        .position(|p| p.name == phase && p.has_gate)
        .filter(|&g| g + 1 < s.phases.len())
    else {
        return Err(Refusal {
            reason: format!(
                "plan `{plan}` has no deploy gate after phase `{phase}`; its gates follow: {}",
                if gated.is_empty() {
                    "none".to_string()
                } else {
                    gated.join(", ")
                }
            ),
            fix:
                "name one of those phases with --gate (`pgphase status` shows where the plan waits)"
                    .into(),
        });
    };
    if s.phases[g].gate_confirmed {
        // Confirmed earlier: a resume is right only while no later gate was reached.
        let later_gate = s.phases[g + 1..]
            .iter()
            .take(s.phases.len() - g - 2)
            .any(|p| p.has_gate && p.status == PhaseStatus::Completed);
        if s.status == PlanStatus::Completed || later_gate {
            return Ok(GateCheck::AlreadyConfirmed);
        }
        return Ok(GateCheck::Proceed);
    }
    if s.open_gate() == Some(g) {
        return Ok(GateCheck::Proceed);
    }
    let at = match s.open_gate() {
        Some(o) => format!("waits at the gate after phase `{}`", s.phases[o].name),
        None => match s.next_phase() {
            Some(n) => format!(
                "is in phase `{}` ({})",
                s.phases[n].name,
                s.phases[n].status.as_str()
            ),
            None => "has no open gate".to_string(),
        },
    };
    Err(Refusal {
        reason: format!(
            "plan `{plan}` {at}, not at the gate after `{phase}`; nothing was confirmed"
        ),
        fix: format!("check `pgphase status {plan}`; confirm the gate it waits at by naming that phase with --gate"),
    })
}

/// Where a rollback goes back to, as `phase rollback --to` names it: `start` (before
/// the plan) or a phase whose deploy gate it reopens.
pub const BEFORE_THE_PLAN: &str = "start";

/// What `phase rollback --to TARGET` finds when it checks where the rollback would go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackCheck {
    /// The rollback goes back to `TARGET`: go on.
    Proceed,
    /// The plan is at `TARGET` already (a retried pipeline job): nothing to do.
    AlreadyThere,
}

/// Where a rollback of `s` goes back to: the gate it reopens, or [`BEFORE_THE_PLAN`].
pub fn rollback_target(s: &PlanState, plan: &str) -> Result<String, Refusal> {
    match decide(Some(s), Command::Rollback, plan)? {
        Decision::Rollback {
            reopen_gate: Some(g),
            ..
        } => Ok(s.phases[g].name.clone()),
        _ => Ok(BEFORE_THE_PLAN.to_string()),
    }
}

/// Checks a rollback that names where it goes back to (`--to TARGET`), so a repeated
/// command cannot roll back past the gate it meant: each rollback crosses one deploy
/// gate, and the next one is right only after the application was rolled back.
pub fn check_rollback_target(
    s: &PlanState,
    to: &str,
    plan: &str,
) -> Result<RollbackCheck, Refusal> {
    let last = s.phases.len().saturating_sub(1);
    let gated: Vec<&str> = s.phases[..last]
        .iter()
        .filter(|p| p.has_gate)
        .map(|p| p.name.as_str())
        .collect();
    if to != BEFORE_THE_PLAN && !gated.contains(&to) {
        return Err(Refusal {
            reason: format!(
                "`--to {to}`: plan `{plan}` has no deploy gate after a phase `{to}`; a rollback goes back to one of its gates ({}) or to `{BEFORE_THE_PLAN}`",
                if gated.is_empty() { "none".to_string() } else { gated.join(", ") }
            ),
            fix: "name the gate the rollback should reopen (`pgphase status` shows the plan's phases)".into(),
        });
    }
    let there = match to {
        BEFORE_THE_PLAN => s.status == PlanStatus::RolledBack,
        gate => {
            s.status == PlanStatus::AwaitingDeploy
                && s.open_gate().is_some_and(|g| s.phases[g].name == gate)
        }
    };
    if there {
        return Ok(RollbackCheck::AlreadyThere);
    }
    let target = rollback_target(s, plan)?;
    if target == to {
        return Ok(RollbackCheck::Proceed);
    }
    Err(Refusal {
        reason: format!(
            "a rollback of plan `{plan}` now goes back to {}, not to {}; nothing was rolled back",
            describe_target(&target),
            describe_target(to)
        ),
        fix: format!("check `pgphase status {plan}`; a rollback crosses one deploy gate at a time, and the next one only after the application was rolled back to the version before that gate's deploy"),
    })
}

fn describe_target(t: &str) -> String {
    if t == BEFORE_THE_PLAN {
        "before the plan (`--to start`)".to_string()
    } else {
        format!("the deploy gate after `{t}` (`--to {t}`)")
    }
}

/// A confirmed gate lies before phase `from`: resuming it belongs to `advance`.
fn gated_before(s: &PlanState, from: usize) -> bool {
    s.phases[..from.min(s.phases.len())]
        .iter()
        .any(|p| p.has_gate && p.gate_confirmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(status: PlanStatus, phases: &[(PhaseStatus, bool, bool)]) -> PlanState {
        PlanState {
            status,
            phases: phases
                .iter()
                .enumerate()
                .map(|(i, &(s, gate, confirmed))| PhaseState {
                    name: format!("p{i}"),
                    status: s,
                    has_gate: gate,
                    gate_confirmed: confirmed,
                    point_of_no_return: i == phases.len() - 1,
                })
                .collect(),
        }
    }
    use PhaseStatus::*;

    #[test]
    fn fresh_start() {
        assert_eq!(
            decide(None, Command::Start, "x"),
            Ok(Decision::Run {
                from: 0,
                confirm_gate: None,
                restart: false
            })
        );
        assert!(decide(None, Command::Advance, "x").is_err());
        assert!(decide(None, Command::Rollback, "x").is_err());
    }

    #[test]
    fn gate_then_advance() {
        let s = st(
            PlanStatus::AwaitingDeploy,
            &[
                (Completed, false, false),
                (Completed, true, false),
                (Pending, true, false),
                (Pending, false, false),
            ],
        );
        assert!(decide(Some(&s), Command::Start, "x").is_err());
        assert_eq!(
            decide(Some(&s), Command::Advance, "x"),
            Ok(Decision::Run {
                from: 2,
                confirm_gate: Some(1),
                restart: false
            })
        );
        assert_eq!(
            decide(Some(&s), Command::Rollback, "x"),
            Ok(Decision::Rollback {
                phases: vec![1, 0],
                reopen_gate: None
            })
        );
    }

    #[test]
    fn failure_before_gate_resumes_with_start() {
        let s = st(
            PlanStatus::Failed,
            &[
                (Completed, false, false),
                (Failed, true, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(
            decide(Some(&s), Command::Start, "x"),
            Ok(Decision::Run {
                from: 1,
                confirm_gate: None,
                restart: false
            })
        );
        assert!(decide(Some(&s), Command::Advance, "x").is_err());
        assert_eq!(
            decide(Some(&s), Command::Rollback, "x"),
            Ok(Decision::Rollback {
                phases: vec![1, 0],
                reopen_gate: None
            })
        );
    }

    #[test]
    fn failure_after_gate_resumes_with_advance() {
        let s = st(
            PlanStatus::Failed,
            &[
                (Completed, true, true),
                (Failed, false, false),
                (Pending, false, false),
            ],
        );
        assert!(decide(Some(&s), Command::Start, "x").is_err());
        assert_eq!(
            decide(Some(&s), Command::Advance, "x"),
            Ok(Decision::Run {
                from: 1,
                confirm_gate: None,
                restart: false
            })
        );
    }

    #[test]
    fn no_rollback_once_contract_began() {
        let s = st(
            PlanStatus::Failed,
            &[(Completed, true, true), (Failed, false, false)],
        );
        assert!(decide(Some(&s), Command::Rollback, "x").is_err());
        let done = st(
            PlanStatus::Completed,
            &[(Completed, true, true), (Completed, false, false)],
        );
        assert!(decide(Some(&done), Command::Rollback, "x").is_err());
        assert!(decide(Some(&done), Command::Advance, "x").is_err());
        assert!(decide(Some(&done), Command::Start, "x").is_err());
    }

    #[test]
    fn reached() {
        let s = st(
            PlanStatus::AwaitingDeploy,
            &[
                (Completed, false, false),
                (Completed, true, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(s.reached("p1"), Reached::Yes);
        assert_eq!(s.reached("p2"), Reached::No(Pending));
        assert_eq!(s.reached("nope"), Reached::NoSuchPhase);
        let rolled = st(
            PlanStatus::RolledBack,
            &[(RolledBack, true, false), (Pending, false, false)],
        );
        assert_eq!(rolled.reached("p0"), Reached::No(RolledBack));
        let done = st(
            PlanStatus::Completed,
            &[(Completed, true, true), (Completed, false, false)],
        );
        assert_eq!(done.reached("p1"), Reached::Yes);
    }

    #[test]
    fn rolled_back_plan_restarts() {
        let s = st(
            PlanStatus::RolledBack,
            &[(RolledBack, true, false), (Pending, false, false)],
        );
        assert_eq!(
            decide(Some(&s), Command::Start, "x"),
            Ok(Decision::Run {
                from: 0,
                confirm_gate: None,
                restart: true
            })
        );
        assert!(decide(Some(&s), Command::Rollback, "x").is_err());
    }

    #[test]
    fn rollback_crosses_one_confirmed_gate_at_a_time() {
        // p0 gate confirmed, p1 gate confirmed, p2 failed, p3 contract pending
        let s = st(
            PlanStatus::Failed,
            &[
                (Completed, true, true),
                (Completed, true, true),
                (Failed, false, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(
            decide(Some(&s), Command::Rollback, "x"),
            Ok(Decision::Rollback {
                phases: vec![2],
                reopen_gate: Some(1)
            })
        );
        // back at the gate after p1, reopened: the next rollback undoes p1, reopens p0
        let s = st(
            PlanStatus::AwaitingDeploy,
            &[
                (Completed, true, true),
                (Completed, true, false),
                (RolledBack, false, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(
            decide(Some(&s), Command::Rollback, "x"),
            Ok(Decision::Rollback {
                phases: vec![1],
                reopen_gate: Some(0)
            })
        );
    }

    #[test]
    fn a_named_rollback_target_guards_against_a_repeated_rollback() {
        use PhaseStatus::*;
        // p0 gate (confirmed), p1 gate (open), p2 contract
        let at_second = st(
            PlanStatus::AwaitingDeploy,
            &[
                (Completed, true, true),
                (Completed, true, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(rollback_target(&at_second, "x").unwrap(), "p0");
        assert_eq!(
            check_rollback_target(&at_second, "p0", "x"),
            Ok(RollbackCheck::Proceed)
        );
        let r = check_rollback_target(&at_second, "start", "x").unwrap_err();
        assert!(
            r.reason.contains(
                "now goes back to the deploy gate after `p0` (`--to p0`), not to before the plan"
            ),
            "{r:?}"
        );
        let r = check_rollback_target(&at_second, "p2", "x").unwrap_err();
        assert!(r.reason.contains("its gates (p0, p1)"), "{r:?}");
        // the rollback to p0 went through: a repeat does nothing, the next goes on
        let at_first = st(
            PlanStatus::AwaitingDeploy,
            &[
                (Completed, true, false),
                (RolledBack, true, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(
            check_rollback_target(&at_first, "p0", "x"),
            Ok(RollbackCheck::AlreadyThere)
        );
        assert_eq!(
            check_rollback_target(&at_first, "start", "x"),
            Ok(RollbackCheck::Proceed)
        );
        let rolled_back = st(
            PlanStatus::RolledBack,
            &[
                (RolledBack, true, false),
                (RolledBack, true, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(
            check_rollback_target(&rolled_back, "start", "x"),
            Ok(RollbackCheck::AlreadyThere)
        );
    }

    #[test]
    fn named_gate_guards_against_a_repeated_advance() {
        // p0 gate, p1 gate, p2 (contract)
        let waiting_first = st(
            PlanStatus::AwaitingDeploy,
            &[
                (Completed, true, false),
                (Pending, true, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(
            check_gate(&waiting_first, "p0", "x"),
            Ok(GateCheck::Proceed)
        );
        // naming the second gate while the first is open: refused
        let r = check_gate(&waiting_first, "p1", "x").unwrap_err();
        assert!(
            r.reason.contains("waits at the gate after phase `p0`"),
            "{r:?}"
        );
        // no such gate (p2 is the last phase)
        let r = check_gate(&waiting_first, "p2", "x").unwrap_err();
        assert!(r.reason.contains("its gates follow: p0, p1"), "{r:?}");
        // the first advance went through: a repeat of it does nothing
        let waiting_second = st(
            PlanStatus::AwaitingDeploy,
            &[
                (Completed, true, true),
                (Completed, true, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(
            check_gate(&waiting_second, "p0", "x"),
            Ok(GateCheck::AlreadyConfirmed)
        );
        assert_eq!(
            check_gate(&waiting_second, "p1", "x"),
            Ok(GateCheck::Proceed)
        );
        // the first advance failed in p1: a repeat resumes it
        let failed_after_first = st(
            PlanStatus::Failed,
            &[
                (Completed, true, true),
                (Failed, true, false),
                (Pending, false, false),
            ],
        );
        assert_eq!(
            check_gate(&failed_after_first, "p0", "x"),
            Ok(GateCheck::Proceed)
        );
        let done = st(
            PlanStatus::Completed,
            &[
                (Completed, true, true),
                (Completed, true, true),
                (Completed, false, false),
            ],
        );
        assert_eq!(
            check_gate(&done, "p1", "x"),
            Ok(GateCheck::AlreadyConfirmed)
        );
    }
}
