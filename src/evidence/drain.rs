//! `pgphase check-drain PLAN [--wait D]`: the check before contract, without advancing,
//! again every interval until clean or the wait is over.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::Evidence;
use crate::error::CmdError;
use crate::state::machine::PhaseStatus;
use crate::state::store;

/// Runs the check (each one counts from the previous) until it is clean or `wait` has
/// passed (None: once); calls `each` after every check but the last. Refuses a plan
/// that is unknown or has no contract ahead.
pub async fn wait(
    c: &Client,
    plan: &str,
    wait: Option<Duration>,
    interval: Duration,
    note: &(dyn Fn(&str) + Sync),
    mut each: impl FnMut(&Evidence),
) -> Result<Evidence, CmdError> {
    let stored = if store::schema_exists(c).await? {
        store::load_plan(c, plan).await?
    } else {
        None
    };
    let Some(stored) = stored else {
        return Err(CmdError::refused(
            format!("plan `{plan}` was not started in this database"),
            "start it first (`pgphase start FILE`)",
        ));
    };
    let ahead = stored
        .program
        .phases
        .iter()
        .zip(&stored.phases)
        .any(|(p, s)| p.point_of_no_return && s.status == PhaseStatus::Pending);
    if !ahead {
        return Err(CmdError::refused(
            format!(
                "plan `{plan}` has no contract ahead (it is `{}`): nothing to check",
                stored.status.as_str()
            ),
            format!("see `pgphase status {plan}`"),
        ));
    }
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        let ev = super::observe(c, &stored, super::BY_CHECK_DRAIN, note).await?;
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match left {
            Some(left) if !ev.clean() && !left.is_zero() => {
                each(&ev);
                tokio::time::sleep(interval.min(left)).await;
            }
            _ => return Ok(ev),
        }
    }
}
