//! The plan's advisory lock, held on the control connection for a whole command and
//! watched: when it is lost, the command stops at once instead of working on unlocked.
//!
//! A session advisory lock lives exactly as long as its server session. pgphase keeps
//! that session alive (no idle timeouts: [`crate::pooler::apply_settings`]; TCP
//! keepalives) and watches it: the connection's end (terminated by an administrator,
//! a server restart, a broken network detected by TCP) is noticed the moment its task
//! ends, and every [`PING_EVERY`] a simple query checks that the session is still the
//! backend that took the lock and still holds it (a pooler that moved the connection
//! to another server session is caught here), within [`PING_TIMEOUT`]. Any of these
//! triggers the command's [`Stop`] with [`StopReason::LostLock`].

use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::machine::Refusal;
use super::store::{self, lock_key, LOCK_CLASS};
use crate::conn::ConnectionEnd;
use crate::interrupt::{Stop, StopReason};

pub const PING_EVERY: Duration = Duration::from_secs(2);
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The plan's lock, held on `control`, with its watcher.
pub struct PlanGuard {
    control: Arc<Client>,
    plan: String,
    stop: Stop,
    watcher: tokio::task::JoinHandle<()>,
}

impl PlanGuard {
    /// Takes the plan's lock on `control` (whose server session is `pid`), or says who
    /// holds it; then watches it until released.
    pub async fn take(
        control: Arc<Client>,
        ended: ConnectionEnd,
        pid: i32,
        plan: &str,
    ) -> anyhow::Result<Result<PlanGuard, Refusal>> {
        if let Err(r) = store::try_lock_plan(&control, plan).await? {
            return Ok(Err(r));
        }
        let stop = Stop::new();
        let watcher = tokio::spawn(watch(
            control.clone(),
            ended,
            pid,
            plan.to_string(),
            stop.clone(),
        ));
        Ok(Ok(PlanGuard {
            control,
            plan: plan.to_string(),
            stop,
            watcher,
        }))
    }

    /// Triggered when the lock is lost.
    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    pub fn control(&self) -> &Arc<Client> {
        &self.control
    }

    pub fn plan(&self) -> &str {
        &self.plan
    }

    /// Stops watching and releases the lock (the session ending would release it too).
    pub async fn release(self) {
        self.watcher.abort();
        let _ = store::unlock_plan(&self.control, &self.plan).await;
    }
}

impl Drop for PlanGuard {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

async fn watch(control: Arc<Client>, mut ended: ConnectionEnd, pid: i32, plan: String, stop: Stop) {
    let check = format!(
        "SELECT pg_backend_pid() = {pid} AND EXISTS (SELECT 1 FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid = {LOCK_CLASS}::int8::oid AND objid = {}::int8::oid AND objsubid = 2)",
        lock_key(&plan)
    );
    loop {
        tokio::select! {
            why = ended.wait() => {
                stop.trigger(StopReason::LostLock(format!(
                    "the connection holding it ended: {why}"
                )));
                return;
            }
            _ = tokio::time::sleep(PING_EVERY) => {}
        }
        match tokio::time::timeout(PING_TIMEOUT, control.simple_query(&check)).await {
            Ok(Ok(rows)) => {
                let holds = rows
                    .iter()
                    .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")));
                if !holds {
                    stop.trigger(StopReason::LostLock(format!(
                        "the control connection's server session (pid {pid}) no longer holds it: a connection pooler in transaction mode, or the lock was released"
                    )));
                    return;
                }
            }
            // an error of the session itself (e.g. inside a failed transaction of ours)
            // says nothing about the lock; a closed connection is noticed above
            Ok(Err(e)) if e.as_db_error().is_some() && !control.is_closed() => {}
            Ok(Err(e)) => {
                stop.trigger(StopReason::LostLock(format!(
                    "the connection holding it failed: {}",
                    crate::error::describe_db_error(&e)
                )));
                return;
            }
            Err(_) => {
                stop.trigger(StopReason::LostLock(format!(
                    "the connection holding it did not answer for {} s",
                    PING_TIMEOUT.as_secs()
                )));
                return;
            }
        }
    }
}
