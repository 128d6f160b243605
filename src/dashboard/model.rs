//! What the dashboard shows: a snapshot of what the database says, read in one pass
//! (plans, their checklists and last events, pgphase's statements and their lock waits,
//! the application's sessions, health signals). Pure data once loaded.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::activity::{self, AppSessions, Health, Statement};
use crate::exec::Blocker;
use crate::report::checklist::{self, Checklist};
use crate::report::rate::{BackfillKey, Recent, RecentRates};
use crate::report::{self, PlanView};
use crate::state::store::{self, EventRow};

/// The `application_name` of the dashboard's own connection (so it does not list itself).
pub const APPLICATION_NAME: &str = "pgphase-dashboard";
/// How many events of each plan the dashboard keeps (the history pane scrolls them).
pub const EVENTS: i64 = 100;

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    pub plans: Vec<PlanSnap>,
    /// Statements pgphase sessions are running, with their lock waits.
    pub work: Vec<Work>,
    pub apps: Vec<AppSessions>,
    pub health: Vec<Health>,
}

#[derive(Clone, Debug)]
pub struct PlanSnap {
    pub view: PlanView,
    /// Step descriptions per phase, in the plan's order.
    pub steps: Vec<Vec<String>>,
    pub checklist: Checklist,
    pub events: Vec<EventRow>,
    pub fences: Vec<FenceSnap>,
}

/// A deploy fence and the sessions it matches right now.
#[derive(Clone, Debug)]
pub struct FenceSnap {
    pub at_gate_after: String,
    pub pattern: String,
    pub sessions: usize,
}

#[derive(Clone, Debug)]
pub struct Work {
    pub statement: Statement,
    /// The sessions the statement waits for, when it waits for a lock.
    pub blockers: Vec<Blocker>,
}

/// What the screen shows: the last snapshot, whether the connection is lost, and the
/// backfills' recent rates measured across the snapshots.
#[derive(Clone, Debug, Default)]
pub struct Screen {
    /// The database, as `user@host:port/db` (no password).
    pub target: String,
    pub interval: std::time::Duration,
    pub snapshot: Option<Snapshot>,
    pub lost: Option<Lost>,
    /// Each backfill's rate over the last seconds, from successive snapshots.
    pub rates: RecentRates,
}

#[derive(Clone, Debug)]
pub struct Lost {
    pub since: DateTime<Utc>,
    pub error: String,
}

impl Screen {
    /// A refresh's result: a new snapshot clears the banner, and its backfills' rates
    /// and ETAs become the ones measured over the last snapshots (none until two were
    /// read: the stored rate is an average since the start); an error keeps the last
    /// snapshot on screen under a banner (the time it was first lost is kept).
    pub fn apply(&mut self, result: anyhow::Result<Snapshot>, now: DateTime<Utc>) {
        match result {
            Ok(mut s) => {
                let mut views: Vec<PlanView> = s.plans.iter().map(|p| p.view.clone()).collect();
                self.rates.observe(&views, s.taken_at);
                self.rates.apply(&mut views, false);
                for (p, v) in s.plans.iter_mut().zip(views) {
                    p.view = v;
                }
                self.snapshot = Some(s);
                self.lost = None;
            }
            Err(e) => {
                let since = self.lost.as_ref().map_or(now, |l| l.since);
                self.lost = Some(Lost {
                    since,
                    error: format!("{e:#}").replace('\n', " "),
                });
            }
        }
    }

    /// The recent rate of a plan's backfill.
    pub fn recent(&self, plan: &str, phase: i32, step: i32) -> Option<Recent> {
        let key: BackfillKey = (plan.to_string(), phase, step);
        self.rates.recent(&key)
    }
}

impl Snapshot {
    /// Reads everything the dashboard shows. Reads only.
    pub async fn load(c: &Client) -> anyhow::Result<Snapshot> {
        let taken_at = Utc::now();
        let mut plans = Vec::new();
        if store::schema_exists(c).await? {
            for name in store::plan_names(c).await? {
                if let Some(p) = store::load_plan(c, &name).await? {
                    plans.push(plan_snap(c, &p).await?);
                }
            }
        }
        let mut work = Vec::new();
        for s in activity::statements(c, "pgphase%", APPLICATION_NAME).await? {
            let blockers = if s.lock_wait.is_some() {
                crate::exec::blockers_of(c, s.pid).await?.1
            } else {
                Vec::new()
            };
            work.push(Work {
                statement: s,
                blockers,
            });
        }
        Ok(Snapshot {
            taken_at,
            plans,
            work,
            apps: activity::sessions_by_application(c).await?,
            health: activity::health(c).await?,
        })
    }

    /// Every time in the snapshot set to `t`, the stored rates and ETAs cleared (the
    /// screen shows the ones [`Screen::apply`] measures between snapshots): for
    /// rendering tests whose screens must not depend on the clock.
    pub fn with_fixed_times(mut self, t: DateTime<Utc>) -> Snapshot {
        self.taken_at = t;
        for p in &mut self.plans {
            let v = &mut p.view;
            v.started_at = t;
            v.updated_at = t;
            for ph in &mut v.phases {
                ph.started_at = ph.started_at.map(|_| t);
                ph.finished_at = ph.finished_at.map(|_| t);
                ph.gate_confirmed_at = ph.gate_confirmed_at.map(|_| t);
            }
            if let Some(g) = &mut v.last_gate {
                g.confirmed_at = t;
            }
            for b in &mut v.backfill {
                b.progress.started_at = t;
                b.progress.updated_at = t;
                b.progress.finished_at = b.progress.finished_at.map(|_| t);
                b.rows_per_sec = None;
                b.eta_seconds = None;
            }
            p.checklist.started_at = p.checklist.started_at.map(|_| t);
            for s in &mut p.checklist.sections {
                for i in &mut s.items {
                    i.done_at = i.done_at.map(|_| t);
                }
            }
            for e in &mut p.events {
                e.at = t;
                e.duration_ms = e.duration_ms.map(|_| 1000);
            }
        }
        for w in &mut self.work {
            w.statement.running_secs = w.statement.running_secs.map(|_| 1.0);
            w.statement.pid = 0;
            for b in &mut w.blockers {
                b.pid = 0;
                b.xact_age_secs = b.xact_age_secs.map(|_| 1.0);
            }
        }
        self
    }
}

async fn plan_snap(c: &Client, p: &store::StoredPlan) -> anyhow::Result<PlanSnap> {
    let held = store::lock_holder(c, &p.name).await?.is_some();
    let view = report::plan_view(p, held, store::progress(c, &p.name).await?);
    // a stored plan whose fences cannot be read shows none, rather than no dashboard
    let fences = crate::run::stored_fences(p).unwrap_or_default();
    let checklist = checklist::build(&checklist::Source {
        program: &p.program,
        file: p.source_path.clone(),
        checksum: Some(p.checksum.clone()),
        fences: &fences,
        stored: Some(p),
    });
    let mut fence_snaps = Vec::new();
    for f in &fences {
        let pattern = f.no_application_name_like.value.clone();
        fence_snaps.push(FenceSnap {
            at_gate_after: f.at_gate_after.value.clone(),
            sessions: store::fence_stragglers(c, &pattern).await?.len(),
            pattern,
        });
    }
    Ok(PlanSnap {
        steps: p
            .program
            .phases
            .iter()
            .map(|ph| ph.steps.iter().map(|s| s.description.clone()).collect())
            .collect(),
        view,
        checklist,
        events: store::recent_events(c, &p.name, EVENTS).await?,
        fences: fence_snaps,
    })
}
