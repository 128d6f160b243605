//! `pgphase phase rollback`: undo the phases since the last confirmed gate, last first,
//! and check the schema is back where it was.

use super::phases::record_retries;
use super::*;

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
            kind: EventKind::Command,
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
    let settings = settings_of(&stored.program, &s.actor);
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
                            kind: EventKind::Rollback,
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
                                kind: EventKind::Error,
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
                kind: EventKind::Command,
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
            kind: EventKind::Command,
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
    let plan = parse_stored(stored)
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
