//! Command-line definitions and one handler per command.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::conn::ConnInfo;
use crate::error::CmdError;
use crate::plan::PlanFile;
use crate::report::{self, progress::StderrObserver};
use crate::run::{self, Session};
use crate::state::store;

#[derive(Parser, Debug)]
#[command(
    name = "pgphase",
    version,
    about = "Zero-downtime PostgreSQL schema changes: YAML plans expanded into gated expand/contract phases",
    after_help = "Exit codes: 0 ok (also when stopped at a deploy gate), 1 a step failed (re-run to resume), \
2 invalid input (nothing changed), 3 refused by the plan's state (nothing changed)."
)]
pub struct Cli {
    /// Database URL (postgres://user:password@host:port/db). Also DATABASE_URL, or libpq's PGHOST/PGPORT/PGUSER/PGDATABASE/PGPASSWORD and ~/.pgpass.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Result format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Who is running the command, for the audit log. Default: $PGPHASE_ACTOR, else $USER.
    #[arg(long, global = true)]
    pub actor: Option<String>,
    /// No progress on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show the phases, steps (SQL and lock level) and gates a plan expands into. Changes nothing.
    /// With a database it reads the live catalog; without one it expands offline.
    Plan { file: PathBuf },
    /// Start a plan (or resume one stopped before its first gate): runs phases up to the first deploy gate.
    Start {
        file: PathBuf,
        /// Do not ask before destructive phases (for pipelines).
        #[arg(long, short)]
        yes: bool,
    },
    /// Move a started plan through its gates.
    #[command(subcommand)]
    Phase(PhaseCmd),
    /// Where every plan stands (or one plan's phase timeline).
    Status { plan: Option<String> },
    /// The event log: every command, step, gate confirmation and rollback.
    History { plan: Option<String> },
    /// Run the whole story on a throwaway local Postgres: the rename under live old/new
    /// application traffic, then the naive rename for contrast.
    Demo {
        /// Rows in the demo's comments table.
        #[arg(long, default_value_t = 50_000)]
        rows: i64,
        /// Application clients per version.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Seconds of traffic in each stage.
        #[arg(long, default_value_t = 2.0)]
        stage_seconds: f64,
    },
}

#[derive(Subcommand, Debug)]
pub enum PhaseCmd {
    /// Confirm the deploy the plan is waiting for, then run on to the next gate or the end.
    Advance {
        /// Plan name, or the plan file (its checksum is then checked).
        plan: String,
        /// What was deployed: a version, tag or commit, recorded in the audit log.
        #[arg(long, required = true)]
        deployed: String,
        #[arg(long, short)]
        yes: bool,
    },
    /// Undo every phase run so far, last first (refused once contract has begun).
    Rollback {
        /// Plan name, or the plan file.
        plan: String,
        #[arg(long, short)]
        yes: bool,
    },
}

fn actor(cli: &Cli) -> String {
    cli.actor
        .clone()
        .or_else(|| std::env::var("PGPHASE_ACTOR").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .or_else(os_user)
        .unwrap_or_else(|| "unknown".into())
}

/// The login name of the process's user, from the password database.
fn os_user() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name
    // out immediately and do not keep the pointer.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

fn connection(cli: &Cli) -> Result<ConnInfo, CmdError> {
    ConnInfo::resolve(cli.database_url.as_deref())
        .map_err(|e| CmdError::Invalid(format!("{e:#}")))?
        .ok_or_else(|| {
            CmdError::Invalid(
                "no database given: pass --database-url, or set DATABASE_URL (or PGHOST/PGDATABASE); `pgphase demo` runs on a throwaway local server".into(),
            )
        })
}

fn load(file: &Path) -> Result<PlanFile, CmdError> {
    PlanFile::load(file).map_err(|e| CmdError::Invalid(e.to_string()))
}

/// A plan argument: a file path (checked) or a plan name.
fn plan_arg(arg: &str) -> Result<(String, Option<PlanFile>), CmdError> {
    let p = Path::new(arg);
    if p.is_file() || arg.ends_with(".yaml") || arg.ends_with(".yml") {
        let f = load(p)?;
        Ok((f.plan.name.clone(), Some(f)))
    } else {
        Ok((arg.to_string(), None))
    }
}

fn confirmer(yes: bool) -> run::Confirm {
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

fn session(cli: &Cli, yes: bool) -> Result<Session, CmdError> {
    Ok(Session {
        conn: connection(cli)?,
        actor: actor(cli),
        observer: Arc::new(StderrObserver::new(cli.quiet)),
        confirm: confirmer(yes),
        failpoint: std::env::var("PGPHASE_FAILPOINT")
            .ok()
            .filter(|f| !f.is_empty()),
    })
}

fn emit(cli: &Cli, text: String, json: serde_json::Value) {
    match cli.output {
        Output::Text => print!("{text}"),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
    }
}

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32, CmdError> {
    match &cli.command {
        Cmd::Plan { file } => {
            let f = load(file)?;
            let conn = ConnInfo::resolve(cli.database_url.as_deref())
                .map_err(|e| CmdError::Invalid(format!("{e:#}")))?;
            let program = run::expand(conn.as_ref(), &f).await?;
            emit(
                &cli,
                report::plan_text(&program),
                report::plan_json(&program),
            );
        }
        Cmd::Start { file, yes } => {
            let f = load(file)?;
            let s = session(&cli, *yes)?;
            let out = run::start(&s, &f).await?;
            emit(
                &cli,
                report::outcome_text(&f.plan.name, &out),
                report::outcome_json(&f.plan.name, &out),
            );
        }
        Cmd::Phase(PhaseCmd::Advance {
            plan,
            deployed,
            yes,
        }) => {
            let (name, file) = plan_arg(plan)?;
            let s = session(&cli, *yes)?;
            let out = run::advance(&s, &name, deployed, file.as_ref()).await?;
            emit(
                &cli,
                report::outcome_text(&name, &out),
                report::outcome_json(&name, &out),
            );
        }
        Cmd::Phase(PhaseCmd::Rollback { plan, yes }) => {
            let (name, _) = plan_arg(plan)?;
            let s = session(&cli, *yes)?;
            let out = run::rollback(&s, &name).await?;
            emit(
                &cli,
                report::outcome_text(&name, &out),
                report::outcome_json(&name, &out),
            );
        }
        Cmd::Status { plan } => {
            let client = connection(&cli)?.connect().await?;
            let views = status_views(&client, plan.as_deref()).await?;
            match (plan, views.first()) {
                (Some(_), Some(v)) => emit(
                    &cli,
                    report::status_detail(v),
                    serde_json::to_value(v).unwrap_or_default(),
                ),
                (Some(p), None) => {
                    return Err(CmdError::refused(
                        format!("plan `{p}` has not been started in this database"),
                        "`pgphase status` lists the plans this database knows",
                    ))
                }
                (None, _) => emit(
                    &cli,
                    report::status_table(&views),
                    serde_json::json!({ "plans": views }),
                ),
            }
        }
        Cmd::History { plan } => {
            let client = connection(&cli)?.connect().await?;
            let events = if store::schema_exists(&client).await? {
                store::events(&client, plan.as_deref()).await?
            } else {
                Vec::new()
            };
            emit(
                &cli,
                report::history_text(&events),
                serde_json::json!({ "events": events }),
            );
        }
        Cmd::Demo {
            rows,
            clients,
            stage_seconds,
        } => {
            let code = crate::demo::run(crate::demo::DemoOptions {
                rows: *rows,
                clients: *clients,
                stage: std::time::Duration::from_secs_f64(stage_seconds.max(0.2)),
                json: cli.output == Output::Json,
            })
            .await?;
            return Ok(code);
        }
    }
    Ok(crate::error::exit::OK)
}

/// Status of one plan or all plans, with whether each is really being worked on.
pub async fn status_views(
    client: &tokio_postgres::Client,
    plan: Option<&str>,
) -> Result<Vec<report::PlanView>, CmdError> {
    if !store::schema_exists(client).await? {
        return Ok(Vec::new());
    }
    let names = match plan {
        Some(p) => vec![p.to_string()],
        None => store::plan_names(client).await?,
    };
    let mut views = Vec::new();
    for n in names {
        if let Some(p) = store::load_plan(client, &n).await? {
            let held = store::lock_holder(client, &n).await?.is_some();
            let progress = store::progress(client, &n).await?;
            views.push(report::plan_view(&p, held, progress));
        }
    }
    Ok(views)
}
