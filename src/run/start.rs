//! `pgphase start`: refuse what cannot finish (checksum, dependencies, privileges),
//! record the plan, run up to its first deploy gate.

use super::phases::{check_contract_ahead, run_phases};
use super::*;

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
    let crate::catalog::privileges::Gaps { missing, grants } =
        crate::catalog::privileges::gaps(client, &tables, &schemas).await?;
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
            grants.join(" ")
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
                    kind: EventKind::Command,
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
    // Evidence is checked when the drain gate is confirmed (`advance`), not on a resume.
    check_contract_ahead(l, &stored, from).await?;
    if from > 0 {
        store::record(
            &*l.control,
            name,
            &s.actor,
            Event {
                kind: EventKind::Command,
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

async fn check_dependencies(
    control: &Client,
    deps: &[crate::plan::At<String>],
    name: &str,
) -> Result<(), CmdError> {
    for dep in deps.iter().map(|d| &d.value) {
        let status = store::plan_status(control, dep).await?;
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
