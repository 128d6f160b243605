//! The gate before every backfill batch: the operator's live controls and the
//! database's health ([`crate::health`]). While anything holds the backfill, no batch
//! runs; the wait is recorded (why, since when) in `pgphase.backfill_progress` for
//! `status`, and in the event log when it starts, when its reasons change and when it
//! ends.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, Statement};

use super::{CheckpointKey, ExecError, Observer, StepSettings};
use crate::health::signals::{self, Signals};
use crate::health::{self, Hold, LagTracker, Limits};
use crate::state::controls::{self, BackfillRow, Control};

/// How often a waiting backfill reads the signals and controls again.
const POLL: Duration = Duration::from_millis(200);

/// What the next batch runs with, after the operator's overrides.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub target_batch_time: Duration,
    /// The operator set the batch time (`backfill set --batch-time`): it is used as
    /// given, above `max_app_wait` too.
    pub batch_time_set: bool,
    pub pause: Duration,
    /// Sleep in proportion to the application's load ([`super::pace`]); 0 when the
    /// operator set a fixed `--pause`.
    pub yield_to_load: f64,
}

pub struct Throttle<'a> {
    cp: &'a CheckpointKey,
    settings: &'a StepSettings,
    expected: BTreeSet<String>,
    forgot_at: Option<chrono::DateTime<chrono::Utc>>,
    tracker: LagTracker,
    /// Prepared once: the controls and the signals are read before every batch, in
    /// one round trip.
    read_controls: Statement,
    signals: signals::Statements,
    /// The limits of the last reading: the signals they watch are read together with
    /// the controls that may change them.
    watched: Limits,
}

fn db(what: &'static str) -> impl Fn(tokio_postgres::Error) -> ExecError {
    move |e| ExecError::db(what, e)
}

impl<'a> Throttle<'a> {
    /// Before the first batch: the standbys streaming now (and those recorded by an
    /// earlier run of this backfill) are the ones whose disappearance holds it.
    pub async fn start(
        c: &Client,
        settings: &'a StepSettings,
        cp: &'a CheckpointKey,
    ) -> Result<Throttle<'a>, ExecError> {
        let (read_controls, signals) =
            tokio::try_join!(c.prepare(controls::READ), signals::Statements::prepare(c))
                .map_err(db("preparing the backfill's health reads"))?;
        let control = controls::read_prepared(c, &read_controls, &cp.plan)
            .await
            .map_err(db("reading the backfill controls"))?;
        let mut t = Throttle {
            cp,
            settings,
            expected: BTreeSet::new(),
            forgot_at: control.forget_standbys_at,
            tracker: LagTracker::default(),
            read_controls,
            signals,
            watched: Limits::default(),
        };
        t.watched = t.limits(&control);
        let stored = controls::standbys(c, t.row())
            .await
            .map_err(db("reading the watched standbys"))?;
        t.expected.extend(stored);
        // a wait left behind by a process that stopped while waiting
        controls::record_resumed(c, t.row(), Duration::ZERO)
            .await
            .map_err(db("recording the end of the backfill's wait"))?;
        t.remember_standbys(c, &t.limits(&control)).await?;
        Ok(t)
    }

    fn row(&self) -> BackfillRow<'a> {
        BackfillRow {
            plan: &self.cp.plan,
            phase: self.cp.phase,
            step: self.cp.step,
        }
    }

    fn limits(&self, control: &Control) -> Limits {
        fn pick<T: Copy>(o: Option<health::Override<T>>, plan: Option<T>) -> Option<T> {
            o.map_or(plan, |o| o.apply(plan))
        }
        let base = &self.settings.health;
        Limits {
            max_replica_lag: pick(control.max_replica_lag, base.max_replica_lag),
            max_slot_lag: pick(control.max_slot_lag, base.max_slot_lag),
            max_active_sessions: pick(control.max_active_sessions, base.max_active_sessions),
        }
    }

    /// Adds the standbys streaming now to the watched ones, and stores them.
    async fn remember_standbys(&mut self, c: &Client, limits: &Limits) -> Result<(), ExecError> {
        if limits.max_replica_lag.is_none() {
            return Ok(());
        }
        let now = self
            .signals
            .read(c, limits)
            .await
            .map_err(db("reading pg_stat_replication"))?;
        self.tracker.observe(now.current_lsn, Instant::now());
        let before = self.expected.len();
        self.expected
            .extend(now.standbys.iter().map(|s| s.name.clone()));
        if self.expected.len() != before || before == 0 {
            let names: Vec<String> = self.expected.iter().cloned().collect();
            controls::save_standbys(c, self.row(), &names)
                .await
                .map_err(db("recording the watched standbys"))?;
        }
        Ok(())
    }

    /// Returns when the next batch may run, with its tuning; waits (and records why)
    /// while the backfill is paused or the database's health holds it.
    pub async fn clear(
        &mut self,
        c: &Client,
        observer: &dyn Observer,
    ) -> Result<Tuning, ExecError> {
        let mut wait: Option<(Instant, BTreeSet<String>)> = None;
        loop {
            let (control, mut signals) = self.read(c).await?;
            let limits = self.limits(&control);
            if !covers(&self.watched, &limits) {
                // the operator's controls watch a signal not read yet
                signals = self.read_signals(c, &limits).await?;
            }
            self.watched = limits;
            if control.forget_standbys_at.is_some() && control.forget_standbys_at != self.forgot_at
            {
                // the operator lets the backfill go on without the standbys gone now
                self.forgot_at = control.forget_standbys_at;
                self.expected.clear();
                self.remember_standbys(c, &limits).await?;
            }
            // a batch's WAL takes about the batch's time to replay on a standby
            let headroom = control.batch_time.unwrap_or_else(|| {
                let t = self.settings.target_batch_time;
                self.settings.max_app_wait.map_or(t, |m| m.min(t))
            });
            let mut holds = self.health_holds(&limits, signals, headroom);
            if control.paused {
                holds.insert(
                    0,
                    Hold::Paused {
                        by: control.paused_by.clone().unwrap_or_default(),
                        at: control
                            .paused_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                            .unwrap_or_default(),
                    },
                );
            }
            if holds.is_empty() {
                if let Some((since, _)) = wait {
                    self.resumed(c, observer, since.elapsed()).await?;
                }
                return Ok(Tuning {
                    target_batch_time: control
                        .batch_time
                        .unwrap_or(self.settings.target_batch_time),
                    batch_time_set: control.batch_time.is_some(),
                    pause: control.pause.unwrap_or(self.settings.batch_pause),
                    yield_to_load: if control.pause.is_some() {
                        0.0
                    } else {
                        self.settings.yield_to_load
                    },
                });
            }
            let keys = health::hold_keys(&holds);
            let json = serde_json::json!(holds
                .iter()
                .map(|h| {
                    let mut v = serde_json::to_value(h).unwrap_or_default();
                    v["message"] = h.to_string().into();
                    v
                })
                .collect::<Vec<_>>());
            controls::record_waiting(c, self.row(), &json)
                .await
                .map_err(db("recording the backfill's wait"))?;
            if wait.as_ref().map(|(_, k)| k) != Some(&keys) {
                let why = holds
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                observer.note(&format!("backfill waits: {why}"));
                controls::record_event(
                    c,
                    &self.cp.plan,
                    &self.settings.actor,
                    crate::state::store::EventKind::BackfillWaiting,
                    format!("backfill waits: {why}"),
                    None,
                    Some(json),
                )
                .await
                .map_err(db("recording the backfill's wait"))?;
                let since = wait.map(|(s, _)| s).unwrap_or_else(Instant::now);
                wait = Some((since, keys));
            }
            // a signal ends the wait: the step's future is dropped (runner::guarded)
            tokio::time::sleep(POLL).await;
        }
    }

    /// The controls, and the signals the last reading's limits watch, pipelined.
    async fn read(&self, c: &Client) -> Result<(Control, Option<Signals>), ExecError> {
        let control = async {
            controls::read_prepared(c, &self.read_controls, &self.cp.plan)
                .await
                .map_err(db("reading the backfill controls"))
        };
        tokio::try_join!(control, self.read_signals(c, &self.watched))
    }

    async fn read_signals(
        &self,
        c: &Client,
        limits: &Limits,
    ) -> Result<Option<Signals>, ExecError> {
        if !limits.watches_anything() {
            return Ok(None);
        }
        let signals = self.signals.read(c, limits).await.map_err(db(
            "reading the database's health (pg_stat_replication, pg_replication_slots)",
        ))?;
        Ok(Some(signals))
    }

    fn health_holds(
        &mut self,
        limits: &Limits,
        signals: Option<Signals>,
        headroom: Duration,
    ) -> Vec<Hold> {
        let Some(signals) = signals.filter(|_| limits.watches_anything()) else {
            return Vec::new();
        };
        let now = Instant::now();
        self.tracker.observe(signals.current_lsn, now);
        let holds = health::decide(
            limits,
            &self.expected,
            &signals,
            &self.tracker,
            now,
            headroom,
        );
        if let Some(min) = signals.standbys.iter().filter_map(|s| s.replay_lsn).min() {
            self.tracker.forget_before(min);
        }
        holds
    }

    async fn resumed(
        &self,
        c: &Client,
        observer: &dyn Observer,
        waited: Duration,
    ) -> Result<(), ExecError> {
        controls::record_resumed(c, self.row(), waited)
            .await
            .map_err(db("recording the end of the backfill's wait"))?;
        let msg = format!(
            "backfill goes on after waiting {}",
            health::fmt_ms(waited.as_millis() as u64)
        );
        observer.note(&msg);
        controls::record_event(
            c,
            &self.cp.plan,
            &self.settings.actor,
            crate::state::store::EventKind::BackfillResumed,
            msg,
            Some(waited),
            None,
        )
        .await
        .map_err(db("recording the end of the backfill's wait"))
    }
}

/// Whether a reading for `read` has every signal `limits` watch.
fn covers(read: &Limits, limits: &Limits) -> bool {
    (limits.max_replica_lag.is_none() || read.max_replica_lag.is_some())
        && (limits.max_slot_lag.is_none() || read.max_slot_lag.is_some())
        && (limits.max_active_sessions.is_none() || read.max_active_sessions.is_some())
}
