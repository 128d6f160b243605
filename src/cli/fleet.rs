//! `fleet start|advance|rollback|status|checklist`: one plan across the databases of a
//! targets file (src/fleet/), each database through the same per-database commands.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::operate::confirmer;
use super::{actor, emit, required_database, Cli, FleetTargets};
use crate::conn::ConnInfo;
use crate::error::{exit, CmdError};
use crate::fleet::{self, Fleet, Target, TargetReport};
use crate::report::{self, progress::FleetProgress};
use crate::run::{self, Session};

/// The fleet: the targets file's, or the databases `--targets-from-query` lists on the
/// database given (the one connection resolver), with the file's waves and settings.
async fn load_targets(cli: &Cli, t: &FleetTargets) -> Result<Fleet, CmdError> {
    let Some(query) = &t.targets_from_query else {
        let Some(path) = &t.targets else {
            return Err(CmdError::Invalid(
                "give the fleet with --targets FILE or --targets-from-query SELECT".into(),
            ));
        };
        return fleet::targets::load(path);
    };
    fleet::query::check(query)?;
    let settings = match &t.targets {
        Some(path) => Some((
            std::fs::read_to_string(path).map_err(|e| {
                CmdError::Invalid(format!(
                    "cannot read the targets file {}: {e}",
                    path.display()
                ))
            })?,
            path.display().to_string(),
        )),
        None => None,
    };
    let control = required_database(cli)?;
    let rows = fleet::query::list(&control, query).await?;
    fleet::targets::from_query(
        settings.as_ref().map(|(t, f)| (t.as_str(), f.as_str())),
        &control,
        rows,
    )
}

/// The arguments naming the fleet, for the commands the checklist prints.
fn targets_args(t: &FleetTargets) -> String {
    let mut a = Vec::new();
    if let Some(p) = &t.targets {
        a.push(format!("--targets {}", p.display()));
    }
    if let Some(q) = &t.targets_from_query {
        a.push(format!(
            "--targets-from-query '{}'",
            q.replace('\'', r"'\''")
        ));
    }
    a.join(" ")
}

/// The fleet command's own arming (see [`Shared`]); let go while it asks a question.
type FleetArmed = Arc<Mutex<Option<crate::interrupt::Armed>>>;

/// One answer to a destructive phase's question for the whole fleet: asked once (on a
/// terminal), or `--yes`. While it asks, the fleet's arming is let go: a signal then
/// ends the process at once, as during a single database's question, unless another
/// database is running steps (then it stops the fleet gracefully once answered).
fn fleet_confirmer(yes: bool, armed: FleetArmed) -> run::Confirm {
    let ask = confirmer(yes);
    let answer: Mutex<Option<bool>> = Mutex::new(None);
    Arc::new(move |msg: &str| {
        let mut a = answer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = *a {
            return a;
        }
        if crate::interrupt::signals().reason().is_some() {
            return false;
        }
        let held = armed.lock().unwrap_or_else(|e| e.into_inner()).take();
        let said = ask(&format!(
            "{msg}\n(this answer holds for every database of the fleet)"
        ));
        if let Some(h) = held {
            *armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
        let said = said && crate::interrupt::signals().reason().is_none();
        *a = Some(said);
        said
    })
}

/// What every per-database command of one fleet command shares.
struct Shared {
    actor: String,
    confirm: run::Confirm,
    failpoint: Option<String>,
    progress: FleetProgress,
    /// For the whole fleet command (but its one question), SIGINT and SIGTERM stop it
    /// gracefully (see [`crate::interrupt`]): no further database starts, each running
    /// one stops at its runner's next safe point (the statement cancelled, the
    /// interruption recorded), the results are printed, and the exit code is 130 or
    /// 143. A second signal ends the process at once.
    _armed: FleetArmed,
}

impl Shared {
    fn new(cli: &Cli, yes: bool, fleet: &Fleet) -> Shared {
        if let Err(e) = crate::interrupt::listen_for_signals() {
            eprintln!("pgphase: warning: cannot handle SIGINT/SIGTERM ({e}): a signal ends the process without cancelling the running statements");
        }
        let names: Vec<&str> = fleet.targets.iter().map(|t| t.name.as_str()).collect();
        let armed: FleetArmed = Arc::new(Mutex::new(Some(crate::interrupt::arm())));
        Shared {
            actor: actor(cli),
            confirm: fleet_confirmer(yes, armed.clone()),
            failpoint: std::env::var("PGPHASE_FAILPOINT")
                .ok()
                .filter(|f| !f.is_empty()),
            progress: FleetProgress::new(cli.quiet, &names),
            _armed: armed,
        }
    }
    fn session(&self, t: &Target, conn: ConnInfo) -> Session {
        Session {
            conn,
            actor: self.actor.clone(),
            observer: Arc::new(self.progress.observer(&t.name)),
            confirm: self.confirm.clone(),
            failpoint: self.failpoint.clone(),
        }
    }
}

/// Prints the results; exit 0 when every database reached what the command asks, 130
/// or 143 when SIGINT or SIGTERM stopped it, else 1 (the same command resumes what is
/// not done).
fn finish(cli: &Cli, shared: &Shared, command: &str, plan: &str, reports: &[TargetReport]) -> i32 {
    shared.progress.finish();
    emit(
        cli,
        report::fleet::results_text(command, plan, reports),
        serde_json::json!({
            "command": command,
            "plan": plan,
            "ok": reports.iter().all(|r| r.result.ok()),
            "targets": reports,
        }),
    );
    if let Some(crate::interrupt::StopReason::Signal(s)) = crate::interrupt::signals().reason() {
        return s.exit_code();
    }
    if reports.iter().all(|r| r.result.ok()) {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// `fleet start FILE --targets T`.
pub(super) async fn start(
    cli: &Cli,
    file: &Path,
    targets: &FleetTargets,
    yes: bool,
) -> Result<i32, CmdError> {
    let plan = super::load(file)?.plan.name;
    let fleet = load_targets(cli, targets).await?;
    let shared = Shared::new(cli, yes, &fleet);
    let make = |t: &Target, c: ConnInfo| shared.session(t, c);
    let reports = fleet::start(&fleet, file, &make, &shared.progress).await;
    Ok(finish(cli, &shared, "start", &plan, &reports))
}

/// `fleet advance PLAN --gate G --deployed REF --targets T`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn advance(
    cli: &Cli,
    plan: &str,
    gate: &str,
    deployed: &str,
    targets: &FleetTargets,
    yes: bool,
    wait: bool,
) -> Result<i32, CmdError> {
    if deployed.trim().is_empty() {
        return Err(CmdError::Invalid(
            "--deployed needs the deploy's reference (a version, tag or commit)".into(),
        ));
    }
    let (name, file) = super::plan_arg(plan)?;
    let path = file.as_ref().map(|f| f.path.clone());
    let fleet = load_targets(cli, targets).await?;
    let shared = Shared::new(cli, yes, &fleet);
    let make = |t: &Target, c: ConnInfo| shared.session(t, c);
    let reports = fleet::advance(
        &fleet,
        &name,
        path.as_deref(),
        gate,
        deployed,
        wait,
        &make,
        &shared.progress,
    )
    .await;
    Ok(finish(cli, &shared, "advance", &name, &reports))
}

/// `fleet rollback PLAN --targets T [--to PHASE|start]`.
pub(super) async fn rollback(
    cli: &Cli,
    plan: &str,
    to: Option<&str>,
    targets: &FleetTargets,
    yes: bool,
) -> Result<i32, CmdError> {
    let (name, _) = super::plan_arg(plan)?;
    let fleet = load_targets(cli, targets).await?;
    let shared = Shared::new(cli, yes, &fleet);
    let make = |t: &Target, c: ConnInfo| shared.session(t, c);
    let reports = fleet::rollback(&fleet, &name, to, &make, &shared.progress).await?;
    Ok(finish(cli, &shared, "rollback", &name, &reports))
}

/// `fleet status PLAN --targets T`: exit 0 when every database answered.
pub(super) async fn status(cli: &Cli, plan: &str, targets: &FleetTargets) -> Result<i32, CmdError> {
    let fleet = load_targets(cli, targets).await?;
    let name = fleet::plan_name_of(plan);
    let statuses = fleet::status(&fleet, &name).await;
    emit(
        cli,
        report::fleet::status_text(&name, &statuses),
        serde_json::json!({ "plan": name, "targets": statuses }),
    );
    Ok(if statuses.iter().any(|s| s.status == "unreachable") {
        exit::FAILED
    } else {
        exit::OK
    })
}

/// `fleet checklist PLAN --targets T`: the release checklist of the fleet, each gate
/// with the fleet command to run after its deploy and how many databases are past it.
pub(super) async fn checklist(
    cli: &Cli,
    plan: &str,
    targets: &FleetTargets,
) -> Result<i32, CmdError> {
    let fleet = load_targets(cli, targets).await?;
    let (name, file) = super::plan_arg(plan)?;
    let statuses = fleet::status(&fleet, &name).await;
    let program = match &file {
        Some(f) => run::expand(None, f).await?,
        None => fleet::stored_program(&fleet, &name).await.ok_or_else(|| {
            CmdError::refused(
                format!("plan `{name}` is not started on any reachable database of the fleet"),
                "pass the plan file instead of its name",
            )
        })?,
    };
    let c = report::fleet::Checklist {
        plan: &name,
        plan_arg: plan,
        targets: &targets_args(targets),
        program: &program,
        statuses: &statuses,
    };
    emit(
        cli,
        report::fleet::checklist_text(&c),
        report::fleet::checklist_json(&c),
    );
    Ok(exit::OK)
}
