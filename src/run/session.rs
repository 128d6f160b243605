//! What every command that changes a plan runs under: two dedicated sessions (checked
//! not to be transaction-pooled, under pgphase's own timeouts), the plan's watched
//! lock, and a runner that stops at once when told to (a signal, or the lock lost),
//! cancelling the statement running on the server and saying where it stopped and
//! which command resumes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{CancelToken, Client};

use super::Session;
use crate::conn::ConnInfo;
use crate::error::{CmdError, Interruption};
use crate::exec::{self, Blocker, CheckpointKey, ExecError, Observer, StepOutcome, StepSettings};
use crate::interrupt::{self, Stop, StopReason};
use crate::pooler::{self, Pids};
use crate::program::Step;
use crate::state::guard::PlanGuard;
use crate::state::machine::{decide, Command};
use crate::state::store::{self, Event, EventKind};

/// Where a runner is: the step it runs (or ran last).
#[derive(Clone, Debug)]
pub struct Position {
    /// The phase (`backfill`).
    pub kind: String,
    /// The phase as messages name it (`backfill`, or `rollback backfill` for its undo).
    pub phase: String,
    pub step: usize,
    pub total: usize,
    pub description: String,
    /// The step finished (the runner is between steps).
    pub done: bool,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} phase {}, step {}/{} ({})",
            if self.done { "after" } else { "during" },
            self.phase,
            self.step,
            self.total,
            self.description
        )
    }
}

/// The plan's lock and the command's two sessions: `control` (holds the lock, writes
/// the state) and `work` (runs the steps).
pub struct Locked {
    pub control: Arc<Client>,
    pub work: Client,
    guard: PlanGuard,
    work_cancel: CancelToken,
    pub pids: Pids,
    conn: ConnInfo,
    /// Where the runner is, for the message when it stops.
    pub at: Option<Position>,
    /// The command line that resumes this command.
    pub resume: String,
}

impl Locked {
    /// Connects both sessions, refuses a transaction pooler before anything else runs,
    /// applies pgphase's own limits, installs the `pgphase` schema (`start` only; other
    /// commands on a database without it are refused without changing anything) and
    /// takes the plan's lock.
    pub async fn acquire(s: &Session, plan: &str, command: Command) -> Result<Locked, CmdError> {
        let (control, work, pids) = open_sessions(&s.conn).await?;
        let mut client = control.client;
        if command != Command::Start && !store::schema_exists(&client).await? {
            decide(None, command, plan)?;
        }
        store::ensure_schema(&mut client).await?;
        let client = Arc::new(client);
        let guard = match PlanGuard::take(client.clone(), control.ended, pids.control, plan).await?
        {
            Ok(g) => g,
            Err(r) => return Err(CmdError::Refused(r)),
        };
        Ok(Locked {
            control: client,
            work_cancel: work.cancel_token(),
            work,
            guard,
            pids,
            conn: s.conn.clone(),
            at: None,
            resume: String::new(),
        })
    }

    pub async fn release(self) {
        self.guard.release().await;
    }

    /// What stops this command's runner: its lock's loss.
    pub fn lock_stop(&self) -> Stop {
        self.guard.stop().clone()
    }

    /// Notes that step `index` (0-based) of `total` of phase `kind` starts; `label`
    /// names the phase in messages (`rollback backfill` for its undo steps).
    pub fn step_started(
        &mut self,
        kind: &str,
        label: &str,
        index: usize,
        total: usize,
        step: &Step,
    ) {
        self.at = Some(Position {
            kind: kind.to_string(),
            phase: label.to_string(),
            step: index + 1,
            total,
            description: step.description.clone(),
            done: false,
        });
    }

    pub fn step_done(&mut self) {
        if let Some(at) = &mut self.at {
            at.done = true;
        }
    }

    fn where_(&self) -> String {
        match &self.at {
            Some(at) => format!("it stopped {at}"),
            None => "it stopped before its first step".to_string(),
        }
    }

    /// Adds where the runner was and the command that resumes to an error that does not
    /// say so itself (a lost connection while writing the state, say).
    pub fn locate(&self, e: CmdError) -> CmdError {
        match e {
            CmdError::Failed(e) if !e.is::<StepFailed>() => CmdError::Failed(anyhow::anyhow!(
                "{e:#}\n{}; the state in the pgphase tables may not say so yet. Once the database is reachable, re-run `{}` to resume (completed steps are skipped)",
                self.where_(),
                self.resume
            )),
            other => other,
        }
    }

    /// The runner was stopped: cancels the statement running on the work session and
    /// waits (briefly) until it has ended; records an interruption by a signal (the
    /// lock is still held then); returns the error to report.
    pub async fn stopped(&mut self, s: &Session, reason: StopReason) -> CmdError {
        let cancelled = self.cancel_work().await;
        let at = self.where_();
        match reason {
            StopReason::Signal(signal) => {
                let message = format!(
                    "interrupted by {}: {at}; {cancelled}. Re-run `{}` to resume (completed steps are skipped)",
                    signal.name(),
                    self.resume
                );
                let phase = self.at.as_ref().map(|a| a.kind.clone());
                let _ = store::record(
                    &*self.control,
                    &self.guard_plan(),
                    &s.actor,
                    Event {
                        phase: phase.as_deref(),
                        kind: EventKind::Interrupted,
                        message: message.clone(),
                        ..Default::default()
                    },
                )
                .await;
                CmdError::Interrupted(Interruption {
                    signal,
                    phase,
                    message,
                })
            }
            StopReason::LostLock(why) => CmdError::Failed(anyhow::anyhow!(
                "lost the plan lock ({why}); nothing more runs: {at}; {cancelled}. Once the database is reachable, re-run `{}` to resume (completed steps are skipped)",
                self.resume
            )),
        }
    }

    fn guard_plan(&self) -> String {
        self.guard.plan().to_string()
    }

    /// Asks the server to cancel whatever the work session runs, then waits for a
    /// round trip on it: the cancelled statement has ended when it returns.
    async fn cancel_work(&mut self) -> String {
        if self.work.is_closed() {
            return "the work session was already closed".into();
        }
        if let Err(e) = self.conn.cancel(&self.work_cancel).await {
            if self.work.is_closed() {
                return "the work session ended with its connection".into();
            }
            return format!(
                "the statement running on the server (pid {}) could not be cancelled ({e:#}): it may still be running",
                self.pids.work
            );
        }
        let limit = self
            .conn
            .connect_timeout()
            .unwrap_or(crate::conn::DEFAULT_CONNECT_TIMEOUT);
        match tokio::time::timeout(limit, self.work.simple_query("SELECT 1")).await {
            Ok(_) => "the statement running on the server was cancelled".into(),
            Err(_) => format!(
                "a cancel request was sent for the statement running on the server (pid {}), which had not ended {} s later",
                self.pids.work,
                limit.as_secs()
            ),
        }
    }
}

/// How many times [`open_sessions`] tries.
const OPEN_ATTEMPTS: usize = 3;

/// Opens the control and the work session at once, checks that no transaction pooler
/// is in between, and applies pgphase's own limits to both. Until then each runs under
/// the role's settings: an `idle_session_timeout` shorter than the other's connection
/// start can close one, so a session the server closed during this is opened again.
async fn open_sessions(
    conn: &ConnInfo,
) -> Result<(crate::conn::Connected, Client, Pids), CmdError> {
    let mut attempt = 1;
    loop {
        let (control, work) = tokio::join!(conn.connect_watched(), conn.connect());
        let (control, work) = (control?, work?);
        let ready = async {
            let pids = pooler::check_dedicated(&control.client, &work).await?;
            let (a, b) = tokio::join!(
                pooler::apply_settings(&control.client),
                pooler::apply_settings(&work)
            );
            a?;
            b?;
            Ok::<_, CmdError>(pids)
        }
        .await;
        match ready {
            Ok(pids) => return Ok((control, work, pids)),
            Err(CmdError::Failed(_))
                if attempt < OPEN_ATTEMPTS && (control.client.is_closed() || work.is_closed()) =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A step failed; its message already says where and how to resume.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StepFailed(pub String);

/// Runs `work` until it ends, or until the plan's lock is lost or a signal arrives,
/// whichever is first; signals are handled here (not by ending the process) meanwhile.
/// `work` must not prompt: a prompt would keep the signal from being handled.
pub async fn guarded<T>(lock: &Stop, work: impl Future<Output = T>) -> Result<T, StopReason> {
    let _armed = interrupt::arm();
    // stopped already (the lock lost while the command prepared): run nothing
    if let Some(r) = lock.reason().or_else(|| interrupt::signals().reason()) {
        return Err(r);
    }
    tokio::pin!(work);
    tokio::select! {
        biased;
        r = &mut work => Ok(r),
        r = lock.stopped() => Err(r),
        r = interrupt::signals().stopped() => Err(r),
    }
}

/// How long a step may wait for a lock before pgphase names whom it waits for, and how
/// often it looks again.
const WAIT_REPORT_AFTER: Duration = Duration::from_secs(1);
const WAIT_REPORT_EVERY: Duration = Duration::from_secs(2);

/// Who the step's statement waits for, reported on the terminal and in the event log.
pub struct WaitReport<'a> {
    pub plan: &'a str,
    pub actor: &'a str,
    pub phase: &'a str,
    pub deployed: Option<&'a str>,
}

/// Runs one step on the work session; while it waits for a lock for longer than
/// [`WAIT_REPORT_AFTER`] (a CONCURRENTLY build waiting for an older transaction, say),
/// names the sessions it waits for whenever they change.
pub async fn run_step_reporting_waits(
    l: &mut Locked,
    step: &Step,
    settings: &StepSettings,
    cp: &CheckpointKey,
    obs: &dyn Observer,
    report: WaitReport<'_>,
) -> Result<StepOutcome, ExecError> {
    let control = l.control.clone();
    let pid = l.pids.work;
    let run = exec::run_step(&mut l.work, step, settings, cp, obs);
    let watch = report_waits(&control, pid, step, obs, report);
    tokio::select! {
        r = run => r,
        never = watch => match never {},
    }
}

async fn report_waits(
    control: &Client,
    pid: i32,
    step: &Step,
    obs: &dyn Observer,
    r: WaitReport<'_>,
) -> std::convert::Infallible {
    let mut last: Vec<i32> = Vec::new();
    tokio::time::sleep(WAIT_REPORT_AFTER).await;
    loop {
        if let Ok((Some(lock), blockers)) = exec::blockers_of(control, pid).await {
            let pids: Vec<i32> = blockers.iter().map(|b| b.pid).collect();
            if !pids.is_empty() && pids != last {
                let message = wait_message(step, &lock, &blockers);
                obs.note(&message);
                let _ = store::record(
                    control,
                    r.plan,
                    r.actor,
                    Event {
                        phase: Some(r.phase),
                        kind: EventKind::Wait,
                        message,
                        deployed_ref: r.deployed,
                        ..Default::default()
                    },
                )
                .await;
                last = pids;
            }
        }
        tokio::time::sleep(WAIT_REPORT_EVERY).await;
    }
}

fn wait_message(step: &Step, lock: &str, blockers: &[Blocker]) -> String {
    let what = if lock == "virtualxid" {
        "for older transactions to end (a CONCURRENTLY build or VALIDATE waits for every transaction that began before it)".to_string()
    } else {
        format!("for a lock ({lock})")
    };
    format!(
        "waiting {what}: {}: blocked by {}",
        step.description,
        blockers
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
