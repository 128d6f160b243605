//! Running a stored plan's phases forward, step by step, recording each in the event
//! log and checkpointing; shared by `start` and `advance`.

use super::*;

/// Asks before running a point-of-no-return phase between `from` and the next gate.
pub(super) fn confirm_destructive(
    s: &Session,
    program: &Program,
    from: usize,
) -> Result<(), CmdError> {
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
/// Returns whether such a contract is ahead.
pub(super) async fn check_contract_ahead(
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

/// Runs phases from `from` until a gate or the end; stops at once, cancelling the
/// running statement, on a signal or when the plan's lock is lost.
pub(super) async fn run_phases(
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
    let settings = settings_of(&program, &s.actor);
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
                kind: EventKind::Phase,
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
                        StepOutcome::Backfilled {
                            rows,
                            batches,
                            pace,
                        } => format!(
                            "backfilled {rows} rows in {batches} batches: {}{}",
                            step.description,
                            pace.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
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
                            kind: EventKind::Step,
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
                                kind: EventKind::Error,
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
                kind: EventKind::Phase,
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
                if phases_until_gate(&program, i + 1).any(|p| p.point_of_no_return) {
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
            kind: EventKind::Command,
            message: "plan completed".into(),
            deployed_ref: deployed,
            ..Default::default()
        },
    )
    .await?;
    Ok(Outcome::Completed)
}

pub(super) async fn record_retries(
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
                kind: EventKind::Retry,
                message,
                deployed_ref: deployed,
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(())
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
