//! The commands that change a plan: `start`, `phase advance`, `phase rollback`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use super::{actor, emit, load, plan_arg, required_database, Cli};
use crate::error::CmdError;
use crate::report::{self, progress::StderrObserver};
use crate::run::{self, Session};

pub(super) fn confirmer(yes: bool) -> run::Confirm {
    Arc::new(move |msg: &str| {
        if yes {
            return true;
        }
        if !std::io::stdin().is_terminal() {
            eprintln!("{msg}\nnot a terminal: pass --yes to confirm.");
            return false;
        }
        eprint!("{msg}\nContinue? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        matches!(line.trim(), "y" | "Y" | "yes" | "YES")
    })
}

/// A session for a command that changes a plan. From here on SIGINT and SIGTERM
/// stop the command gracefully while it runs steps (see [`crate::interrupt`]).
fn session(cli: &Cli, yes: bool) -> Result<Session, CmdError> {
    if let Err(e) = crate::interrupt::listen_for_signals() {
        eprintln!("pgphase: warning: cannot handle SIGINT/SIGTERM ({e}): a signal ends the process without cancelling the running statement");
    }
    Ok(Session {
        conn: required_database(cli)?,
        actor: actor(cli),
        observer: Arc::new(StderrObserver::new(cli.quiet)),
        confirm: confirmer(yes),
        failpoint: std::env::var("PGPHASE_FAILPOINT")
            .ok()
            .filter(|f| !f.is_empty()),
    })
}

/// `start FILE`.
pub(super) async fn start(cli: &Cli, file: &Path, yes: bool) -> Result<(), CmdError> {
    let f = load(file)?;
    let s = session(cli, yes)?;
    let out = run::start(&s, &f).await?;
    emit(
        cli,
        report::outcome_text(&f.plan.name, &out),
        report::outcome_json(&f.plan.name, &out),
    );
    Ok(())
}

/// `phase advance PLAN --deployed REF`.
pub(super) async fn advance(
    cli: &Cli,
    plan: &str,
    deployed: &str,
    yes: bool,
    options: run::AdvanceOptions,
) -> Result<(), CmdError> {
    let (name, file) = plan_arg(plan)?;
    let s = session(cli, yes)?;
    let out = run::advance_with(&s, &name, deployed, file.as_ref(), options).await?;
    emit(
        cli,
        report::outcome_text(&name, &out),
        report::outcome_json(&name, &out),
    );
    Ok(())
}

/// `phase rollback PLAN`.
pub(super) async fn rollback(
    cli: &Cli,
    plan: &str,
    yes: bool,
    to: Option<&str>,
) -> Result<(), CmdError> {
    let (name, _) = plan_arg(plan)?;
    let s = session(cli, yes)?;
    let out = run::rollback_to(&s, &name, to).await?;
    emit(
        cli,
        report::outcome_text(&name, &out),
        report::outcome_json(&name, &out),
    );
    Ok(())
}
