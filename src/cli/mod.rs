//! Command-line definitions, the one place the database connection is resolved, and
//! the dispatch to one handler per command, by group: operate.rs (start, advance,
//! rollback), observe.rs (status, history, check), dashboard.rs, plans.rs (plan, order,
//! checklist), lint.rs, fleet.rs (the fleet commands).

mod backfill;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

use crate::conn::ConnInfo;
use crate::error::CmdError;
use crate::plan::PlanFile;

mod dashboard;
mod fleet;
mod lint;
mod observe;
mod operate;
mod plans;
mod tools;

#[derive(Parser, Debug)]
#[command(
    name = "pgphase",
    version = env!("PGPHASE_VERSION"),
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
    /// Live controls of a plan's backfills, from any terminal: pause, resume, set limits.
    #[command(subcommand)]
    Backfill(backfill::BackfillCmd),
    /// Where every plan stands (or one plan's phase timeline).
    Status {
        plan: Option<String>,
        /// Refresh: live bars on a terminal until Ctrl-C (through deploy gates); a line per
        /// refresh elsewhere, a JSON object per refresh with --output json, until nothing runs.
        #[arg(long, short)]
        watch: bool,
        /// With --watch on a terminal: stop once nothing is running (at a deploy gate or
        /// the end), as pipes do.
        #[arg(long, requires = "watch")]
        until_done: bool,
        /// Time between refreshes with --watch (e.g. 500ms, 2s).
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// A full-screen, read-only terminal dashboard of every plan, the live work (backfill,
    /// statements, lock waits) and the application's sessions, to leave open during a
    /// release. Keys: ↑/↓ or j/k, Enter, c, h, ?, q.
    Dashboard {
        /// Time between refreshes (e.g. 500ms, 2s).
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
        /// text; json (as --output json); github (workflow annotations on the lines of a
        /// pull request); sarif (SARIF 2.1.0, for code scanning). Default: --output's.
        #[arg(long, value_enum)]
        format: Option<LintFormat>,
    },
    /// Convert raw migration SQL (as Rails, Django, Prisma, Alembic or Flyway generate it)
    /// into a plan: each statement becomes the change kind that does it safely; what no
    /// kind does becomes an `sql` change run in contract, with a comment saying why. The
    /// plan goes to stdout (or --out); what needs a human, to stderr.
    Convert {
        #[arg(required = true, value_name = "FILE.sql")]
        files: Vec<PathBuf>,
        /// The plan's name (default: the first file's name).
        #[arg(long)]
        name: Option<String>,
        /// Write the plan here instead of stdout; a second plan (when the changes cannot
        /// share one) goes beside it as NAME-2.yaml, and so on.
        #[arg(long, short = 'o', value_name = "FILE.yaml")]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema of plan files (for editors: the YAML language server reads
    /// it from a `# yaml-language-server: $schema=…` line).
    Schema,
    /// Print a shell completion script: `pgphase completions bash > /etc/bash_completion.d/pgphase`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `pgphase man > pgphase.1; man ./pgphase.1`.
    Man,
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
    /// One plan across many databases (a targets file), in waves, with fleet-wide gates:
    /// each database through the same commands as alone, its state in its own `pgphase`
    /// schema. See docs/fleets.md.
    #[command(subcommand)]
    Fleet(FleetCmd),
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
pub enum LintFormat {
    Text,
    Json,
    Github,
    Sarif,
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

/// Which databases a fleet command runs on.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = true)]
pub struct FleetTargets {
    /// The targets file (databases, waves, concurrency, on_error). With
    /// --targets-from-query, a file without `targets` giving the waves and settings.
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// The databases of one server, listed by a read-only SELECT on the database given
    /// (--database-url / DATABASE_URL / PG*): first column the database's name, each
    /// other column a label. Each database is reached as that connection with its name.
    #[arg(long, value_name = "SELECT")]
    pub targets_from_query: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum FleetCmd {
    /// `start` on every database of the fleet, wave by wave, up to each one's first deploy
    /// gate. Re-running it resumes only the databases not there yet.
    Start {
        file: PathBuf,
        #[command(flatten)]
        targets: FleetTargets,
        #[arg(long, short)]
        yes: bool,
    },
    /// Confirm one gate's deploy for the fleet, once: every database waiting at that gate
    /// runs on to its next gate, wave by wave. Databases elsewhere are left as they are
    /// and listed.
    Advance {
        /// Plan name, or the plan file (its checksum is then checked on each database).
        plan: String,
        /// The phase whose closing gate this deploy confirms (as `fleet status` shows it).
        #[arg(long, required = true, value_name = "PHASE")]
        gate: String,
        /// What was deployed: a version, tag or commit, recorded in each database's log.
        #[arg(long, required = true)]
        deployed: String,
        #[command(flatten)]
        targets: FleetTargets,
        #[arg(long, short)]
        yes: bool,
        /// Wait for the databases a command is working on now (still backfilling toward
        /// the gate) instead of leaving them behind.
        #[arg(long)]
        wait: bool,
    },
    /// `phase rollback --to` on every database, last wave first. Without --to, every
    /// database must go back to the same place, else nothing is rolled back.
    Rollback {
        plan: String,
        #[command(flatten)]
        targets: FleetTargets,
        /// Where the fleet goes back to: the phase whose deploy gate it reopens, or `start`.
        #[arg(long, value_name = "PHASE|start")]
        to: Option<String>,
        #[arg(long, short)]
        yes: bool,
    },
    /// How many databases stand where (phase and status), and those behind or failed;
    /// with --output json one entry per database.
    Status {
        plan: String,
        #[command(flatten)]
        targets: FleetTargets,
    },
    /// The fleet's release checklist: per gate, the deploy, the fleet command after it and
    /// how many databases are past it.
    Checklist {
        plan: String,
        #[command(flatten)]
        targets: FleetTargets,
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

/// The database given to the command: --database-url, else DATABASE_URL, else libpq's
/// PGHOST/PGPORT/PGUSER/PGDATABASE/PGPASSWORD and ~/.pgpass; None when none is given.
/// Every command resolves its connection here.
fn database(cli: &Cli) -> Result<Option<ConnInfo>, CmdError> {
    ConnInfo::resolve(cli.database_url.as_deref()).map_err(|e| CmdError::Invalid(format!("{e:#}")))
}

/// [`database`], for the commands that need one.
fn required_database(cli: &Cli) -> Result<ConnInfo, CmdError> {
    database(cli)?.ok_or_else(|| {
        CmdError::Invalid(
            "no database given: pass --database-url, or set DATABASE_URL (or PGHOST/PGDATABASE); `pgphase demo` runs on a throwaway local server".into(),
        )
    })
}

/// Who runs the command, as the event log records it: --actor, else PGPHASE_ACTOR, else
/// the OS user.
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

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write it like 30s or 10m"))
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

fn emit(cli: &Cli, text: String, json: serde_json::Value) {
    match cli.output {
        Output::Text => print!("{text}"),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
    }
}

fn unknown_plan(p: &str) -> CmdError {
    CmdError::refused(
        format!("plan `{p}` has not been started in this database"),
        "`pgphase status` lists the plans this database knows",
    )
}

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32, CmdError> {
    match &cli.command {
        Cmd::Plan { file } => plans::plan(&cli, file).await?,
        Cmd::Order { paths } => plans::order(&cli, paths).await?,
        Cmd::Checklist { plan, format } => plans::checklist(&cli, plan, *format).await?,
        Cmd::Start { file, yes } => operate::start(&cli, file, *yes).await?,
        Cmd::Phase(PhaseCmd::Advance {
            plan,
            deployed,
            yes,
            force,
            gate,
        }) => {
            let options = crate::run::AdvanceOptions {
                force: *force,
                gate: gate.clone(),
            };
            operate::advance(&cli, plan, deployed, *yes, options).await?
        }
        Cmd::Phase(PhaseCmd::Rollback { plan, yes, to }) => {
            operate::rollback(&cli, plan, *yes, to.as_deref()).await?
        }
        Cmd::Status {
            plan,
            watch,
            until_done,
            interval,
        } => {
            let watch = watch.then_some(observe::WatchOptions {
                interval: *interval,
                until_done: *until_done,
            });
            return observe::status(&cli, plan.as_deref(), watch).await;
        }
        Cmd::Dashboard { interval } => dashboard::dashboard(&cli, *interval).await?,
        Cmd::History { plan } => observe::history(&cli, plan.as_deref()).await?,
        Cmd::Fleet(f) => {
            return match f {
                FleetCmd::Start { file, targets, yes } => {
                    fleet::start(&cli, file, targets, *yes).await
                }
                FleetCmd::Advance {
                    plan,
                    gate,
                    deployed,
                    targets,
                    yes,
                    wait,
                } => fleet::advance(&cli, plan, gate, deployed, targets, *yes, *wait).await,
                FleetCmd::Rollback {
                    plan,
                    targets,
                    to,
                    yes,
                } => fleet::rollback(&cli, plan, to.as_deref(), targets, *yes).await,
                FleetCmd::Status { plan, targets } => fleet::status(&cli, plan, targets).await,
                FleetCmd::Checklist { plan, targets } => {
                    fleet::checklist(&cli, plan, targets).await
                }
            }
        }
        Cmd::Check { plan, at_least } => return observe::check(&cli, plan, at_least).await,
        Cmd::CheckDrain {
            plan,
            wait,
            interval,
        } => return observe::check_drain(&cli, plan, *wait, *interval).await,
        Cmd::Backfill(cmd) => return backfill::run(&cli, cmd).await,
        Cmd::Lint {
            files,
            trace,
            lock_timeout,
            rules,
            format,
        } => {
            if *rules {
                lint::rules(&cli);
                return Ok(crate::error::exit::OK);
            }
            let format = format.unwrap_or(match cli.output {
                Output::Text => LintFormat::Text,
                Output::Json => LintFormat::Json,
            });
            return lint::lint(&cli, files, *trace, *lock_timeout, format).await;
        }
        Cmd::Convert { files, name, out } => {
            tools::convert(&cli, files, name.as_deref(), out.as_deref())?
        }
        Cmd::Schema => tools::schema(),
        Cmd::Completions { shell } => tools::completions(*shell),
        Cmd::Man => tools::man()?,
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
