//! `pgphase backfill pause|resume|set`: the live controls of a plan's backfills,
//! written to the state tables; a backfill running anywhere picks them up before its
//! next batch.

use clap::Subcommand;
use std::time::Duration;

use super::{actor, emit, plan_arg, required_database, unknown_plan, Cli};
use crate::error::CmdError;
use crate::health::{self, Override};
use crate::state::controls::{self, ControlChange};
use crate::state::store;

#[derive(Subcommand, Debug)]
pub enum BackfillCmd {
    /// Stop starting new batches (the running batch commits); survives restarts of pgphase.
    Pause {
        /// Plan name, or the plan file (then it may be paused before it starts).
        plan: String,
    },
    /// Let a paused backfill go on.
    Resume { plan: String },
    /// Change the running (or next) backfill's settings; each limit takes a value, `off`
    /// (not watched) or `plan` (the plan's value again).
    Set {
        plan: String,
        /// Target duration of one batch (e.g. 50ms), used as given (above the plan's
        /// max_app_wait too).
        #[arg(long, value_parser = parse_duration)]
        batch_time: Option<Duration>,
        /// A fixed sleep between batches (e.g. 20ms; 0ms: none), instead of the plan's
        /// pause and yield_to_load.
        #[arg(long, value_parser = parse_duration)]
        pause: Option<Duration>,
        /// e.g. 5s, off, plan.
        #[arg(long, value_parser = parse_lag)]
        max_replica_lag: Option<Override<Duration>>,
        /// e.g. 512MB, off, plan.
        #[arg(long, value_parser = parse_slot)]
        max_slot_lag: Option<Override<u64>>,
        /// e.g. 40, off, plan.
        #[arg(long, value_parser = parse_sessions)]
        max_active_sessions: Option<Override<u32>>,
        /// Go on without the standbys that were streaming when the backfill started
        /// and are not connected now.
        #[arg(long)]
        forget_standbys: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write it like 50ms or 2s"))
}

fn parse_override<T>(
    s: &str,
    parse: impl Fn(&str) -> Result<Option<T>, String>,
) -> Result<Override<T>, String> {
    if s.trim() == "plan" {
        return Ok(Override::Plan);
    }
    Ok(match parse(s)? {
        Some(v) => Override::To(v),
        None => Override::Off,
    })
}

fn parse_lag(s: &str) -> Result<Override<Duration>, String> {
    parse_override(s, health::parse_duration_limit)
}
fn parse_slot(s: &str) -> Result<Override<u64>, String> {
    parse_override(s, health::parse_bytes_limit)
}
fn parse_sessions(s: &str) -> Result<Override<u32>, String> {
    parse_override(s, health::parse_count_limit)
}

pub async fn run(cli: &Cli, cmd: &BackfillCmd) -> Result<i32, CmdError> {
    let (plan, change) = match cmd {
        BackfillCmd::Pause { plan } => (
            plan,
            ControlChange {
                paused: Some(true),
                ..ControlChange::default()
            },
        ),
        BackfillCmd::Resume { plan } => (
            plan,
            ControlChange {
                paused: Some(false),
                ..ControlChange::default()
            },
        ),
        BackfillCmd::Set {
            plan,
            batch_time,
            pause,
            max_replica_lag,
            max_slot_lag,
            max_active_sessions,
            forget_standbys,
        } => (
            plan,
            ControlChange {
                paused: None,
                batch_time: *batch_time,
                pause: *pause,
                max_replica_lag: *max_replica_lag,
                max_slot_lag: *max_slot_lag,
                max_active_sessions: *max_active_sessions,
                forget_standbys: *forget_standbys,
            },
        ),
    };
    if change.is_empty() {
        return Err(CmdError::Invalid(
            "nothing to set: give at least one of --batch-time, --pause, --max-replica-lag, --max-slot-lag, --max-active-sessions, --forget-standbys".into(),
        ));
    }
    let (name, file) = plan_arg(plan)?;
    let mut client = required_database(cli)?.connect().await?;
    store::ensure_schema(&mut client).await?;
    // a plan name must be known (a typo would control nothing); a file may come first
    if file.is_none() && store::load_plan(&client, &name).await?.is_none() {
        return Err(unknown_plan(&name));
    }
    controls::set(&mut client, &name, &actor(cli), &change).await?;
    let now = controls::read(&client, &name).await?;
    emit(
        cli,
        format!("backfill controls of {name}: {}\n", change.describe()),
        serde_json::json!({ "plan": name, "changed": change.describe(), "controls": now }),
    );
    Ok(crate::error::exit::OK)
}
