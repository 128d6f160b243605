//! Live controls of a plan's backfills (`pgphase backfill pause|resume|set`), stored in
//! `pgphase.backfill_controls` so that a backfill running anywhere picks them up
//! within one batch, and the bookkeeping of a backfill's waits in
//! `pgphase.backfill_progress` (why it waits, since when, how long it waited).

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::{Client, GenericClient, Row, Statement};

use super::store::{self, Event};
use crate::health::Override;

/// The operator's controls of one plan's backfills.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Control {
    pub paused: bool,
    pub paused_by: Option<String>,
    pub paused_at: Option<DateTime<Utc>>,
    pub batch_time: Option<Duration>,
    pub pause: Option<Duration>,
    pub max_replica_lag: Option<Override<Duration>>,
    pub max_slot_lag: Option<Override<u64>>,
    pub max_active_sessions: Option<Override<u32>>,
    pub forget_standbys_at: Option<DateTime<Utc>>,
}

/// A change of the controls; `None` fields keep their value.
#[derive(Clone, Debug, Default)]
pub struct ControlChange {
    pub paused: Option<bool>,
    pub batch_time: Option<Duration>,
    pub pause: Option<Duration>,
    pub max_replica_lag: Option<Override<Duration>>,
    pub max_slot_lag: Option<Override<u64>>,
    pub max_active_sessions: Option<Override<u32>>,
    pub forget_standbys: bool,
}

impl ControlChange {
    pub fn is_empty(&self) -> bool {
        self.paused.is_none()
            && self.batch_time.is_none()
            && self.pause.is_none()
            && self.max_replica_lag.is_none()
            && self.max_slot_lag.is_none()
            && self.max_active_sessions.is_none()
            && !self.forget_standbys
    }

    /// `paused; max_replica_lag 5s; …` for the event log.
    pub fn describe(&self) -> String {
        fn lim<T>(o: &Override<T>, f: impl Fn(&T) -> String) -> String {
            match o {
                Override::Plan => "the plan's value".into(),
                Override::Off => "off".into(),
                Override::To(v) => f(v),
            }
        }
        let ms = |d: &Duration| crate::health::fmt_ms(d.as_millis() as u64);
        let mut parts = Vec::new();
        match self.paused {
            Some(true) => parts.push("paused".to_string()),
            Some(false) => parts.push("resumed".to_string()),
            None => {}
        }
        if let Some(d) = &self.batch_time {
            parts.push(format!("target_batch_time {}", ms(d)));
        }
        if let Some(d) = &self.pause {
            parts.push(format!("pause {}", ms(d)));
        }
        if let Some(o) = &self.max_replica_lag {
            parts.push(format!("max_replica_lag {}", lim(o, ms)));
        }
        if let Some(o) = &self.max_slot_lag {
            parts.push(format!(
                "max_slot_lag {}",
                lim(o, |b| crate::health::fmt_bytes(*b))
            ));
        }
        if let Some(o) = &self.max_active_sessions {
            parts.push(format!("max_active_sessions {}", lim(o, |n| n.to_string())));
        }
        if self.forget_standbys {
            parts.push("forget standbys that are not connected".into());
        }
        parts.join("; ")
    }
}

fn to_db<T>(o: Option<Override<T>>, f: impl Fn(T) -> i64) -> Option<Option<i64>> {
    o.map(|o| match o {
        Override::Plan => None,
        Override::Off => Some(-1),
        Override::To(v) => Some(f(v)),
    })
}

fn from_db<T>(v: Option<i64>, f: impl Fn(i64) -> T) -> Option<Override<T>> {
    v.map(|v| {
        if v < 0 {
            Override::Off
        } else {
            Override::To(f(v))
        }
    })
}

/// The controls of `plan` (all defaults when none were set).
pub async fn read<C: GenericClient>(c: &C, plan: &str) -> Result<Control, tokio_postgres::Error> {
    Ok(from_row(c.query_opt(READ, &[&plan]).await?))
}

/// Reads the controls of a plan (`$1`); a backfill prepares it once and reads it
/// before every batch ([`read_prepared`]).
pub const READ: &str =
    "SELECT paused, paused_by, paused_at, batch_time_ms, pause_ms, max_replica_lag_ms,
                    max_slot_lag_bytes, max_active_sessions, forget_standbys_at
               FROM pgphase.backfill_controls WHERE plan_name = $1";

/// [`read`] with [`READ`] prepared.
pub async fn read_prepared(
    c: &Client,
    stmt: &Statement,
    plan: &str,
) -> Result<Control, tokio_postgres::Error> {
    Ok(from_row(c.query_opt(stmt, &[&plan]).await?))
}

fn from_row(row: Option<Row>) -> Control {
    let ms = |v: i64| Duration::from_millis(v as u64);
    match row {
        None => Control::default(),
        Some(r) => Control {
            paused: r.get(0),
            paused_by: r.get(1),
            paused_at: r.get(2),
            batch_time: r.get::<_, Option<i64>>(3).map(ms),
            pause: r.get::<_, Option<i64>>(4).map(ms),
            max_replica_lag: from_db(r.get(5), ms),
            max_slot_lag: from_db(r.get(6), |v| v as u64),
            max_active_sessions: from_db(r.get(7), |v| v as u32),
            forget_standbys_at: r.get(8),
        },
    }
}

/// Applies `change` to the controls of `plan` and, once the plan is started, records it
/// in the event log (who, when, what), in one transaction.
pub async fn set(
    c: &mut Client,
    plan: &str,
    actor: &str,
    change: &ControlChange,
) -> Result<(), tokio_postgres::Error> {
    let tx = c.transaction().await?;
    let ms = |d: Duration| d.as_millis() as i64;
    // (set?, value) pairs: a column is written only when the change names it
    let lag = to_db(change.max_replica_lag, ms);
    let slot = to_db(change.max_slot_lag, |b| b as i64);
    let sessions = to_db(change.max_active_sessions, |n| n as i64);
    tx.execute(
        "INSERT INTO pgphase.backfill_controls (plan_name, updated_by) VALUES ($1, $2)
         ON CONFLICT (plan_name) DO NOTHING",
        &[&plan, &actor],
    )
    .await?;
    tx.execute(
        "UPDATE pgphase.backfill_controls SET
             paused     = coalesce($3, paused),
             paused_by  = CASE WHEN $3 IS NULL THEN paused_by WHEN $3 THEN $2 END,
             paused_at  = CASE WHEN $3 IS NULL THEN paused_at WHEN $3 THEN now() END,
             batch_time_ms = coalesce($4, batch_time_ms),
             pause_ms   = coalesce($5, pause_ms),
             max_replica_lag_ms  = CASE WHEN $6 THEN $7 ELSE max_replica_lag_ms END,
             max_slot_lag_bytes  = CASE WHEN $8 THEN $9 ELSE max_slot_lag_bytes END,
             max_active_sessions = CASE WHEN $10 THEN $11 ELSE max_active_sessions END,
             forget_standbys_at  = CASE WHEN $12 THEN clock_timestamp() ELSE forget_standbys_at END,
             updated_by = $2, updated_at = now()
         WHERE plan_name = $1",
        &[
            &plan,
            &actor,
            &change.paused,
            &change.batch_time.map(ms),
            &change.pause.map(ms),
            &lag.is_some(),
            &lag.flatten(),
            &slot.is_some(),
            &slot.flatten(),
            &sessions.is_some(),
            &sessions.flatten(),
            &change.forget_standbys,
        ],
    )
    .await?;
    // the event log is a started plan's (an event of an unknown plan reads as tampered
    // state); before the start, the controls row itself says who set what, when
    let started: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pgphase.plans WHERE name = $1)",
            &[&plan],
        )
        .await?
        .get(0);
    if started {
        store::record(
            &tx,
            plan,
            actor,
            Event {
                kind: store::EventKind::BackfillControl,
                message: format!("backfill controls: {}", change.describe()),
                ..Event::default()
            },
        )
        .await?;
    }
    tx.commit().await
}

/// Identifies one backfill's row in `pgphase.backfill_progress`.
#[derive(Clone, Copy, Debug)]
pub struct BackfillRow<'a> {
    pub plan: &'a str,
    pub phase: i32,
    pub step: i32,
}

/// Records why the backfill waits now; `since` is kept from the wait's start.
pub async fn record_waiting<C: GenericClient>(
    c: &C,
    row: BackfillRow<'_>,
    holds: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE pgphase.backfill_progress
            SET waiting = $4, waiting_since = coalesce(waiting_since, clock_timestamp())
          WHERE plan_name = $1 AND phase = $2 AND step = $3",
        &[&row.plan, &row.phase, &row.step, holds],
    )
    .await?;
    Ok(())
}

/// Ends a wait: adds its duration to `waited_ms`.
pub async fn record_resumed<C: GenericClient>(
    c: &C,
    row: BackfillRow<'_>,
    waited: Duration,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE pgphase.backfill_progress
            SET waiting = NULL, waiting_since = NULL, waited_ms = waited_ms + $4
          WHERE plan_name = $1 AND phase = $2 AND step = $3",
        &[
            &row.plan,
            &row.phase,
            &row.step,
            &(waited.as_millis() as i64),
        ],
    )
    .await?;
    Ok(())
}

/// The standbys the backfill watches for disappearing (names).
pub async fn standbys<C: GenericClient>(
    c: &C,
    row: BackfillRow<'_>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let v: Option<serde_json::Value> = c
        .query_opt(
            "SELECT standbys FROM pgphase.backfill_progress
              WHERE plan_name = $1 AND phase = $2 AND step = $3",
            &[&row.plan, &row.phase, &row.step],
        )
        .await?
        .and_then(|r| r.get(0));
    Ok(v.and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default())
}

pub async fn save_standbys<C: GenericClient>(
    c: &C,
    row: BackfillRow<'_>,
    names: &[String],
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE pgphase.backfill_progress SET standbys = $4
          WHERE plan_name = $1 AND phase = $2 AND step = $3",
        &[&row.plan, &row.phase, &row.step, &serde_json::json!(names)],
    )
    .await?;
    Ok(())
}

/// An event of the running backfill (`backfill_waiting`, `backfill_resumed`).
pub async fn record_event<C: GenericClient>(
    c: &C,
    plan: &str,
    actor: &str,
    kind: store::EventKind,
    message: String,
    duration: Option<Duration>,
    detail: Option<serde_json::Value>,
) -> Result<(), tokio_postgres::Error> {
    store::record(
        c,
        plan,
        actor,
        Event {
            kind,
            message,
            duration_ms: duration.map(|d| d.as_millis() as i64),
            detail,
            ..Event::default()
        },
    )
    .await
}
