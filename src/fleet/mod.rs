//! Fleets: one plan across many databases, in waves, with fleet-wide gates.
//!
//! A fleet is a loop with a policy around the per-database commands of [`crate::run`]:
//! each database keeps its own state in its own `pgphase` schema, exactly as with one
//! database, and the fleet adds no central state — what is done is what each database
//! says. So re-running a fleet command resumes only what is not done, and the state
//! machine of each database (not the fleet) decides what a command may do there: a
//! fleet `advance --gate G` confirms gate G on the databases waiting at it and on no
//! other gate.
//!
//! Waves run in order; within a wave at most `concurrency` databases run at once (one
//! task polls them all: the work is the servers', the limit is connections and load).
//! A database that fails or lags stops its wave from starting further databases and
//! the fleet from starting later waves (`on_error: stop`), or is set aside
//! (`on_error: continue`).

pub mod query;
pub mod targets;

pub use targets::{Fleet, OnError, Target};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::conn::ConnInfo;
use crate::error::CmdError;
use crate::outcome::Outcome;
use crate::plan::PlanFile;
use crate::run::{self, AdvanceOptions, Session};
use crate::state::machine::{check_gate, rollback_target, GateCheck, PlanStatus};
use crate::state::store::{self, StoredPlan};

/// What a fleet command did on one target.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TargetResult {
    /// The command ran there and left the plan here.
    Done { outcome: Outcome },
    /// Nothing to do: the database is there already.
    Already { detail: String },
    /// Not at the gate this command confirms (not started, failed before it, or at an
    /// earlier gate): left as it is.
    Behind { detail: String },
    /// Unreachable, refused, or a step failed (state recorded; the same command resumes).
    Failed { error: String },
    /// Stopped by SIGINT or SIGTERM at a safe point: the statement running was
    /// cancelled and the interruption recorded (the same command resumes).
    Interrupted { error: String },
    /// Not started because an earlier failure stopped the wave (`on_error: stop`) or the
    /// command was interrupted.
    Skipped { detail: String },
}

impl TargetResult {
    /// The database reached what the command asks.
    pub fn ok(&self) -> bool {
        matches!(
            self,
            TargetResult::Done { .. } | TargetResult::Already { .. }
        )
    }
    fn failed(e: CmdError) -> TargetResult {
        match e {
            CmdError::Interrupted(_) => TargetResult::Interrupted {
                error: e.to_string(),
            },
            e => TargetResult::Failed {
                error: e.to_string(),
            },
        }
    }
}

/// One target's line in a fleet command's result.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub target: String,
    /// 1-based.
    pub wave: usize,
    #[serde(flatten)]
    pub result: TargetResult,
}

/// Builds the session a per-database command runs with (actor, observer, confirmation).
pub type MakeSession<'a> = &'a (dyn Fn(&Target, ConnInfo) -> Session + Sync);

/// Told what a fleet command does as it happens (progress on stderr: lines, or bars on
/// a terminal).
pub trait FleetObserver: Sync {
    /// Wave `wave` (1-based) of `waves` starts, with `members` databases.
    fn wave_started(&self, _wave: usize, _waves: usize, _members: usize) {}
    /// The command starts on a database (its session is made after this).
    fn target_started(&self, _target: &Target, _wave: usize) {}
    /// A database's result (also for one skipped, never started).
    fn target_finished(&self, target: &Target, wave: usize, result: &TargetResult);
}

/// Told each target's result as it comes.
pub type OnResult<'a> = &'a dyn FleetObserver;

/// Runs `op` on every target, wave by wave (last wave first with `reverse`), at most
/// `fleet.concurrency` at once, applying `on_error`. A schema target's operation runs
/// with the plan's unqualified names resolving to its schema.
async fn each_wave<F, Fut>(
    fleet: &Fleet,
    reverse: bool,
    op: F,
    on_result: OnResult<'_>,
) -> Vec<TargetReport>
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = TargetResult>,
{
    let mut order: Vec<(usize, &Vec<usize>)> = fleet.waves.iter().enumerate().collect();
    if reverse {
        order.reverse();
    }
    let stop = AtomicBool::new(false);
    let mut reports = Vec::new();
    let waves = fleet.waves.len();
    for (w, members) in order {
        let wave = w + 1;
        let stop = &stop;
        let op = &op;
        on_result.wave_started(wave, waves, members.len());
        let results: Vec<(usize, TargetResult)> = stream::iter(members.iter().copied())
            .map(|i| async move {
                let t = &fleet.targets[i];
                let skipped = if let Some(reason) = crate::interrupt::signals().reason() {
                    stop.store(true, Ordering::SeqCst);
                    Some(format!("not started: {}", stop_words(&reason)))
                } else if stop.load(Ordering::SeqCst) {
                    Some("not started: a database failed or lagged and on_error is stop".into())
                } else {
                    None
                };
                if let Some(detail) = skipped {
                    let r = TargetResult::Skipped { detail };
                    on_result.target_finished(t, wave, &r);
                    return (i, r);
                }
                on_result.target_started(t, wave);
                let r = match &t.schema {
                    Some(s) => crate::sql::in_schema(s, op(t.clone())).await,
                    None => op(t.clone()).await,
                };
                let interrupted = matches!(r, TargetResult::Interrupted { .. });
                if interrupted || (!r.ok() && fleet.on_error == OnError::Stop) {
                    stop.store(true, Ordering::SeqCst);
                }
                on_result.target_finished(t, wave, &r);
                (i, r)
            })
            .buffer_unordered(fleet.concurrency)
            .collect()
            .await;
        let mut results = results;
        results.sort_by_key(|(i, _)| *i);
        reports.extend(results.into_iter().map(|(i, result)| TargetReport {
            target: fleet.targets[i].name.clone(),
            wave,
            result,
        }));
    }
    reports
}

fn stop_words(r: &crate::interrupt::StopReason) -> String {
    match r {
        crate::interrupt::StopReason::Signal(s) => format!("stopped by {}", s.name()),
        crate::interrupt::StopReason::LostLock(why) => format!("stopped: {why}"),
    }
}

/// The wave (1-based) of each target.
fn wave_of(fleet: &Fleet, index: usize) -> usize {
    fleet
        .waves
        .iter()
        .position(|w| w.contains(&index))
        .map(|w| w + 1)
        .unwrap_or(0)
}

/// The plan file as this target runs it: loaded in the target's schema (its unqualified
/// names resolve there; call inside [`crate::sql::in_schema`]), under the target's plan name.
fn load_for(target: &Target, path: &Path) -> Result<PlanFile, CmdError> {
    let mut f = PlanFile::load(path).map_err(|e| CmdError::Invalid(e.to_string()))?;
    if let Some(schema) = &target.schema {
        if let Some(c) = f.plan.changes.iter().find(|c| c.value.kind() == "sql") {
            return Err(CmdError::refused(
                format!(
                    "the plan has a `sql` change (line {}), whose statements run as written: they would not follow the target's schema `{schema}`",
                    c.pos.line
                ),
                "use change kinds for schema-per-tenant targets, or give the tenant its own plan file with qualified names",
            ));
        }
    }
    f.plan.name = target.plan_name(&f.plan.name);
    Ok(f)
}

fn conn_of(t: &Target) -> Result<ConnInfo, CmdError> {
    t.conn
        .clone()
        .map_err(|e| CmdError::Failed(anyhow::anyhow!("{e}")))
}

/// `fleet start FILE`: `start` on every database, wave by wave; a database already at
/// or past its first gate is left as it is.
pub async fn start(
    fleet: &Fleet,
    file: &Path,
    make: MakeSession<'_>,
    on_result: OnResult<'_>,
) -> Vec<TargetReport> {
    each_wave(
        fleet,
        false,
        |t: Target| async move {
            let t = &t;
            let r = async {
                let f = load_for(t, file)?;
                let s = make(t, conn_of(t)?);
                run::start(&s, &f).await
            }
            .await;
            match r {
                Ok(o @ Outcome::Underway { .. }) => TargetResult::Already {
                    detail: format!("past its first gate: {}", outcome_words(&o)),
                },
                Ok(outcome) => TargetResult::Done { outcome },
                Err(e) => TargetResult::failed(e),
            }
        },
        on_result,
    )
    .await
}

/// The plan as stored in a target's database (None: not started there).
async fn stored_plan(conn: &ConnInfo, name: &str) -> Result<Option<StoredPlan>, CmdError> {
    let client = conn.connect().await?;
    if !store::schema_exists(&client).await? {
        return Ok(None);
    }
    Ok(store::load_plan(&client, name).await?)
}

/// Whether a command holds the plan's lock in that database now.
async fn lock_held(conn: &ConnInfo, name: &str) -> Result<bool, CmdError> {
    let client = conn.connect().await?;
    Ok(store::lock_holder(&client, name).await?.is_some())
}

/// `fleet advance PLAN --gate G --deployed REF`: confirms gate G on every database that
/// waits at it (or stopped just past it) and runs each on to its next gate, wave by
/// wave. Databases elsewhere are left as they are (behind); with `wait`, a database a
/// command is working on right now (its plan's lock is held) is waited for.
#[allow(clippy::too_many_arguments)]
pub async fn advance(
    fleet: &Fleet,
    plan: &str,
    file: Option<&Path>,
    gate: &str,
    deployed: &str,
    wait: bool,
    make: MakeSession<'_>,
    on_result: OnResult<'_>,
) -> Vec<TargetReport> {
    each_wave(
        fleet,
        false,
        |t: Target| async move {
            let t = &t;
            let r = async {
                let f = file.map(|p| load_for(t, p)).transpose()?;
                let name = t.plan_name(plan);
                let conn = conn_of(t)?;
                loop {
                    let Some(st) = stored_plan(&conn, &name).await? else {
                        return Ok(TargetResult::Behind {
                            detail: "not started: run `pgphase fleet start` first".into(),
                        });
                    };
                    let state = st.state();
                    match check_gate(&state, gate, &name) {
                        Ok(GateCheck::AlreadyConfirmed) => {
                            return Ok(TargetResult::Already {
                                detail: format!(
                                    "gate after {gate} confirmed earlier; {}",
                                    where_words(&st)
                                ),
                            })
                        }
                        Ok(GateCheck::Proceed) => break,
                        Err(refusal) => {
                            let busy =
                                st.status == PlanStatus::Running && lock_held(&conn, &name).await?;
                            if wait && busy {
                                if let Some(r) = crate::interrupt::signals().reason() {
                                    return Err(CmdError::Failed(anyhow::anyhow!(
                                        "{} while waiting for it to reach the gate",
                                        stop_words(&r)
                                    )));
                                }
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                continue;
                            }
                            if st.program.phases.iter().all(|p| p.kind.as_str() != gate) {
                                return Err(refusal.into());
                            }
                            return Ok(TargetResult::Behind {
                                detail: format!(
                                    "{}{}",
                                    where_words(&st),
                                    if busy {
                                        " (a command is running on it now; --wait waits for it)"
                                    } else {
                                        ""
                                    }
                                ),
                            });
                        }
                    }
                }
                let s = make(t, conn);
                let options = AdvanceOptions {
                    force: false,
                    gate: Some(gate.to_string()),
                };
                let outcome = run::advance_with(&s, &name, deployed, f.as_ref(), options).await?;
                Ok(TargetResult::Done { outcome })
            }
            .await;
            r.unwrap_or_else(TargetResult::failed)
        },
        on_result,
    )
    .await
}

/// `fleet rollback PLAN [--to T]`: `phase rollback --to T` on every database, last wave
/// first. Without `to`, every started database must agree where its rollback goes
/// (the gate it reopens, or `start`); else the command is refused before any rollback,
/// naming the split, so a retried command never rolls a database back twice.
pub async fn rollback(
    fleet: &Fleet,
    plan: &str,
    to: Option<&str>,
    make: MakeSession<'_>,
    on_result: OnResult<'_>,
) -> Result<Vec<TargetReport>, CmdError> {
    let to = match to {
        Some(t) => t.to_string(),
        None => agreed_rollback_target(fleet, plan).await?,
    };
    let to = &to;
    Ok(each_wave(
        fleet,
        true,
        |t: Target| async move {
            let t = &t;
            let r = async {
                let name = t.plan_name(plan);
                let conn = conn_of(t)?;
                if stored_plan(&conn, &name).await?.is_none() {
                    return Ok(TargetResult::Already {
                        detail: "not started here".into(),
                    });
                }
                let s = make(t, conn);
                let outcome = run::rollback_to(&s, &name, Some(to)).await?;
                Ok(TargetResult::Done { outcome })
            }
            .await;
            r.unwrap_or_else(TargetResult::failed)
        },
        on_result,
    )
    .await)
}

async fn agreed_rollback_target(fleet: &Fleet, plan: &str) -> Result<String, CmdError> {
    let statuses = status(fleet, plan).await;
    let mut by_target: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &statuses {
        if let Some(t) = &s.rollback_to {
            by_target
                .entry(t.clone())
                .or_default()
                .push(s.target.clone());
        }
    }
    match by_target.len() {
        0 => Ok(crate::state::machine::BEFORE_THE_PLAN.to_string()),
        1 => Ok(by_target.into_keys().next().unwrap_or_default()),
        _ => Err(CmdError::refused(
            format!(
                "the databases would roll back to different places, so nothing was rolled back: {}",
                by_target
                    .iter()
                    .map(|(to, ts)| format!("to `{to}`: {}", ts.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "name where the fleet goes back to with --to PHASE|start (the databases there already are left as they are)",
        )),
    }
}

/// One target's state, for `fleet status`.
#[derive(Clone, Debug, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub wave: usize,
    pub labels: BTreeMap<String, String>,
    /// The plan's status there; `not_started`, or `unreachable` (see `error`).
    pub status: String,
    /// The phase it is in or last completed.
    pub phase: Option<String>,
    /// The phase whose deploy gate it waits at.
    pub waiting_at_gate: Option<String>,
    /// The phases whose gates were confirmed there, in order.
    pub gates_confirmed: Vec<String>,
    /// Phases completed.
    pub phases_done: usize,
    /// Where a rollback would go back to now (None when nothing to roll back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
    /// A command holds the plan's lock there now.
    pub running_now: bool,
    pub error: Option<String>,
}

/// Every target's state of `plan` (read-only, `concurrency` at once).
pub async fn status(fleet: &Fleet, plan: &str) -> Vec<TargetStatus> {
    let plan = plan_name_of(plan);
    let plan = plan.as_str();
    let mut out: Vec<TargetStatus> = stream::iter(fleet.targets.iter())
        .map(|t| async move {
            let name = t.plan_name(plan);
            let mut s = TargetStatus {
                target: t.name.clone(),
                wave: wave_of(fleet, t.index),
                labels: t.labels.clone(),
                status: "not_started".into(),
                phase: None,
                waiting_at_gate: None,
                gates_confirmed: Vec::new(),
                phases_done: 0,
                rollback_to: None,
                running_now: false,
                error: None,
            };
            let read = async {
                let conn = conn_of(t)?;
                let st = stored_plan(&conn, &name).await?;
                let held = match &st {
                    Some(_) => lock_held(&conn, &name).await?,
                    None => false,
                };
                Ok::<_, CmdError>((st, held))
            };
            match read.await {
                Err(e) => {
                    s.status = "unreachable".into();
                    s.error = Some(e.to_string());
                }
                Ok((None, _)) => {}
                Ok((Some(st), held)) => {
                    let state = st.state();
                    s.status = st.status.as_str().into();
                    s.phase = st
                        .phases
                        .get(st.current_phase.max(0) as usize)
                        .map(|p| p.kind.clone());
                    s.waiting_at_gate = state.open_gate().map(|g| state.phases[g].name.clone());
                    s.gates_confirmed = st
                        .phases
                        .iter()
                        .filter(|p| p.gate_confirmed_at.is_some())
                        .map(|p| p.kind.clone())
                        .collect();
                    s.phases_done = st
                        .phases
                        .iter()
                        .filter(|p| p.status == crate::state::machine::PhaseStatus::Completed)
                        .count();
                    s.running_now = held;
                    s.error = st.last_error.clone();
                    if !matches!(st.status, PlanStatus::RolledBack) {
                        s.rollback_to = rollback_target(&state, &name).ok();
                    }
                }
            }
            s
        })
        .buffer_unordered(fleet.concurrency)
        .collect()
        .await;
    out.sort_by_key(|s| {
        fleet
            .targets
            .iter()
            .position(|t| t.name == s.target)
            .unwrap_or(0)
    });
    out
}

/// A plan argument's name: the file's plan name, or the argument itself.
pub fn plan_name_of(arg: &str) -> String {
    let p = Path::new(arg);
    if p.is_file() {
        if let Ok(f) = PlanFile::load(p) {
            return f.plan.name;
        }
    }
    arg.to_string()
}

fn where_words(st: &StoredPlan) -> String {
    let state = st.state();
    if let Some(g) = state.open_gate() {
        return format!("waits at the gate after {}", state.phases[g].name);
    }
    match st.status {
        PlanStatus::Completed => "completed".into(),
        PlanStatus::RolledBack => "rolled back".into(),
        s => {
            let phase = st
                .phases
                .get(st.current_phase.max(0) as usize)
                .map(|p| p.kind.as_str())
                .unwrap_or("?");
            format!("{} in {phase}", s.as_str())
        }
    }
}

/// A short description of an outcome, for a target's line.
pub fn outcome_words(o: &Outcome) -> String {
    match o {
        Outcome::AwaitingDeploy { phase, .. } => format!("awaits the deploy after {phase}"),
        Outcome::Completed => "completed".into(),
        Outcome::RolledBack | Outcome::RolledBackUnchecked => "rolled back".into(),
        Outcome::RolledBackToGate { phase, .. } => {
            format!("rolled back to the gate after {phase}")
        }
        Outcome::Underway { status, phase, .. } => format!("{status} in {phase}"),
    }
}

/// The program of `plan` as stored in the first reachable database that started it.
pub async fn stored_program(fleet: &Fleet, plan: &str) -> Option<crate::program::Program> {
    for t in &fleet.targets {
        if let Ok(c) = &t.conn {
            if let Ok(Some(st)) = stored_plan(c, &t.plan_name(plan)).await {
                return Some(st.program);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    //! The wave loop without servers: a stand-in operation per target that records when
    //! it starts and ends, yields (so the loop can start others meanwhile), and fails on
    //! the targets asked.
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen {
        events: Mutex<Vec<String>>,
    }

    impl FleetObserver for Seen {
        fn wave_started(&self, wave: usize, waves: usize, members: usize) {
            self.events
                .lock()
                .unwrap()
                .push(format!("wave {wave}/{waves} of {members}"));
        }
        fn target_started(&self, t: &Target, wave: usize) {
            self.events
                .lock()
                .unwrap()
                .push(format!("start {} (wave {wave})", t.name));
        }
        fn target_finished(&self, t: &Target, _wave: usize, r: &TargetResult) {
            let what = match r {
                TargetResult::Skipped { .. } => "skipped",
                r if r.ok() => "done",
                _ => "failed",
            };
            self.events
                .lock()
                .unwrap()
                .push(format!("{what} {}", t.name));
        }
    }

    /// Ten targets `t1`…`t10`; t1 and t6 are canaries.
    fn fleet(waves: &str, concurrency: usize, on_error: &str) -> Fleet {
        let mut text = String::from("targets:\n");
        for i in 1..=10 {
            text.push_str(&format!(
                "  - url: postgres://app@db/d{i}\n    name: t{i}\n"
            ));
            if i == 1 || i == 6 {
                text.push_str("    labels: { tier: canary }\n");
            }
        }
        text.push_str(&format!(
            "{waves}concurrency: {concurrency}\non_error: {on_error}\n"
        ));
        targets::parse(&text, "t.yaml").unwrap()
    }

    /// Runs the loop; the operation fails on `failing`. Returns the reports, the
    /// observer's events and the most operations seen in flight at once.
    async fn run(
        f: &Fleet,
        reverse: bool,
        failing: &[&str],
    ) -> (Vec<TargetReport>, Vec<String>, usize) {
        let seen = Seen::default();
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let reports = each_wave(
            f,
            reverse,
            |t: Target| {
                let (now, most) = (&now, &most);
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    for _ in 0..5 {
                        tokio::task::yield_now().await;
                    }
                    now.fetch_sub(1, Ordering::SeqCst);
                    if failing.contains(&t.name.as_str()) {
                        TargetResult::Failed {
                            error: "lock not acquired".into(),
                        }
                    } else {
                        TargetResult::Done {
                            outcome: Outcome::Completed,
                        }
                    }
                }
            },
            &seen,
        )
        .await;
        let events = seen.events.into_inner().unwrap();
        (reports, events, most.load(Ordering::SeqCst))
    }

    fn waves_of(reports: &[TargetReport]) -> Vec<(String, usize)> {
        reports.iter().map(|r| (r.target.clone(), r.wave)).collect()
    }

    /// Where each target's wave starts and ends in the events: every target of a wave
    /// finishes before the next wave starts.
    fn assert_waves_in_order(events: &[String]) {
        let mut waves = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.starts_with("wave "))
            .map(|(i, _)| i)
            .peekable();
        while let Some(start) = waves.next() {
            let end = waves.peek().copied().unwrap_or(events.len());
            let started = events[start..end]
                .iter()
                .filter(|e| e.starts_with("start "))
                .count();
            let finished = events[start..end]
                .iter()
                .filter(|e| e.starts_with("done ") || e.starts_with("failed "))
                .count();
            assert_eq!(started, finished, "a wave overlapped the next: {events:#?}");
        }
    }

    #[tokio::test]
    async fn waves_by_match_percent_and_rest_run_in_order_within_the_concurrency() {
        let f = fleet(
            "waves:\n  - match: { tier: canary }\n  - percent: 30\n  - rest: true\n",
            3,
            "stop",
        );
        let (reports, events, most) = run(&f, false, &[]).await;
        let want: Vec<(String, usize)> = [
            ("t1", 1),
            ("t6", 1),
            ("t2", 2),
            ("t3", 2),
            ("t4", 2),
            ("t5", 3),
            ("t7", 3),
            ("t8", 3),
            ("t9", 3),
            ("t10", 3),
        ]
        .iter()
        .map(|(t, w)| (t.to_string(), *w))
        .collect();
        assert_eq!(waves_of(&reports), want);
        assert!(reports.iter().all(|r| r.result.ok()));
        assert_eq!(
            most, 3,
            "at most `concurrency` at once, and that many: {events:#?}"
        );
        assert_eq!(events[0], "wave 1/3 of 2");
        assert!(events.contains(&"wave 3/3 of 5".to_string()));
        assert_waves_in_order(&events);

        // one at a time: never two in flight
        let one = fleet("", 1, "stop");
        let (reports, _, most) = run(&one, false, &[]).await;
        assert_eq!((reports.len(), most), (10, 1));
        assert!(reports.iter().all(|r| r.wave == 1));
    }

    #[tokio::test]
    async fn on_error_stop_starts_nothing_more_and_continue_sets_the_failure_aside() {
        let waves = "waves:\n  - match: { tier: canary }\n  - rest: true\n";
        // stop, one at a time: t6 (the second canary) is skipped after t1 fails, and
        // no database of wave 2 starts
        let f = fleet(waves, 1, "stop");
        let (reports, events, _) = run(&f, false, &["t1"]).await;
        let result = |name: &str| {
            reports
                .iter()
                .find(|r| r.target == name)
                .unwrap()
                .result
                .clone()
        };
        assert!(matches!(result("t1"), TargetResult::Failed { .. }));
        for t in ["t6", "t2", "t10"] {
            assert!(
                matches!(result(t), TargetResult::Skipped { .. }),
                "{t}: {events:#?}"
            );
        }
        assert_eq!(
            events.iter().filter(|e| e.starts_with("start ")).count(),
            1,
            "{events:#?}"
        );

        // stop, two at a time: the one running beside the failure finishes its command
        let f = fleet(waves, 2, "stop");
        let (reports, _, _) = run(&f, false, &["t1"]).await;
        let done: Vec<&str> = reports
            .iter()
            .filter(|r| r.result.ok())
            .map(|r| r.target.as_str())
            .collect();
        assert_eq!(done, ["t6"]);

        // continue: the failure is set aside, every other database runs, later waves too
        let f = fleet(waves, 2, "continue");
        let (reports, events, _) = run(&f, false, &["t1", "t4"]).await;
        let failed: Vec<&str> = reports
            .iter()
            .filter(|r| !r.result.ok())
            .map(|r| r.target.as_str())
            .collect();
        assert_eq!(failed, ["t1", "t4"]);
        assert_eq!(
            events.iter().filter(|e| e.starts_with("start ")).count(),
            10
        );
    }

    #[tokio::test]
    async fn rollback_runs_the_last_wave_first() {
        let f = fleet(
            "waves:\n  - match: { tier: canary }\n  - rest: true\n",
            4,
            "stop",
        );
        let (reports, events, _) = run(&f, true, &[]).await;
        assert_eq!(events[0], "wave 2/2 of 8");
        assert_eq!(reports[0].wave, 2);
        assert_eq!(reports.last().unwrap().target, "t6");
        assert_waves_in_order(&events);
    }
}
