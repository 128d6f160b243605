//! Evidence before contract: before the point of no return, look at what the database
//! saw since the plan reached the gate before its contract (or since the last check),
//! and refuse while anything still uses what the contract drops.
//!
//! * statements in `pg_stat_statements` whose text names a dropped column (with its
//!   table) or a dropped table, read with the project's SQL lexer ([`refs`]), whose
//!   `calls` grew since the previous snapshot;
//! * sessions whose current query, or last query since that snapshot, names them;
//! * scans of a dropped table or of an index dropped with a column, and writes to a
//!   dropped table, from `pg_stat_user_tables` / `pg_stat_user_indexes`.
//!
//! The targets are the program's `contract_drops`. Every check stores a new snapshot
//! (in `pgphase.evidence_snapshots`, through [`crate::state::store`]), so a retry after
//! the old version stopped counts only what ran since the refused attempt.

pub mod drain;
pub mod refs;
pub mod stats;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::CmdError;
use crate::plan::EvidenceMode;
use crate::program::ContractDrop;
use crate::state::store::{self, StoredPlan};
use refs::Target;
use stats::{SessionUse, StatementCounter, Statements, UsageCounter};

/// The counters a check compares with the next one.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Counters {
    /// None: `pg_stat_statements` was not readable then.
    statements: Option<Vec<StatementCounter>>,
    /// The checking role's oid when it could read only its own statements (no
    /// `pg_read_all_stats`): other roles' statements have no baseline in this snapshot.
    #[serde(default)]
    own_only: Option<u32>,
    usage: Vec<UsageCounter>,
}

/// A statement that ran since the previous snapshot and names what contract drops.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StatementUse {
    /// The normalized text, on one line, truncated.
    pub query: String,
    pub role: String,
    pub calls_since: i64,
    pub mean_ms: f64,
    pub queryid: i64,
}

/// Scans or writes of something contract drops since the previous snapshot.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UsageDelta {
    pub kind: String,
    pub name: String,
    pub scans_since: i64,
    pub writes_since: i64,
}

/// The outcome of one check.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub plan: String,
    /// What contract drops, as `table.column` or `table`.
    pub targets: Vec<String>,
    /// The snapshot counted from (None: there was none; counting starts with this one).
    pub since: Option<DateTime<Utc>>,
    pub checked_at: Option<DateTime<Utc>>,
    pub statements: Vec<StatementUse>,
    pub sessions: Vec<SessionUse>,
    pub usage: Vec<UsageDelta>,
    /// What could not be checked, and why.
    pub limits: Vec<String>,
}

impl Evidence {
    pub fn clean(&self) -> bool {
        self.statements.is_empty() && self.sessions.is_empty() && self.usage.is_empty()
    }

    /// One line per finding, then one per limit.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.statements {
            out.push(format!(
                "statement run {} time(s) since the last check by role {} (mean {:.2} ms): {}",
                s.calls_since, s.role, s.mean_ms, s.query
            ));
        }
        for s in &self.sessions {
            out.push(format!(
                "session pid {} {} (user {}, {}){}: {}",
                s.pid,
                s.application_name,
                s.user.as_deref().unwrap_or("?"),
                s.state.as_deref().unwrap_or("?"),
                s.query_start
                    .map(|t| format!(", query started {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                    .unwrap_or_default(),
                s.query
            ));
        }
        for u in &self.usage {
            out.push(format!(
                "{} {}: {} scan(s){} since the last check",
                u.kind,
                u.name,
                u.scans_since,
                if u.writes_since > 0 {
                    format!(", {} row(s) written", u.writes_since)
                } else {
                    String::new()
                }
            ));
        }
        out.extend(self.limits.iter().map(|l| format!("not checked: {l}")));
        out
    }

    /// A one-line summary for events and notes.
    pub fn summary(&self) -> String {
        let since = self
            .since
            .map(|t| format!("since {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_else(|| "from now on (no earlier snapshot)".into());
        format!(
            "{} statement(s), {} session(s), {} index/table use(s) naming {} {since}",
            self.statements.len(),
            self.sessions.len(),
            self.usage.len(),
            self.targets.join(", ")
        )
    }
}

/// The query on one line, whitespace collapsed, at most 200 characters.
pub(crate) fn one_line(q: &str) -> String {
    let one = q.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 200 {
        format!("{}…", one.chars().take(200).collect::<String>())
    } else {
        one
    }
}

fn drops(plan: &StoredPlan) -> Vec<&ContractDrop> {
    plan.program
        .contract_drops
        .iter()
        .filter(|d| !d.name_stays)
        .collect()
}

/// What a program's contract drops that the check before contract looks for, as
/// `table.column` or `table`, when the plan checks (empty: nothing is checked).
pub fn checked_names(program: &crate::program::Program) -> Vec<String> {
    if program.settings.contract.evidence == EvidenceMode::Off {
        return Vec::new();
    }
    Target::of(&program.contract_drops)
        .iter()
        .map(Target::describe)
        .collect()
}

/// What the plan's contract drops that evidence can be looked for (empty: nothing to
/// check).
pub fn targets(plan: &StoredPlan) -> Vec<Target> {
    Target::of(&plan.program.contract_drops)
}

/// Why a snapshot was taken, as `pgphase.evidence_snapshots.reason` stores it.
pub const AT_GATE: &str = "drain gate reached";
pub const WINDOW_START: &str = "window start";
pub const BY_ADVANCE: &str = "phase advance";
pub const BY_CHECK_DRAIN: &str = "check-drain";

/// The check as `phase advance` and `check-drain` run it: unless an earlier check
/// (`phase advance`, `check-drain`) ran within `settings.contract.evidence_window`, a
/// fresh snapshot is taken first and the check watches for that long (told through
/// `note`), so only what runs now counts, not the drain that came before; else it
/// counts since the latest snapshot. With a window of `0s` it counts since the latest
/// snapshot, however old (the gate's, at first).
pub async fn observe(
    c: &Client,
    plan: &StoredPlan,
    reason: &str,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Evidence, CmdError> {
    let window = plan.program.settings.contract.evidence_window;
    if !window.is_zero() {
        let age = store::latest_evidence_age(c, &plan.name, &[BY_ADVANCE, BY_CHECK_DRAIN]).await?;
        if age.is_none_or(|a| a >= window) {
            note(&format!(
                "evidence before contract: watching {} for {} ({})",
                Target::of(&plan.program.contract_drops)
                    .iter()
                    .map(Target::describe)
                    .collect::<Vec<_>>()
                    .join(", "),
                humantime::format_duration(window),
                match age {
                    Some(a) => format!(
                        "the last check ran {} ago",
                        humantime::format_duration(std::time::Duration::from_secs(a.as_secs()))
                    ),
                    None => "no check ran since the gate was reached".into(),
                }
            ));
            check(c, plan, WINDOW_START).await?;
            tokio::time::sleep(window).await;
            let ev = check(c, plan, reason).await?;
            // Table and index counters reach the views up to 10 s late: uses from
            // before the window can land in it. Usage alone counts only when a second
            // window sees it too.
            if ev.clean() || !ev.statements.is_empty() || !ev.sessions.is_empty() {
                return Ok(ev);
            }
            note(&format!(
                "evidence before contract: only index/table counters grew ({}), which can be late counts of earlier uses; watching another {}",
                ev.summary(),
                humantime::format_duration(window)
            ));
            tokio::time::sleep(window).await;
        }
    }
    check(c, plan, reason).await
}

/// Reads the current counters and compares them with the plan's latest snapshot;
/// stores them as the new latest (`reason`: why this check ran).
pub async fn check(c: &Client, plan: &StoredPlan, reason: &str) -> Result<Evidence, CmdError> {
    let targets = targets(plan);
    let access = stats::access(c).await?;
    let mut limits = Vec::new();
    let current_statements = match &access.statements {
        Statements::Available { schema, total_col } => {
            let (found, hidden) = stats::statements(c, schema, total_col, &targets).await?;
            if hidden > 0 && !access.read_all_stats {
                limits.push(format!(
                    "the text of {hidden} statement(s) of other roles is hidden from this role; grant it pg_read_all_stats"
                ));
            }
            Some(found)
        }
        Statements::Unavailable(why) => {
            limits.push(format!(
                "{why}: contract is checked with sessions and index/table usage only; {}",
                stats::INSTALL_HINT
            ));
            None
        }
    };
    let usage = stats::usage(c, &drops(plan)).await?;
    let previous = store::latest_evidence_snapshot(c, &plan.name).await?;
    let since = previous.as_ref().map(|p| p.0);
    let (sessions, hidden) = stats::sessions(c, &targets, since).await?;
    if hidden > 0 && !access.read_all_stats {
        limits.push(format!(
            "the queries of {hidden} session(s) of other roles are hidden from this role; grant it pg_read_all_stats"
        ));
    }
    let before: Option<Counters> = previous.and_then(|p| serde_json::from_value(p.1).ok());
    let mut ev = Evidence {
        plan: plan.name.clone(),
        targets: targets.iter().map(Target::describe).collect(),
        since,
        checked_at: None,
        statements: Vec::new(),
        sessions,
        usage: Vec::new(),
        limits,
    };
    let own_only = if access.read_all_stats {
        None
    } else {
        Some(stats::current_user_oid(c).await?)
    };
    if let Some(before) = &before {
        let (deltas, unknown) = statement_deltas(
            before.statements.as_deref(),
            before.own_only,
            current_statements.as_deref(),
        );
        if unknown > 0 {
            ev.limits.push(format!(
                "{unknown} statement(s) of other roles were hidden from the role of the last check (no pg_read_all_stats): their calls are counted from this check on"
            ));
        }
        ev.statements = deltas;
        ev.usage = usage_deltas(&before.usage, &usage);
    } else {
        ev.since = None;
    }
    let now = Counters {
        statements: current_statements,
        own_only,
        usage,
    };
    let json = serde_json::to_value(&now).map_err(anyhow::Error::from)?;
    ev.checked_at = Some(
        store::save_evidence_snapshot(c, &plan.name, reason, &json, ev.clean(), &ev.summary())
            .await?,
    );
    Ok(ev)
}

/// Statements whose calls grew (a statement missing from `before`, or with fewer calls
/// there after a reset or eviction, counts all its calls), and how many statements
/// have no baseline because `before` saw only the statements of role `own_only`.
/// None before: no baseline at all.
fn statement_deltas(
    before: Option<&[StatementCounter]>,
    own_only: Option<u32>,
    now: Option<&[StatementCounter]>,
) -> (Vec<StatementUse>, usize) {
    let (Some(before), Some(now)) = (before, now) else {
        return (Vec::new(), 0);
    };
    let mut out = Vec::new();
    let mut unknown = 0;
    for s in now {
        let prev = before
            .iter()
            .find(|b| b.userid == s.userid && b.queryid == s.queryid);
        if prev.is_none() && own_only.is_some_and(|u| u != s.userid) {
            unknown += 1; // hidden last time: no baseline
            continue;
        }
        let prev = prev.filter(|b| b.calls <= s.calls);
        let (calls, ms) = match prev {
            Some(b) => (s.calls - b.calls, s.total_ms - b.total_ms),
            None => (s.calls, s.total_ms),
        };
        if calls > 0 {
            out.push(StatementUse {
                query: one_line(&s.query),
                role: s.role.clone(),
                calls_since: calls,
                mean_ms: ms.max(0.0) / calls as f64,
                queryid: s.queryid,
            });
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.calls_since));
    (out, unknown)
}

fn usage_deltas(before: &[UsageCounter], now: &[UsageCounter]) -> Vec<UsageDelta> {
    now.iter()
        .filter_map(|u| {
            let b = before.iter().find(|b| b.relid == u.relid);
            let (scans, writes) = match b {
                Some(b) if b.scans <= u.scans && b.writes <= u.writes => {
                    (u.scans - b.scans, u.writes - b.writes)
                }
                // new since (or counters reset): everything counts
                _ => (u.scans, u.writes),
            };
            (scans > 0 || writes > 0).then(|| UsageDelta {
                kind: u.kind.clone(),
                name: u.name.clone(),
                scans_since: scans,
                writes_since: writes,
            })
        })
        .collect()
}

/// When a plan reaches the gate before its contract: the first snapshot, so the check
/// before contract counts what ran after it. Returns what to tell the operator about
/// what cannot be checked here (None: everything can).
pub async fn at_drain_gate(c: &Client, plan: &StoredPlan) -> Result<Option<String>, CmdError> {
    if checked_names(&plan.program).is_empty() {
        return Ok(None);
    }
    let ev = check(c, plan, AT_GATE).await?;
    Ok((!ev.limits.is_empty())
        .then(|| format!("evidence before contract: {}", ev.limits.join("; "))))
}

/// Before `phase advance` runs a contract: refuses (exit 3, the plan unchanged) while
/// there is evidence that something still uses what it drops, unless `force`. Returns
/// the `evidence` event to record (message, detail) once the command goes on.
pub async fn before_contract(
    c: &Client,
    plan: &StoredPlan,
    force: bool,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Option<(String, serde_json::Value)>, CmdError> {
    let mode = plan.program.settings.contract.evidence;
    if targets(plan).is_empty() {
        return Ok(None);
    }
    if mode == EvidenceMode::Off {
        return Ok(Some((
            "evidence before contract: not checked (settings.contract.evidence: off)".into(),
            serde_json::json!({ "mode": "off" }),
        )));
    }
    let ev = observe(c, plan, BY_ADVANCE, note).await?;
    let detail = serde_json::to_value(&ev).map_err(anyhow::Error::from)?;
    let limits = if ev.limits.is_empty() {
        String::new()
    } else {
        format!(" (not checked: {})", ev.limits.join("; "))
    };
    if ev.clean() {
        return Ok(Some((
            format!(
                "evidence before contract: nothing uses {}{limits}",
                ev.targets.join(", ")
            ),
            detail,
        )));
    }
    if mode == EvidenceMode::Warn {
        return Ok(Some((
            format!(
                "evidence before contract IGNORED (settings.contract.evidence: warn): {}: {}",
                ev.summary(),
                ev.lines().join("; ")
            ),
            detail,
        )));
    }
    if force {
        return Ok(Some((
            format!(
                "evidence before contract OVERRIDDEN with --force: {}: {}",
                ev.summary(),
                ev.lines().join("; ")
            ),
            detail,
        )));
    }
    Err(CmdError::refused(
        format!(
            "plan `{}`: something still uses what contract drops ({}) — {}:\n{}",
            plan.name,
            ev.targets.join(", "),
            ev.summary(),
            ev.lines()
                .iter()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        format!(
            "stop what still runs it (the old application version), then re-run this command: the next check counts only what runs after this one (`pgphase check-drain {} --wait 10m` waits for that); `--force` runs contract anyway and is recorded in the event log",
            plan.name
        ),
    ))
}

/// A note for `pgphase plan` on a database: what the check before contract will not
/// see here (None: it sees everything, or the plan drops nothing it looks for).
pub async fn plan_note(c: &Client, drops: &[ContractDrop]) -> Result<Option<String>, CmdError> {
    if Target::of(drops).is_empty() {
        return Ok(None);
    }
    let access = stats::access(c).await?;
    let mut limits = Vec::new();
    if let Statements::Unavailable(why) = &access.statements {
        limits.push(format!(
            "{why}: contract will be checked with sessions and index/table usage only; {}",
            stats::INSTALL_HINT
        ));
    }
    if !access.read_all_stats {
        limits.push("this role lacks pg_read_all_stats: other roles' statements and session queries are hidden from the check before contract".into());
    }
    Ok((!limits.is_empty()).then(|| format!("evidence before contract: {}", limits.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(queryid: i64, calls: i64, total_ms: f64) -> StatementCounter {
        StatementCounter {
            userid: 10,
            queryid,
            role: "app".into(),
            query: "SELECT contents FROM comments".into(),
            calls,
            total_ms,
        }
    }

    #[test]
    fn only_calls_since_the_previous_snapshot_count() {
        let before = vec![counter(1, 5, 10.0), counter(2, 3, 3.0)];
        let now = vec![counter(1, 5, 10.0), counter(2, 7, 11.0), counter(3, 2, 1.0)];
        let (d, _) = statement_deltas(Some(&before), None, Some(&now));
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!((d[0].queryid, d[0].calls_since, d[0].mean_ms), (2, 4, 2.0));
        assert_eq!((d[1].queryid, d[1].calls_since), (3, 2));
        // a reset: fewer calls than before means all of them are new
        let (d, _) = statement_deltas(Some(&now), None, Some(&[counter(1, 2, 1.0)]));
        assert_eq!(d[0].calls_since, 2);
        // no baseline: nothing to compare with
        assert!(statement_deltas(None, None, Some(&now)).0.is_empty());
        // the last check saw only role 99's statements: role 10's new one has no baseline
        let (d, unknown) = statement_deltas(Some(&before), Some(99), Some(&now));
        assert_eq!((d.len(), unknown), (1, 1), "{d:?}");
    }
}
