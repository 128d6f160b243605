//! `pgphase phase advance`: check the gate and the deploy fences, confirm the gate,
//! run on to the next gate or the end.

use super::phases::{check_contract_ahead, confirm_destructive, run_phases};
use super::*;

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
        // it may watch for a while: a signal or a lost lock stops it, nothing run
        let lock = l.lock_stop();
        let note = |m: &str| s.observer.note(m);
        let check = crate::evidence::before_contract(&l.control, &stored, opts.force, &note);
        match guarded(&lock, check).await {
            Ok(r) => r?,
            Err(reason) => return Err(l.stopped(s, reason).await),
        }
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
                kind: EventKind::Fence,
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
                kind: EventKind::Gate,
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
                kind: EventKind::Command,
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
    if !message.starts_with("evidence before contract: nothing uses") {
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
            kind: EventKind::Evidence,
            message,
            deployed_ref: Some(deployed),
            detail: Some(detail),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}
