//! `fleet start|advance|rollback|status|checklist`: one plan across the databases of a
//! targets file (src/fleet/), each database through the same per-database commands.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::operate::confirmer;
use super::{actor, emit, Cli};
use crate::conn::ConnInfo;
use crate::error::{exit, CmdError};
use crate::fleet::{self, Fleet, Target, TargetReport, TargetResult};
use crate::report::{self, progress::StderrObserver};
use crate::run::{self, Session};

fn load_targets(path: &Path) -> Result<Fleet, CmdError> {
    fleet::targets::load(path)
}

/// One answer to a destructive phase's question for the whole fleet: asked once (on a
/// terminal), or `--yes`.
fn fleet_confirmer(yes: bool) -> run::Confirm {
    let ask = confirmer(yes);
    let answer: Mutex<Option<bool>> = Mutex::new(None);
    Arc::new(move |msg: &str| {
        let mut a = answer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = *a {
            return a;
        }
        let said = ask(&format!(
            "{msg}\n(this answer holds for every database of the fleet)"
        ));
        *a = Some(said);
        said
    })
}

/// What every per-database command of one fleet command shares.
struct Shared {
    actor: String,
    quiet: bool,
    confirm: run::Confirm,
    failpoint: Option<String>,
}

impl Shared {
    fn new(cli: &Cli, yes: bool) -> Shared {
        if let Err(e) = crate::interrupt::listen_for_signals() {
            eprintln!("pgphase: warning: cannot handle SIGINT/SIGTERM ({e}): a signal ends the process without cancelling the running statements");
        }
        Shared {
            actor: actor(cli),
            quiet: cli.quiet,
            confirm: fleet_confirmer(yes),
            failpoint: std::env::var("PGPHASE_FAILPOINT")
                .ok()
                .filter(|f| !f.is_empty()),
        }
    }
    fn session(&self, t: &Target, conn: ConnInfo) -> Session {
        Session {
            conn,
            actor: self.actor.clone(),
            observer: Arc::new(StderrObserver::for_target(self.quiet, &t.name)),
            confirm: self.confirm.clone(),
            failpoint: self.failpoint.clone(),
        }
    }
}

fn progress_line(quiet: bool) -> impl Fn(&Target, usize, &TargetResult) + Sync {
    move |t, wave, r| {
        if !quiet {
            eprintln!(
                "[{}] wave {wave}: {}",
                t.name,
                report::fleet::result_words(r).replace('\n', "\n    ")
            );
        }
    }
}

/// Prints the results; exit 0 when every database reached what the command asks, else 1
/// (the same command resumes what is not done).
fn finish(cli: &Cli, command: &str, plan: &str, reports: &[TargetReport]) -> i32 {
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
    targets: &Path,
    yes: bool,
) -> Result<i32, CmdError> {
    let fleet = load_targets(targets)?;
    let plan = super::load(file)?.plan.name;
    let shared = Shared::new(cli, yes);
    let make = |t: &Target, c: ConnInfo| shared.session(t, c);
    let reports = fleet::start(&fleet, file, &make, &progress_line(cli.quiet)).await;
    Ok(finish(cli, "start", &plan, &reports))
}

/// `fleet advance PLAN --gate G --deployed REF --targets T`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn advance(
    cli: &Cli,
    plan: &str,
    gate: &str,
    deployed: &str,
    targets: &Path,
    yes: bool,
    wait: bool,
) -> Result<i32, CmdError> {
    let fleet = load_targets(targets)?;
    if deployed.trim().is_empty() {
        return Err(CmdError::Invalid(
            "--deployed needs the deploy's reference (a version, tag or commit)".into(),
        ));
    }
    let (name, file) = super::plan_arg(plan)?;
    let path = file.as_ref().map(|f| f.path.clone());
    let shared = Shared::new(cli, yes);
    let make = |t: &Target, c: ConnInfo| shared.session(t, c);
    let reports = fleet::advance(
        &fleet,
        &name,
        path.as_deref(),
        gate,
        deployed,
        wait,
        &make,
        &progress_line(cli.quiet),
    )
    .await;
    Ok(finish(cli, "advance", &name, &reports))
}

/// `fleet rollback PLAN --targets T [--to PHASE|start]`.
pub(super) async fn rollback(
    cli: &Cli,
    plan: &str,
    to: Option<&str>,
    targets: &Path,
    yes: bool,
) -> Result<i32, CmdError> {
    let fleet = load_targets(targets)?;
    let (name, _) = super::plan_arg(plan)?;
    let shared = Shared::new(cli, yes);
    let make = |t: &Target, c: ConnInfo| shared.session(t, c);
    let reports = fleet::rollback(&fleet, &name, to, &make, &progress_line(cli.quiet)).await?;
    Ok(finish(cli, "rollback", &name, &reports))
}

/// `fleet status PLAN --targets T`: exit 0 when every database answered.
pub(super) async fn status(cli: &Cli, plan: &str, targets: &Path) -> Result<i32, CmdError> {
    let fleet = load_targets(targets)?;
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
pub(super) async fn checklist(cli: &Cli, plan: &str, targets: &Path) -> Result<i32, CmdError> {
    let fleet = load_targets(targets)?;
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
        targets: &targets.display().to_string(),
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
