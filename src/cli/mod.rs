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
2 invalid input (nothing changed), 3 refused by the plan's state (nothing changed), \
4 `check`/`check-drain`/`lint`: the check did not pass."
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
    Status {
        plan: Option<String>,
        /// Refresh until nothing is running (or Ctrl-C): live bars on a terminal, a line per
        /// refresh elsewhere, a JSON object per refresh with --output json.
        #[arg(long, short)]
        watch: bool,
        /// Time between refreshes with --watch (e.g. 500ms, 2s).
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// The release checklist of a plan: per deploy gate, what to deploy, the command to run
    /// after it, what to verify, the point of no return and how to roll back. With a
    /// database, a started plan's done items are ticked with who and when.
    Checklist {
        /// A plan file, or the name of a plan started in the database.
        plan: String,
        /// markdown (paste-able into a pull request) or text.
        #[arg(long, value_enum, default_value_t = ChecklistFormat::Markdown)]
        format: ChecklistFormat,
    },
    /// Report hazardous statements in raw SQL migration files (line, why, and the pgphase
    /// change kind that does it safely). Exit 4 when findings remain. `-- pgphase:allow RULE`
    /// on the line before a statement silences one finding.
    Lint {
        #[arg(required_unless_present = "rules", value_name = "FILE.sql")]
        files: Vec<PathBuf>,
        /// Also run the files, in order, inside one transaction that is rolled back, and
        /// report the locks each statement really took and whether it rewrote a table: on
        /// the database given (--database-url / DATABASE_URL / PG*: use a copy or staging
        /// database), else on a throwaway local PostgreSQL where the files must create
        /// their own tables.
        #[arg(long)]
        trace: bool,
        /// lock_timeout of the traced statements, so a trace never queues the
        /// application for longer on a shared database.
        #[arg(long, default_value = "5s", value_parser = parse_interval)]
        lock_timeout: std::time::Duration,
        /// List the rules (name, why, fix) and exit.
        #[arg(long)]
        rules: bool,
    },
    /// Exit 0 when the database has reached a phase of a plan (the phase, or the whole plan,
    /// is completed); exit 4 otherwise. For deploy pipelines and application start-up.
    Check {
        /// The plan's name.
        #[arg(long)]
        plan: String,
        /// The phase that must be completed: expand, dual_write, backfill, switch_reads, contract.
        #[arg(long, value_name = "PHASE")]
        at_least: String,
    },
    /// Run the checks `phase advance` runs before a contract — statements, sessions and
    /// index/table usage that still name what it drops, since the last check — without
    /// advancing. Exit 0 when nothing uses it, 4 when something does.
    CheckDrain {
        /// The plan's name (or its file).
        plan: String,
        /// Check again until clean or this long has passed (e.g. 10m), then exit 4.
        #[arg(long, value_parser = parse_wait)]
        wait: Option<std::time::Duration>,
        /// Time between checks with --wait.
        #[arg(long, default_value = "5s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// The order to start plan files in, by their `depends_on` (dependencies first, then
    /// by name). A dependency cycle is an error that names every plan of it. With a
    /// database, each plan's status, and the next one to start.
    Order {
        /// Plan files, or folders of them (`*.yaml`, `*.yml`).
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
    },
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

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChecklistFormat {
    Markdown,
    Text,
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
        /// Confirm the gate even while a deploy fence matches connected sessions; the
        /// override and those sessions are recorded in the event log.
        #[arg(long)]
        force: bool,
        /// The phase whose closing gate this deploy confirms (as `status` shows it).
        /// Refused if the plan waits at another gate; does nothing if that gate was
        /// confirmed already. Pipelines should always pass it, so a retried job cannot
        /// confirm the next gate.
        #[arg(long, value_name = "PHASE")]
        gate: Option<String>,
    },
    /// Undo the phases since the last confirmed deploy gate, last first, and reopen that
    /// gate (with none: back to before the plan). Refused once contract has begun.
    Rollback {
        /// Plan name, or the plan file.
        plan: String,
        #[arg(long, short)]
        yes: bool,
        /// Where this rollback goes back to: the phase whose deploy gate it reopens, or
        /// `start` (before the plan). Refused if it would go elsewhere; does nothing if
        /// the plan is there already. Pipelines should always pass it, so a retried job
        /// cannot roll back past the gate it meant.
        #[arg(long, value_name = "PHASE|start")]
        to: Option<String>,
    },
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write it like 500ms or 2s"))?;
    if d < std::time::Duration::from_millis(100) {
        return Err("the interval must be at least 100ms".into());
    }
    Ok(d)
}

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write it like 30s or 10m"))
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

/// A session for a command that changes a plan. From here on SIGINT and SIGTERM
/// stop the command gracefully while it runs steps (see [`crate::interrupt`]).
fn session(cli: &Cli, yes: bool) -> Result<Session, CmdError> {
    if let Err(e) = crate::interrupt::listen_for_signals() {
        eprintln!("pgphase: warning: cannot handle SIGINT/SIGTERM ({e}): a signal ends the process without cancelling the running statement");
    }
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
            let mut program = run::expand(conn.as_ref(), &f).await?;
            if let Some(c) = &conn {
                let client = c.connect().await?;
                let drops = &program.contract_drops;
                if let Some(note) = crate::evidence::plan_note(&client, drops).await? {
                    program.notes.push(note);
                }
            }
            let fences: Vec<crate::plan::Fence> =
                f.plan.fences.iter().map(|x| x.value.clone()).collect();
            let mut json = report::plan_json(&program);
            json["fences"] = report::fences_json(&fences);
            emit(
                &cli,
                format!(
                    "{}{}",
                    report::plan_text(&program),
                    report::fences_text(&fences)
                ),
                json,
            );
        }
        Cmd::Order { paths } => {
            let files = crate::plan::set::load_paths(paths)
                .map_err(|e| CmdError::Invalid(e.to_string()))?;
            let order =
                crate::plan::set::order(&files).map_err(|e| CmdError::Invalid(e.to_string()))?;
            let conn = ConnInfo::resolve(cli.database_url.as_deref())
                .map_err(|e| CmdError::Invalid(format!("{e:#}")))?;
            let statuses = match conn {
                Some(c) => Some(plan_statuses(&c.connect().await?).await?),
                None => None,
            };
            emit(
                &cli,
                report::order_text(&files, &order, statuses.as_ref()),
                report::order_json(&files, &order, statuses.as_ref()),
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
            force,
            gate,
        }) => {
            let (name, file) = plan_arg(plan)?;
            let s = session(&cli, *yes)?;
            let out = run::advance_with(
                &s,
                &name,
                deployed,
                file.as_ref(),
                run::AdvanceOptions {
                    force: *force,
                    gate: gate.clone(),
                },
            )
            .await?;
            emit(
                &cli,
                report::outcome_text(&name, &out),
                report::outcome_json(&name, &out),
            );
        }
        Cmd::Phase(PhaseCmd::Rollback { plan, yes, to }) => {
            let (name, _) = plan_arg(plan)?;
            let s = session(&cli, *yes)?;
            let out = run::rollback_to(&s, &name, to.as_deref()).await?;
            emit(
                &cli,
                report::outcome_text(&name, &out),
                report::outcome_json(&name, &out),
            );
        }
        Cmd::Status {
            plan,
            watch: true,
            interval,
        } => {
            let client = connection(&cli)?.connect().await?;
            let views = status_views(&client, plan.as_deref()).await?;
            if let (Some(p), true) = (plan, views.is_empty()) {
                return Err(unknown_plan(p));
            }
            return watch(&cli, &client, plan.as_deref(), *interval, views).await;
        }
        Cmd::Status { plan, .. } => {
            let client = connection(&cli)?.connect().await?;
            let views = status_views(&client, plan.as_deref()).await?;
            match (plan, views.first()) {
                (Some(_), Some(v)) => emit(
                    &cli,
                    report::status_detail(v),
                    serde_json::to_value(v).unwrap_or_default(),
                ),
                (Some(p), None) => return Err(unknown_plan(p)),
                (None, _) => emit(
                    &cli,
                    report::status_table(&views, report::style::stdout_color()),
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
        Cmd::Check { plan, at_least } => return check(&cli, plan, at_least).await,
        Cmd::CheckDrain {
            plan,
            wait,
            interval,
        } => return check_drain(&cli, plan, *wait, *interval).await,
        Cmd::Lint {
            files,
            trace,
            lock_timeout,
            rules,
        } => {
            if *rules {
                let list = crate::lint::rules::list();
                emit(
                    &cli,
                    report::lint::rules_text(&list),
                    serde_json::json!({ "rules": list }),
                );
                return Ok(crate::error::exit::OK);
            }
            return lint(&cli, files, *trace, *lock_timeout).await;
        }
        Cmd::Checklist { plan, format } => {
            let c = checklist(&cli, plan).await?;
            emit(
                &cli,
                match format {
                    ChecklistFormat::Markdown => report::checklist::markdown(&c),
                    ChecklistFormat::Text => report::checklist::text(&c),
                },
                serde_json::to_value(&c).unwrap_or_default(),
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

fn unknown_plan(p: &str) -> CmdError {
    CmdError::refused(
        format!("plan `{p}` has not been started in this database"),
        "`pgphase status` lists the plans this database knows",
    )
}

/// `status --watch`: refresh until nothing runs or Ctrl-C.
async fn watch(
    cli: &Cli,
    client: &tokio_postgres::Client,
    plan: Option<&str>,
    interval: std::time::Duration,
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
        if !report::anything_running(&views) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut ctrl_c => break,
        }
        views = status_views(client, plan).await?;
    }
    w.finish(&views);
    Ok(crate::error::exit::OK)
}

/// `checklist FILE|PLAN`: from the stored plan when it was started in the database (ticked),
/// else from the file, expanded against the live catalog, or offline without a database.
async fn checklist(cli: &Cli, arg: &str) -> Result<report::checklist::Checklist, CmdError> {
    let (name, file) = plan_arg(arg)?;
    let conn = ConnInfo::resolve(cli.database_url.as_deref())
        .map_err(|e| CmdError::Invalid(format!("{e:#}")))?;
    let stored = match &conn {
        Some(c) => {
            let client = c.connect().await?;
            if store::schema_exists(&client).await? {
                store::load_plan(&client, &name).await?
            } else {
                None
            }
        }
        None => None,
    };
    let build = |program: &crate::program::Program,
                 fences: &[crate::plan::Fence],
                 stored: Option<&store::StoredPlan>,
                 path: Option<String>,
                 checksum: Option<String>| {
        report::checklist::build(&report::checklist::Source {
            program,
            file: path,
            checksum,
            fences,
            stored,
        })
    };
    match (stored, file) {
        (Some(st), f) => {
            let fences = run::stored_fences(&st)?;
            let mut c = build(
                &st.program,
                &fences,
                Some(&st),
                f.as_ref()
                    .map(|f| f.path.display().to_string())
                    .or_else(|| st.source_path.clone()),
                Some(st.checksum.clone()),
            );
            if let Some(f) = f.filter(|f| f.checksum != st.checksum) {
                c.notes.insert(
                    0,
                    format!(
                        "{} changed since the plan started ({} → {}): this checklist follows the started plan",
                        f.path.display(),
                        crate::plan::short_checksum(&st.checksum),
                        crate::plan::short_checksum(&f.checksum)
                    ),
                );
            }
            Ok(c)
        }
        (None, Some(f)) => {
            let mut program = run::expand(conn.as_ref(), &f).await?;
            if let Some(c) = &conn {
                let client = c.connect().await?;
                let drops = &program.contract_drops;
                if let Some(note) = crate::evidence::plan_note(&client, drops).await? {
                    program.notes.push(note);
                }
            }
            let fences: Vec<crate::plan::Fence> =
                f.plan.fences.iter().map(|x| x.value.clone()).collect();
            Ok(build(
                &program,
                &fences,
                None,
                Some(f.path.display().to_string()),
                Some(f.checksum.clone()),
            ))
        }
        (None, None) if conn.is_none() => Err(CmdError::Invalid(format!(
            "`{arg}` is not a plan file, and no database was given to look the plan up in: pass a plan file, or --database-url"
        ))),
        (None, None) => Err(unknown_plan(&name)),
    }
}

/// `lint FILE…`, with `--trace` on the given database or a throwaway server.
async fn lint(
    cli: &Cli,
    files: &[PathBuf],
    trace: bool,
    lock_timeout: std::time::Duration,
) -> Result<i32, CmdError> {
    let mut results = Vec::new();
    let mut sources = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let src = std::fs::read_to_string(f)
            .map_err(|e| CmdError::Invalid(format!("{name}: cannot read the file: {e}")))?;
        results.push(crate::lint::lint_source(&name, &src));
        sources.push((name, crate::lint::statements(&src)));
    }
    let traced = if trace {
        let conn = ConnInfo::resolve(cli.database_url.as_deref())
            .map_err(|e| CmdError::Invalid(format!("{e:#}")))?;
        let findings = |file: &str, line: usize| -> Vec<String> {
            results
                .iter()
                .filter(|r| r.file == file)
                .flat_map(|r| r.findings.iter().chain(&r.allowed))
                .filter(|x| x.statement_line == line)
                .map(|x| x.rule.to_string())
                .collect()
        };
        Some(match conn {
            Some(c) => {
                let mut client = c.connect().await?;
                crate::lint::trace::trace(
                    &mut client,
                    &c.redacted(),
                    crate::lint::trace::TraceMode::RolledBack,
                    &sources,
                    lock_timeout,
                    findings,
                )
                .await?
            }
            None => {
                let server = tokio::task::spawn_blocking(|| {
                    crate::pgserver::PgServer::start(&crate::pgserver::ServerOptions::default())
                })
                .await
                .map_err(|e| CmdError::Failed(e.into()))??;
                let admin = ConnInfo::parse(&server.url("postgres"))?.connect().await?;
                admin.batch_execute("CREATE DATABASE pgphase_trace").await?;
                let mut client = ConnInfo::parse(&server.url("pgphase_trace"))?
                    .connect()
                    .await?;
                let target = format!(
                    "a throwaway PostgreSQL {} (empty database)",
                    server.major_version()
                );
                let r = crate::lint::trace::trace(
                    &mut client,
                    &target,
                    crate::lint::trace::TraceMode::Committed,
                    &sources,
                    lock_timeout,
                    findings,
                )
                .await;
                drop(client);
                drop(admin);
                drop(server);
                r?
            }
        })
    } else {
        None
    };
    let color = report::style::stdout_color();
    let mut text = report::lint::lint_text(&results, color);
    if let Some(t) = &traced {
        text = format!("{}\n{text}", report::lint::trace_text(t, color));
    }
    emit(
        cli,
        text,
        report::lint::lint_json(&results, traced.as_ref()),
    );
    Ok(if results.iter().any(|r| !r.findings.is_empty()) {
        crate::error::exit::FINDINGS
    } else {
        crate::error::exit::OK
    })
}

/// `check --plan NAME --at-least PHASE`.
async fn check(cli: &Cli, plan: &str, phase: &str) -> Result<i32, CmdError> {
    use crate::program::PhaseKind;
    use crate::state::machine::Reached;
    if !PhaseKind::ALL.iter().any(|k| k.as_str() == phase) {
        return Err(CmdError::Invalid(format!(
            "`{phase}` is not a phase; phases are: {}",
            PhaseKind::ALL.map(|k| k.as_str()).join(", ")
        )));
    }
    let client = connection(cli)?.connect().await?;
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
async fn check_drain(
    cli: &Cli,
    arg: &str,
    wait: Option<std::time::Duration>,
    interval: std::time::Duration,
) -> Result<i32, CmdError> {
    let (plan, _) = plan_arg(arg)?;
    let client = connection(cli)?.connect().await?;
    let quiet = cli.quiet;
    let ev = crate::evidence::drain::wait(&client, &plan, wait, interval, |ev| {
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

/// Every plan's status in the database (none when pgphase never ran there).
async fn plan_statuses(
    client: &tokio_postgres::Client,
) -> Result<std::collections::BTreeMap<String, String>, CmdError> {
    if !crate::state::store::schema_exists(client).await? {
        return Ok(Default::default());
    }
    Ok(client
        .query("SELECT name, status FROM pgphase.plans", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
