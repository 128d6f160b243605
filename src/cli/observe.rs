//! The commands that read the state in the database: `status` (and `--watch`),
//! `history`, `check`. The full-screen view is `dashboard.rs`.

use std::io::IsTerminal;

use super::{emit, plan_arg, required_database, unknown_plan, Cli, Output};
use crate::error::CmdError;
use crate::report;
use crate::state::store;

/// `status --watch`'s options.
pub(super) struct WatchOptions {
    pub interval: std::time::Duration,
    /// On a terminal too, stop once nothing runs (pipes always do).
    pub until_done: bool,
}

/// `status [PLAN]`, or with `--watch` refreshing.
pub(super) async fn status(
    cli: &Cli,
    plan: Option<&str>,
    watch_options: Option<WatchOptions>,
) -> Result<i32, CmdError> {
    let client = required_database(cli)?.connect().await?;
    let views = report::status_views(&client, plan).await?;
    if let Some(options) = watch_options {
        if let (Some(p), true) = (plan, views.is_empty()) {
            return Err(unknown_plan(p));
        }
        return watch(cli, &client, plan, options, views).await;
    }
    match (plan, views.first()) {
        (Some(_), Some(v)) => emit(
            cli,
            report::status_detail(v),
            serde_json::to_value(v).unwrap_or_default(),
        ),
        (Some(p), None) => return Err(unknown_plan(p)),
        (None, _) => emit(
            cli,
            report::status_table(&views, report::style::stdout_color()),
            serde_json::json!({ "plans": views }),
        ),
    }
    Ok(crate::error::exit::OK)
}

/// `history [PLAN]`: the event log.
pub(super) async fn history(cli: &Cli, plan: Option<&str>) -> Result<(), CmdError> {
    let client = required_database(cli)?.connect().await?;
    let events = if store::schema_exists(&client).await? {
        store::events(&client, plan).await?
    } else {
        Vec::new()
    };
    emit(
        cli,
        report::history_text(&events),
        serde_json::json!({ "events": events }),
    );
    Ok(())
}

/// `status --watch`: refresh until Ctrl-C, or until nothing runs in a pipe or with
/// `--until-done` (on a terminal a gate does not end it: that is when the operator looks).
async fn watch(
    cli: &Cli,
    client: &tokio_postgres::Client,
    plan: Option<&str>,
    options: WatchOptions,
    mut views: Vec<report::PlanView>,
) -> Result<i32, CmdError> {
    use report::watch::{Watch, WatchMode};
    let mode = match cli.output {
        Output::Json => WatchMode::Json,
        Output::Text if std::io::stdout().is_terminal() => WatchMode::Terminal,
        Output::Text => WatchMode::Lines,
    };
    let mut w = Watch::new(
        mode,
        report::style::stdout_color(),
        plan.map(str::to_string),
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        w.update(&views, chrono::Utc::now());
        if !report::anything_running(&views) && (options.until_done || mode != WatchMode::Terminal)
        {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(options.interval) => {}
            _ = &mut ctrl_c => break,
        }
        views = report::status_views(client, plan).await?;
    }
    w.finish(&views);
    Ok(crate::error::exit::OK)
}

/// `check --plan NAME --at-least PHASE`.
pub(super) async fn check(cli: &Cli, plan: &str, phase: &str) -> Result<i32, CmdError> {
    use crate::program::PhaseKind;
    use crate::state::machine::Reached;
    if !PhaseKind::ALL.iter().any(|k| k.as_str() == phase) {
        return Err(CmdError::Invalid(format!(
            "`{phase}` is not a phase; phases are: {}",
            PhaseKind::ALL.map(|k| k.as_str()).join(", ")
        )));
    }
    let client = required_database(cli)?.connect().await?;
    let stored = if store::schema_exists(&client).await? {
        store::load_plan(&client, plan).await?
    } else {
        None
    };
    let result = match &stored {
        None => report::CheckResult::not_started(plan, phase),
        Some(st) => match st.state().reached(phase) {
            Reached::NoSuchPhase => {
                return Err(CmdError::Invalid(format!(
                    "plan `{plan}` has no phase `{phase}`; its phases are: {}",
                    st.phases
                        .iter()
                        .map(|p| p.kind.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
            r => report::CheckResult::of(st, phase, r == Reached::Yes),
        },
    };
    emit(
        cli,
        report::check_text(&result),
        serde_json::to_value(&result).unwrap_or_default(),
    );
    Ok(if result.reached {
        crate::error::exit::OK
    } else {
        crate::error::exit::NOT_REACHED
    })
}

/// `check-drain PLAN [--wait D]`: exit 0 when clean, 4 when not (after waiting).
pub(super) async fn check_drain(
    cli: &Cli,
    arg: &str,
    wait: Option<std::time::Duration>,
    interval: std::time::Duration,
) -> Result<i32, CmdError> {
    let (plan, _) = plan_arg(arg)?;
    let client = required_database(cli)?.connect().await?;
    let quiet = cli.quiet;
    let note = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let ev = crate::evidence::drain::wait(&client, &plan, wait, interval, &note, |ev| {
        if !quiet {
            eprintln!("{}", report::evidence_progress(ev));
        }
    })
    .await?;
    emit(
        cli,
        report::evidence_text(&ev),
        serde_json::to_value(&ev).unwrap_or_default(),
    );
    Ok(if ev.clean() {
        crate::error::exit::OK
    } else {
        crate::error::exit::NOT_DRAINED
    })
}
